"""Run a built artifact on image files, folders or RAW files and write enhanced PNGs.

What runs is chosen to be exact first: a dynamic-shape artifact runs on the whole frame (cropped
down to the model's size multiple), and so does a static one when the frame is its size. Only a
static artifact and a frame of another size need tiles (larger frames) or padding (smaller ones),
and only for a model whose registry entry (``ModelSpec.tiling``) says how far tiles must overlap;
a model that uses whole-image statistics (``ModelSpec.whole_image_statistics``: IAT's global
gamma/colour branch) cannot be tiled or padded exactly and is refused, naming the fix (export with
--dynamic, or at the image's size). Tile offsets are multiples of the model's size multiple (12
for Zero-DCE++/SGZ, whose curve net runs at 1/12; 16 for LLPackNet's Bayer packing). Every tiled
or padded image gets a one-line seam check: its output against the PyTorch FP32 model on the
full frame. With mode "resize" the frame is resized to the artifact's size and back (printed).
An output with NaN/Inf is never written (CheckFailed). The tiling itself is ``runtimes.tiling``.
Videos (.mp4/.mov/.mkv/...) go frame by frame through the same per-image path (``enhance_frame``)
and are written as ``DIR/<stem>.mp4`` by ``runtimes.video``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge import zoo
from lowlight_edge.errors import CheckFailed, DataError, LowlightError, UsageError
from lowlight_edge.images import IMAGE_SUFFIXES, from_nchw, image_size, read_rgb, to_nchw, write_png
from lowlight_edge.metrics import psnr
from lowlight_edge.raw import read_raw
from lowlight_edge.temporal import SmoothedModel, check_alpha
from lowlight_edge.zoo import ModelSpec
from runtimes import backend_for, get_backend, tiling, video
from runtimes.base import read_sidecar
from runtimes.tiling import owned_ranges as _owned  # noqa: F401 (tests import it from here)
from runtimes.tiling import tile_starts

RAW_SUFFIXES = (".dng", ".arw", ".nef", ".cr2")
MODES = ("tile", "resize")
MANIFEST_LEVELS = 3  # an exported IR sits at <model>/openvino/fp32/model.xml, its manifest at <model>/


@dataclass(frozen=True)
class InputContract:
    """What the artifact takes, from the runner and the manifest/sidecar beside the artifact."""

    channels: int | None  # None: unknown
    height: int | None  # None: dynamic
    width: int | None
    size_multiple: int = 1
    input_kind: str | None = None  # "rgb" | "raw_bayer" when the manifest says

    @property
    def static(self) -> bool:
        return self.height is not None or self.width is not None


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image and RAW files from files and folders; DataError for a missing or unknown one."""
    if not inputs:
        msg = "no inputs given; pass image files, folders or RAW files"
        raise UsageError(msg)
    suffixes = IMAGE_SUFFIXES + RAW_SUFFIXES + video.VIDEO_SUFFIXES
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                msg = f"no images, RAW files or videos ({', '.join(suffixes)}) in {item}; pass a folder of images"
                raise DataError(msg)
            files.extend(found)
        elif item.is_file():
            if item.suffix.lower() not in suffixes:
                msg = f"{item} is not an image, RAW file or video ({', '.join(suffixes)}); pass PNG/JPEG/DNG/ARW/NEF/CR2 or MP4/MOV/MKV files"
                raise DataError(msg)
            files.append(item)
        else:
            msg = f"input {item} does not exist; pass image files, folders or RAW files"
            raise DataError(msg)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            msg = f"{stems[path.stem]} and {path} would both be written as {path.stem}.*; enhance them in separate runs"
            raise UsageError(msg)
        stems[path.stem] = path
    return files


def _manifest_for(artifact: Path) -> Path | None:
    """The export manifest that describes ``artifact``.

    manifest.json beside the artifact, or the nearest one up to MANIFEST_LEVELS folders above it
    that lists the artifact among its files (python -m export keeps IRs and engines in subfolders).
    """
    beside = artifact.parent / "manifest.json"
    if beside.is_file():
        return beside
    folder = artifact.parent
    for _ in range(MANIFEST_LEVELS - 1):
        folder = folder.parent
        candidate = folder / "manifest.json"
        if candidate.is_file():
            data = _load_json(candidate)
            files = data.get("files") if isinstance(data, dict) else None
            listed = {f.get("path") for f in files if isinstance(f, dict)} if isinstance(files, list) else set()
            try:
                relative = artifact.resolve().relative_to(folder.resolve()).as_posix()
            except ValueError:
                relative = None
            return candidate if relative in listed else None
    return None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        msg = f"{path} is not valid JSON ({err}); rebuild the artifact or remove the file"
        raise DataError(msg) from err


def read_manifest(artifact: Path) -> dict[str, Any]:
    """{"size_multiple", "input_kind", "model", "weights"} as far as the artifact's manifest/sidecar say."""

    found: dict[str, Any] = {}
    manifest = _manifest_for(artifact)
    if manifest is not None:
        data = _load_json(manifest)
        if isinstance(data, dict):
            section = data.get("input")
            if isinstance(section, dict):
                if "size_multiple" in section:
                    found["size_multiple"] = section["size_multiple"]
                if "kind" in section or "input_kind" in section:
                    found["input_kind"] = section.get("input_kind", section.get("kind"))
            if isinstance(data.get("model"), str):
                found["model"] = data["model"]
                found["manifest"] = manifest
            if isinstance(data.get("weights"), dict):
                found["weights"] = data["weights"]
    side = read_sidecar(artifact) or {}
    for key in ("size_multiple", "input_kind"):
        if key not in found and key in side:
            found[key] = side[key]
    multiple = found.get("size_multiple", 1)
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple <= 0:
        msg = f"size_multiple in the manifest beside {artifact} must be a positive integer, got {multiple!r}"
        raise DataError(msg)
    return found


@dataclass(frozen=True)
class ModelFacts:
    """The zoo model an artifact was built from: its registry facts and weights for the FP32 reference."""

    spec: ModelSpec
    weights: str | None  # for zoo.get_model; None: not known, so no reference run
    origin: str  # where it was learnt, for messages

    @property
    def label(self) -> str:
        shown = self.weights if self.weights is None or len(self.weights) < 40 else Path(self.weights).name
        return f"{self.spec.name} ({shown or 'unknown'} weights)"


def _manifest_weights(spec: ModelSpec, info: Any) -> str | None:
    """The registered weights name, or an existing checkpoint path, from a manifest's weights record."""
    if not isinstance(info, dict):
        return None
    name, path = info.get("name"), info.get("path")
    if isinstance(name, str) and name in spec.weights:
        return name
    if isinstance(path, str) and Path(path).is_file():
        return path
    return None


def model_facts(artifact: Any, backend: str, found: dict[str, Any], model: str | None) -> ModelFacts | None:
    """What is known of the artifact's model: ``--model``, the manifest, or a torch zoo name."""
    named = None
    if model:
        name, _, weights = model.partition(":")
        named = ModelFacts(zoo.get_spec(name), weights or "default", "--model")
    if "model" in found:
        spec = zoo.get_spec(found["model"])
        if named is not None and named.spec.name != spec.name:
            msg = f"--model {named.spec.name} contradicts {found['manifest']}, which says {artifact} is {spec.name}; drop --model or pass the right artifact"
            raise UsageError(msg)
        if named is not None and model and ":" in model:
            return named
        return ModelFacts(spec, _manifest_weights(spec, found.get("weights")), str(found["manifest"]))
    if named is None and backend == "torch" and isinstance(artifact, str):
        name, _, weights = artifact.partition(":")
        named = ModelFacts(zoo.get_spec(name), weights or "default", "the zoo name")
    return named


def check_onnx(path: Path) -> None:
    """DataError naming ``path`` unless it parses as an ONNX model with a graph (protobuf errors are one line)."""
    import onnx

    fix = "re-export it (python -m export) or pass the right .onnx file"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError, onnx's own errors: a broken file, never a bug here
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        msg = f"{path} is not a readable ONNX model (truncated or another format: {first}); {fix}"
        raise DataError(msg) from err
    if not model.graph.node or not model.graph.input:
        msg = f"{path} holds no ONNX graph (empty, truncated or another format); {fix}"
        raise DataError(msg)


def output_path(out_dir: Path, path: Path) -> Path:
    """Where ``path``'s result goes: OUT/<stem>.mp4 for a video, OUT/<stem>.png otherwise."""
    return out_dir / f"{path.stem}{'.mp4' if video.is_video(path) else '.png'}"


def check_out(out_dir: Path, files: Sequence[Path]) -> None:
    """UsageError unless ``out_dir`` is (or can be made) a writable folder for every output; writes nothing."""
    if out_dir.exists() and not out_dir.is_dir():
        msg = f"--out {out_dir} is an existing file, not a folder; pass a folder for the enhanced PNGs (it is created if missing)"
        raise UsageError(msg)
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        msg = f"--out {out_dir} cannot be created: {existing} is a file; pass another folder"
        raise UsageError(msg)
    try:  # the only honest test of writability (permissions, read-only mounts, root or not)
        fd, probe = tempfile.mkstemp(prefix=".tmp-enhance-probe-", dir=existing)
    except OSError as err:
        where = "" if existing == out_dir else f" ({existing}, where it would be created)"
        msg = f"--out {out_dir} is not writable{where}: {err.strerror or err}; pass a folder you can write to"
        raise UsageError(msg) from err
    os.close(fd)
    os.unlink(probe)
    resolved = {p.resolve() for p in files}
    for path in files:
        dest = output_path(out_dir, path)
        if dest.resolve() in resolved:
            msg = f"writing {dest} would overwrite the input; pass another --out folder"
            raise UsageError(msg)
        if dest.exists() and not dest.is_file():
            msg = f"{dest} exists and is not a file, so {path.name} cannot be written there; remove it or pass another --out folder"
            raise UsageError(msg)


def run_tiled(
    runner: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    tile: tuple[int, int],
    overlap: int,
    align: int = 1,
) -> np.ndarray:
    """``runtimes.tiling.run_tiled`` with enhance's alignment: 1 px for RGB, the Bayer/size multiple for RAW."""
    return tiling.run_tiled(runner, x, tile, overlap, multiple=align)


def resize_hw(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of HxWxC float32 to exactly height x width (aspect ratio not kept)."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c])).resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=-1).astype(np.float32)


def _contract(runner: Any, found: dict[str, Any]) -> InputContract:
    shape = runner.input_shape
    if shape is None:
        return InputContract(None, None, None, found.get("size_multiple", 1), found.get("input_kind"))
    n, c, h, w = shape
    if n > 1:
        msg = (
            f"the artifact has a fixed batch of {n}; enhance runs one image at a time: build it with batch 1"
        )
        raise UsageError(msg)
    return InputContract(
        channels=c if c > 0 else None,
        height=h if h > 0 else None,
        width=w if w > 0 else None,
        size_multiple=found.get("size_multiple", 1),
        input_kind=found.get("input_kind"),
    )


def _read(path: Path, contract: InputContract, amp: float | None, say: Callable[[str], None]) -> np.ndarray:
    """HxWxC float32 (C = 1 for a RAW Bayer plane)."""
    raw = path.suffix.lower() in RAW_SUFFIXES
    if raw:
        plane, info = read_raw(path, amp=amp)
        for note in info.get("notes", []):
            say(f"{path.name}: {note}")
        image = plane[..., None].astype(np.float32)
    else:
        image = read_rgb(path)
    channels = contract.channels or (1 if contract.input_kind == "raw_bayer" else None)
    if channels is not None and channels != image.shape[2]:
        kind = (
            "a RAW Bayer plane (pass .dng/.arw/.nef/.cr2 files)"
            if channels == 1
            else f"{channels}-channel RGB images"
        )
        msg = f"{path.name} gives {image.shape[2]} channel(s) but the artifact takes {kind}"
        raise UsageError(msg)
    return image


@dataclass(frozen=True)
class Plan:
    """How a frame (already cropped to the size multiple) is fitted to a static input: padding, then tiles."""

    tile: tuple[int, int]  # the artifact's H x W
    pad: tuple[int, int]  # rows and columns added at the bottom and right
    pad_mode: str
    overlap: int
    align: int  # tile offsets are multiples of this
    tiles: int  # 1: padding only

    @property
    def what(self) -> str:
        return "seam" if self.tiles > 1 else "padding"


def run_plan(runner: Callable[[np.ndarray], np.ndarray], image: np.ndarray, plan: Plan) -> np.ndarray:
    """``runner`` on ``image`` (HxWxC) fitted by ``plan``; HxWxC' output at the image's size."""
    h, w = image.shape[:2]
    padded = image
    if any(plan.pad):
        padded = np.pad(image, ((0, plan.pad[0]), (0, plan.pad[1]), (0, 0)), mode=plan.pad_mode)
    if plan.tiles == 1:
        out = from_nchw(runner(to_nchw(padded)))
    else:
        out = from_nchw(run_tiled(runner, to_nchw(padded), plan.tile, plan.overlap, plan.align))
    return np.ascontiguousarray(out[:h, :w])


@dataclass
class Fitted:
    """One image's enhanced output and how the artifact was made to take it."""

    out: np.ndarray  # HxWx3 float32, at the size of ``frame``
    frame: np.ndarray  # the HxWxC input the output belongs to (cropped to the size multiple)
    how: str | None = None  # None: the artifact saw the frame itself; else "tiles", "padding" or "resize"
    plan: Plan | None = None  # how it was tiled or padded


def _exact_fixes(height: int, width: int) -> str:
    return f"export it with --dynamic, or at the image's size (--resolution {height}x{width})"


def check_fit(
    contract: InputContract,
    facts: ModelFacts | None,
    size: tuple[int, int],
    name: str,
    mode: str,
    raw: bool,
    overlap: int | None,
    artifact: str,
) -> tuple[int, int] | None:
    """The (tile_h, tile_w) the frame must be fitted to, None when it runs whole; refusals as UsageError.

    ``size`` is the frame after cropping to the size multiple. Refused: tiles or padding for an
    unknown model, for one with whole-image statistics, or for one with no measured overlap
    (unless ``overlap`` is given), and tiles that cannot hold the overlap.
    """
    height, width = size
    if not contract.static:
        return None
    th, tw = contract.height or height, contract.width or width
    if (th, tw) == (height, width) or mode == "resize":
        return None if (th, tw) == (height, width) else (th, tw)
    what = "tiles" if th < height or tw < width else "padding"
    fixes = _exact_fixes(height, width)
    if facts is None:
        msg = (
            f"{name} is {height}x{width} but {artifact} takes only {th}x{tw}, and no manifest.json says which model it is, "
            f"so {what} cannot be aligned or checked; pass --model NAME[:WEIGHTS], or {fixes}"
        )
        raise UsageError(msg)
    spec = facts.spec
    if spec.whole_image_statistics:
        msg = (
            f"{spec.name} cannot run {name} ({height}x{width}) as {what} of its {th}x{tw} input exactly: "
            f"{spec.whole_image_statistics}; {fixes} (or accept an approximation with --mode resize)"
        )
        raise UsageError(msg)
    if overlap is None and spec.tiling is None and what == "tiles":
        msg = f"no tile overlap was measured for {spec.name} (ModelSpec.tiling), so tiles of {name} cannot be trusted; {fixes}, or pass --overlap N"
        raise UsageError(msg)
    if what == "tiles":
        ov = tile_overlap(spec, overlap, alignment(spec, contract, raw))
        split = [t for t, n in ((th, height), (tw, width)) if t < n]
        if overlap is not None and not 0 <= overlap <= min(split) // 2:
            msg = f"overlap must be between 0 and {min(split) // 2} px for {th}x{tw} tiles, got {overlap}"
            raise UsageError(msg)
        if ov > min(split) // 2:
            msg = (
                f"{spec.name} tiles need {ov} px of overlap but the artifact's {th}x{tw} input is too small "
                f"to hold it (at most half a tile side); {fixes}, or at a static size of at least {2 * ov}x{2 * ov}"
            )
            raise UsageError(msg)
    return th, tw


def alignment(spec: ModelSpec | None, contract: InputContract, raw: bool) -> int:
    """Tile offsets and sizes are multiples of this: the model's size multiple (and 2 for a Bayer plane)."""
    m = math.lcm(contract.size_multiple, spec.size_multiple if spec is not None else 1)
    return math.lcm(2, m) if raw else m


def tile_overlap(spec: ModelSpec, overlap: int | None, align: int) -> int:
    """The overlap in px: the one given, else the registry's measured one; rounded up to ``align``.

    (Floor-aligned tile starts keep at least the overlap only when it is a multiple of the alignment.)
    """
    ov = spec.tiling.overlap if overlap is None else overlap
    return -(-ov // align) * align


def enhance_image(
    runner: Any,
    image: np.ndarray,
    contract: InputContract,
    name: str,
    mode: str,
    overlap: int | None,
    say: Callable[[str], None],
    facts: ModelFacts | None = None,
    artifact: str = "the artifact",
) -> Fitted:
    """Enhance one HxWxC image, running the whole frame when the artifact allows and fitting it otherwise."""

    height, width = image.shape[:2]
    raw = image.shape[2] == 1
    m = alignment(facts.spec if facts else None, contract, raw)
    h, w = height // m * m, width // m * m
    if h == 0 or w == 0:
        msg = f"{name} is {height}x{width}, smaller than the model's size multiple {m}"
        raise DataError(msg)
    if (h, w) != (height, width):
        say(f"{name}: cropping {height}x{width} to {h}x{w} (H and W must be multiples of {m})")
        image = np.ascontiguousarray(image[:h, :w])
    fit = check_fit(contract, facts, (h, w), name, mode, raw, overlap, artifact)
    if fit is None:
        return Fitted(from_nchw(runner(to_nchw(image))), image)
    th, tw = fit
    if mode == "resize":
        if raw:
            msg = "resizing a RAW Bayer plane would mix its colour sites; use --mode tile for RAW inputs"
            raise UsageError(msg)
        say(f"{name}: resizing {h}x{w} to {th}x{tw} (the artifact's static input) and the result back to {h}x{w}")
        out = from_nchw(runner(to_nchw(resize_hw(image, th, tw))))
        return Fitted(resize_hw(out, h, w), image, "resize")
    assert facts is not None  # check_fit refuses to fit an image for an unknown model
    pad_h, pad_w = max(0, th - h), max(0, tw - w)
    pad_mode = "reflect" if pad_h < h and pad_w < w else "edge"
    if pad_h or pad_w:
        say(
            f"{name}: padding {h}x{w} to {h + pad_h}x{w + pad_w} ({pad_mode}) to fit the {th}x{tw} input; the padding is cropped off"
        )
    ph, pw = h + pad_h, w + pad_w
    ov, count = 0, 1
    if (ph, pw) != (th, tw):
        ov = tile_overlap(facts.spec, overlap, m)
        count = len(tile_starts(ph, th, ov, m)) * len(tile_starts(pw, tw, ov, m))
        source = "given" if overlap is not None else f"measured for {facts.spec.name}"
        say(
            f"{name}: tiling {ph}x{pw} into {count} tiles of {th}x{tw} with {ov} px overlap ({source}), offsets multiples of {m}"
        )
    plan = Plan((th, tw), (pad_h, pad_w), pad_mode, ov, m, count)
    return Fitted(run_plan(runner, image, plan), image, "tiles" if count > 1 else "padding", plan)


def enhance_frame(
    runner: Any,
    image: np.ndarray,
    contract: InputContract,
    name: str,
    mode: str,
    overlap: int | None,
    say: Callable[[str], None],
    facts: ModelFacts | None,
    artifact: str,
    checker: SeamCheck,
    backend: str,
    source: str | None = None,
    seam: bool = True,
) -> Fitted:
    """The per-image path of photos and video frames alike: ``enhance_image``, then the output checks.

    CheckFailed for NaN/Inf in the output or a seam over budget; the seam line goes to ``say``.
    ``source``: the input's full path for the NaN/Inf message (default ``name``). ``seam``: False
    skips the seam check (later frames of a video, fitted exactly like its first).
    """
    fitted = enhance_image(runner, image, contract, name, mode, overlap, say, facts, artifact)
    out = fitted.out
    if out.ndim != 3 or out.shape[2] != 3:
        msg = f"the artifact returned {out.shape[2] if out.ndim == 3 else out.ndim} channel(s); enhance writes RGB (3-channel) outputs"
        raise UsageError(msg)
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        msg = (
            f"{bad} non-finite values (NaN/Inf) in the output of {artifact} for {source or name}; nothing was written for it: "
            "the artifact or its weights are broken, rebuild it from a sound checkpoint (python -m export) or try another backend"
        )
        raise CheckFailed(msg)
    if seam and fitted.how in ("tiles", "padding"):
        say(checker.line(name, fitted, backend))
    return fitted


SEAM_BUDGET_DB = 50.0  # tiled/padded vs whole frame in PyTorch FP32: below this a seam can show


class SeamCheck:
    """The PyTorch FP32 model on the full frame and on the same tiles, to measure what tiling or padding cost.

    Two figures per image: the seams alone (PyTorch on these tiles vs PyTorch on the full frame;
    below SEAM_BUDGET_DB the image is not written) and what the user gets (the artifact's tiled
    output vs PyTorch on the full frame: the seams plus the artifact's own precision drift).
    """

    def __init__(self, facts: ModelFacts | None, enabled: bool, threads: int | None) -> None:
        self.facts = facts
        self.enabled = enabled
        self.threads = threads
        self._runner: Any = None
        self._problem: str | None = None

    def _torch(self) -> Any:
        """The PyTorch FP32 runner, or a string saying why there is none."""
        if self._problem is None and self._runner is None:
            facts = self.facts
            if facts is None or facts.weights is None:
                self._problem = "the manifest names no loadable weights; pass --model NAME:WEIGHTS"
            else:
                try:
                    module = zoo.get_model(facts.spec.name, weights=facts.weights)
                    options = {"threads": self.threads} if self.threads else None
                    self._runner = get_backend("torch").load(module, options=options)
                except LowlightError as err:
                    self._problem = f"the PyTorch FP32 reference cannot be loaded ({err})"
        return self._problem if self._problem is not None else self._runner

    def line(self, name: str, fitted: Fitted, backend: str) -> str:
        """One line with both figures; CheckFailed when the seams alone cost more than SEAM_BUDGET_DB allows."""
        assert self.facts is not None and fitted.plan is not None  # fitted images have a known model
        plan, frame = fitted.plan, fitted.frame
        h, w = frame.shape[:2]
        parts = [f"{plan.tiles} tiles ({plan.overlap} px overlap)"] if plan.tiles > 1 else []
        if any(plan.pad):
            parts.append(f"padding to {h + plan.pad[0]}x{w + plan.pad[1]}")
        what = " after ".join(parts)
        if not self.enabled:
            return f"{name}: {plan.what} PSNR not measured (--no-seam-check; {what})"
        runner = self._torch()
        if isinstance(runner, str):
            return f"{name}: {plan.what} PSNR not measured: {runner} ({what})"
        full = from_nchw(runner(to_nchw(frame)))
        bad = int(np.count_nonzero(~np.isfinite(full)))
        if bad:
            return f"{name}: {plan.what} PSNR not measured: the PyTorch FP32 output holds {bad} non-finite values (broken weights?)"
        full = np.clip(full, 0.0, 1.0)
        same = np.clip(run_plan(runner, frame, plan), 0.0, 1.0)
        out = np.clip(fitted.out, 0.0, 1.0)
        seam_db, seam_err = psnr(same, full), _max_levels(same, full)
        out_db, out_err = psnr(out, full), _max_levels(out, full)
        label = self.facts.label
        if seam_db < SEAM_BUDGET_DB:
            fix = _exact_fixes(h, w) + (", or pass a larger --overlap" if plan.tiles > 1 else "")
            msg = (
                f"{name}: {what} cost {seam_db:.1f} dB (max error {seam_err:.1f}/255) against the whole {h}x{w} frame "
                f"in PyTorch FP32 {label}, below the {SEAM_BUDGET_DB:g} dB seam budget; "
                f"nothing was written for it: {fix}"
            )
            raise CheckFailed(msg)
        return (
            f"{name}: {plan.what} PSNR {seam_db:.1f} dB (max error {seam_err:.1f}/255): PyTorch FP32 {label} "
            f"with the same {what} vs on the whole {h}x{w} frame; the {backend} output vs that whole frame: "
            f"{out_db:.1f} dB (max error {out_err:.1f}/255)"
        )

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None


def _quiet(_line: str) -> None:
    pass


def _max_levels(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max()) * 255.0


def _precheck(
    files: Sequence[Path], contract: InputContract, facts: ModelFacts | None, mode: str, overlap: int | None, artifact: str
) -> None:
    """Refuse, before any image is enhanced, the RGB images this artifact cannot take exactly."""
    for path in files:
        if path.suffix.lower() in RAW_SUFFIXES:
            continue  # the plane's size is known only once it is read
        if video.is_video(path):
            info = video.probe(path)
            height, width = info.height, info.width
        else:
            height, width = image_size(path)
        m = alignment(facts.spec if facts else None, contract, raw=False)
        check_fit(contract, facts, (height // m * m, width // m * m), path.name, mode, False, overlap, artifact)


def check_smoothing(alpha: float, facts: ModelFacts | None, files: Sequence[Path]) -> None:
    """UsageError unless --temporal-smoothing can apply: a factor in [0, 1), a video, a model with global parameters."""
    check_alpha(alpha)
    if not any(video.is_video(p) for p in files):
        msg = "--temporal-smoothing applies to videos (.mp4/.mov/.mkv...); none of the inputs is one: drop it for photos"
        raise UsageError(msg)
    if facts is None:
        msg = "--temporal-smoothing needs to know the model: pass --model MODEL (or keep the manifest.json beside the artifact)"
        raise UsageError(msg)
    if facts.spec.global_params is None:
        have = ", ".join(n for n in zoo.list_models() if zoo.get_spec(n).global_params is not None)
        msg = (
            f"{facts.spec.name} has no per-frame global parameters to smooth (its output is computed locally); "
            f"--temporal-smoothing applies to {have}: drop it for {facts.spec.name}"
        )
        raise UsageError(msg)


def enhance(
    artifact: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    backend: str | None = None,
    threads: int | None = None,
    mode: str | None = None,
    amp: float | None = None,
    overlap: int | None = None,
    device: str | None = None,
    say: Callable[[str], None] = print,
    model: str | None = None,
    seam_check: bool = True,
    temporal_smoothing: float | None = None,
) -> list[Path]:
    """Enhance ``inputs`` with ``artifact`` and write ``out_dir/<stem>.png``; returns the written files.

    Args:
        artifact: a .xml (openvino), .onnx (onnxruntime) or .engine (tensorrt) file, or with
            backend "torch" a zoo name "MODEL[:WEIGHTS]".
        inputs: image files, folders of them, or RAW files (.dng/.arw/.nef/.cr2).
        backend: overrides the guess from the artifact's suffix.
        threads: CPU threads for the backend (and the PyTorch reference of the seam check).
        mode: "tile" (default) or "resize": how a static-shape artifact takes another size.
        amp: RAW amplification (exposure ratio); None estimates it. RAW inputs only.
        overlap: tile overlap in px; None takes the one measured for the model (ModelSpec.tiling).
        model: "MODEL[:WEIGHTS]" the artifact was built from, when no manifest.json says.
        seam_check: measure each tiled or padded output against PyTorch FP32 on the full frame
            (and refuse one whose tiles alone cost more than SEAM_BUDGET_DB).
        temporal_smoothing: for videos of models with per-frame global parameters (IAT's gamma and
            colour matrix, zoo.GlobalParams): smooth them exponentially with this factor in [0, 1)
            before applying them (lowlight_edge.temporal); prints flicker with and without, and the cost.
        say: where progress lines go (stdout by default).

    Raises:
        CheckFailed: an output holds NaN/Inf, or tiles/padding cost more than SEAM_BUDGET_DB
            (that image is not written; later ones are not run).
    """

    if mode is not None and mode not in MODES:
        msg = f"mode must be one of {', '.join(MODES)}, got {mode!r}"
        raise UsageError(msg)
    name = backend or backend_for(artifact)
    found: dict[str, Any] = {}
    if name == "torch" and not Path(artifact).is_file():
        spec = zoo.get_spec(str(artifact).partition(":")[0])
        found = {"size_multiple": spec.size_multiple, "input_kind": spec.input_kind}
        target: Any = str(artifact)
    else:
        target = Path(artifact)
        if not target.is_file():
            msg = f"artifact {target} does not exist; build it first (python -m export) or pass an existing .xml/.onnx/.engine file"
            raise UsageError(msg)
        found = read_manifest(target)
    facts = model_facts(target, name, found, model)
    files = collect_inputs(inputs)
    if amp is not None and not any(p.suffix.lower() in RAW_SUFFIXES for p in files):
        msg = "--amp applies to RAW inputs only (.dng/.arw/.nef/.cr2); drop it for RGB images"
        raise UsageError(msg)
    if temporal_smoothing is not None:
        check_smoothing(temporal_smoothing, facts, files)
    out_dir = Path(out_dir)
    check_out(out_dir, files)
    if isinstance(target, Path) and target.suffix.lower() == ".onnx":
        check_onnx(target)
    options = {"threads": threads} if threads is not None else None
    written: list[Path] = []
    checker = SeamCheck(facts, seam_check, threads)
    try:
        with get_backend(name).load(target, device=device, options=options) as runner:
            contract = _contract(runner, found)
            if mode is not None and not contract.static:
                say(f"the artifact takes any image size (dynamic H and W): --mode {mode} does not apply")
            _precheck(files, contract, facts, mode or "tile", overlap, str(target))
            for path in files:
                dest = output_path(out_dir, path)
                smoothing = None
                if temporal_smoothing is not None and video.is_video(path):  # one history per clip
                    smoothing = SmoothedModel(runner, temporal_smoothing, facts.spec.global_params.outputs)
                model_fn = smoothing or runner

                def per_frame(
                    image: np.ndarray, tell: Callable[[str], None] | None, label: str = path.name, where: str = str(path)
                ) -> tuple[np.ndarray, np.ndarray]:
                    # tell None: a video frame after the first, fitted the same way: no messages, no seam check
                    fitted = enhance_frame(
                        model_fn, image, contract, label, mode or "tile", overlap, tell or _quiet, facts, str(target),  # noqa: B023 (called within this iteration only)
                        checker, name, where, seam=tell is not None,
                    )
                    return fitted.frame, fitted.out

                if video.is_video(path):
                    if contract.channels not in (None, 3) or contract.input_kind == "raw_bayer":
                        msg = f"{path.name} is an RGB video but the artifact takes a RAW Bayer plane; pass an RGB artifact"
                        raise UsageError(msg)
                    say(video.enhance_video(path, dest, per_frame, say).line())
                    if smoothing is not None:
                        say(f"{path.name}: {smoothing.report.line()}")
                    written.append(dest)
                    continue
                _, out = per_frame(_read(path, contract, amp, say), say)
                write_png(dest, np.clip(out, 0.0, 1.0))
                say(f"wrote {dest} ({out.shape[0]}x{out.shape[1]})")
                written.append(dest)
    finally:
        checker.close()
    return written
