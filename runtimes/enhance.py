"""Run a built artifact on image files, folders or RAW files and write enhanced PNGs.

A static-shape artifact (most OpenVINO IRs and TensorRT engines) takes one size only, so larger
images are cut into overlapping tiles whose outputs are stitched at the middle of each overlap
(exact for purely local nets such as TinyDCE when the overlap covers the receptive field), or,
with mode "resize", resized to the artifact's size and back. Smaller images are padded by
reflection and cropped back. A dynamic artifact runs at the image size, cropped down to the
model's size multiple when the artifact's manifest or sidecar gives one. Every such change is
printed, never silent. The tiling itself is ``runtimes.tiling``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge import zoo
from lowlight_edge.errors import DataError, UsageError
from lowlight_edge.images import IMAGE_SUFFIXES, from_nchw, read_rgb, to_nchw, write_png
from lowlight_edge.raw import read_raw
from runtimes import backend_for, get_backend, tiling
from runtimes.base import read_sidecar
from runtimes.tiling import owned_ranges as _owned  # noqa: F401 (tests import it from here)
from runtimes.tiling import tile_starts

RAW_SUFFIXES = (".dng", ".arw", ".nef", ".cr2")
MODES = ("tile", "resize")
MAX_AUTO_OVERLAP = 32


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
    suffixes = IMAGE_SUFFIXES + RAW_SUFFIXES
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                msg = f"no images or RAW files ({', '.join(suffixes)}) in {item}; pass a folder of images"
                raise DataError(msg)
            files.extend(found)
        elif item.is_file():
            if item.suffix.lower() not in suffixes:
                msg = f"{item} is not an image or RAW file ({', '.join(suffixes)}); pass PNG/JPEG/DNG/ARW/NEF/CR2 files"
                raise DataError(msg)
            files.append(item)
        else:
            msg = f"input {item} does not exist; pass image files, folders or RAW files"
            raise DataError(msg)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            msg = f"{stems[path.stem]} and {path} would both be written as {path.stem}.png; enhance them in separate runs"
            raise UsageError(msg)
        stems[path.stem] = path
    return files


def read_manifest(artifact: Path) -> dict[str, Any]:
    """{"size_multiple", "input_kind"} from manifest.json in the artifact's folder or its sidecar."""

    found: dict[str, Any] = {}
    manifest = artifact.parent / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError) as err:
            msg = f"{manifest} is not valid JSON ({err}); rebuild the artifact or remove the file"
            raise DataError(msg) from err
        section = data.get("input") if isinstance(data, dict) else None
        if isinstance(section, dict):
            found.update({k: section[k] for k in ("size_multiple", "input_kind") if k in section})
    side = read_sidecar(artifact) or {}
    for key in ("size_multiple", "input_kind"):
        if key not in found and key in side:
            found[key] = side[key]
    multiple = found.get("size_multiple", 1)
    if not isinstance(multiple, int) or multiple <= 0:
        msg = f"size_multiple in the manifest beside {artifact} must be a positive integer, got {multiple!r}"
        raise DataError(msg)
    return found


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


def enhance_image(
    runner: Any,
    image: np.ndarray,
    contract: InputContract,
    name: str,
    mode: str,
    overlap: int | None,
    say: Callable[[str], None],
) -> np.ndarray:
    """Enhanced HxWx3 float32 for one HxWxC image, tiling/resizing/cropping as the contract needs."""

    height, width = image.shape[:2]
    raw = image.shape[2] == 1
    if not contract.static:
        m = contract.size_multiple
        h, w = height // m * m, width // m * m
        if h == 0 or w == 0:
            msg = f"{name} is {height}x{width}, smaller than the model's size multiple {m}"
            raise DataError(msg)
        if (h, w) != (height, width):
            say(f"{name}: cropping {height}x{width} to {h}x{w} (H and W must be multiples of {m})")
            image = image[:h, :w]
        return from_nchw(runner(to_nchw(image)))
    th, tw = contract.height or height, contract.width or width
    if (th, tw) == (height, width):
        return from_nchw(runner(to_nchw(image)))
    if mode == "resize":
        if raw:
            msg = "resizing a RAW Bayer plane would mix its colour sites; use --mode tile for RAW inputs"
            raise UsageError(msg)
        say(
            f"{name}: resizing {height}x{width} to {th}x{tw} (the artifact's static input) and the result back to {height}x{width}"
        )
        out = from_nchw(runner(to_nchw(resize_hw(image, th, tw))))
        return resize_hw(out, height, width)
    pad_h, pad_w = max(0, th - height), max(0, tw - width)
    if pad_h or pad_w:
        pad_mode = "reflect" if pad_h < height and pad_w < width else "edge"
        say(
            f"{name}: padding {height}x{width} to {height + pad_h}x{width + pad_w} ({pad_mode}) to fit the {th}x{tw} input; the padding is cropped off"
        )
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=pad_mode)
    # Tiles of a Bayer plane start on the same colour site, and on the model's packing grid
    # (16 for LLPackNet) so that each tile computes what the full frame does away from its borders.
    align = math.lcm(2, contract.size_multiple) if raw else 1
    ph, pw = image.shape[:2]
    if overlap is None:
        overlap = min(MAX_AUTO_OVERLAP, min(th, tw) // 4) // align * align
    elif not 0 <= overlap <= min(th, tw) // 2:
        msg = f"overlap must be between 0 and {min(th, tw) // 2} px for {th}x{tw} tiles, got {overlap}"
        raise UsageError(msg)
    if (ph, pw) != (th, tw):
        count = len(tile_starts(ph, th, overlap, align)) * len(tile_starts(pw, tw, overlap, align))
        say(f"{name}: tiling {ph}x{pw} into {count} tiles of {th}x{tw} with {overlap} px overlap")
    out = run_tiled(runner, to_nchw(image), (th, tw), overlap, align)
    return from_nchw(out)[:height, :width]


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
) -> list[Path]:
    """Enhance ``inputs`` with ``artifact`` and write ``out_dir/<stem>.png``; returns the written files.

    Args:
        artifact: a .xml (openvino), .onnx (onnxruntime) or .engine (tensorrt) file, or with
            backend "torch" a zoo name "MODEL[:WEIGHTS]".
        inputs: image files, folders of them, or RAW files (.dng/.arw/.nef/.cr2).
        backend: overrides the guess from the artifact's suffix.
        threads: CPU threads for the backend.
        mode: "tile" (default) or "resize": how a static-shape artifact takes another size.
        amp: RAW amplification (exposure ratio); None estimates it. RAW inputs only.
        overlap: tile overlap in px; None picks min(32, tile side / 4).
        say: where progress lines go (stdout by default).
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
    files = collect_inputs(inputs)
    if amp is not None and not any(p.suffix.lower() in RAW_SUFFIXES for p in files):
        msg = "--amp applies to RAW inputs only (.dng/.arw/.nef/.cr2); drop it for RGB images"
        raise UsageError(msg)
    out_dir = Path(out_dir)
    resolved = {p.resolve() for p in files}
    for path in files:
        if (out_dir / f"{path.stem}.png").resolve() in resolved:
            msg = f"writing {out_dir / (path.stem + '.png')} would overwrite the input; pass another --out folder"
            raise UsageError(msg)
    options = {"threads": threads} if threads is not None else None
    written: list[Path] = []
    with get_backend(name).load(target, device=device, options=options) as runner:
        contract = _contract(runner, found)
        if mode is not None and not contract.static:
            say(f"the artifact takes any image size (dynamic H and W): --mode {mode} does not apply")
        for path in files:
            image = _read(path, contract, amp, say)
            out = enhance_image(runner, image, contract, path.name, mode or "tile", overlap, say)
            if out.ndim != 3 or out.shape[2] != 3:
                msg = f"the artifact returned {out.shape[2] if out.ndim == 3 else out.ndim} channel(s); enhance writes RGB (3-channel) outputs"
                raise UsageError(msg)
            dest = out_dir / f"{path.stem}.png"
            write_png(dest, np.clip(out, 0.0, 1.0))
            say(f"wrote {dest} ({out.shape[0]}x{out.shape[1]})")
            written.append(dest)
    return written
