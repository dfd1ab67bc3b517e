"""Calibration and evaluation frames for INT8: real images, preprocessed exactly as deployed.

INT8 scales are only as good as the data they are measured on (docs/users.md: random or stale
calibration is the commonest silent failure), so a calibration set here is

- real images only (``data/calib``), never the eval images (``check_not_eval``);
- a seeded, reproducible subset, identified by a sha256 over the chosen files' contents and
  every preprocessing parameter, which becomes part of engine and calibration-cache keys;
- in the deployed module's input range: RGB in [0, 1] (mapped onto ``spec.value_range`` when a
  model declares another one), or, for RAW models, the amplified RGGB plane that
  ``lowlight_edge.raw.synthesize_raw`` makes from the image (real .dng/.arw/.nef files are read with
  ``lowlight_edge.raw.read_raw``).

``eval_frames`` applies the same preprocessing to the eval images, with RAW seeds distinct from
calibration, for export verification and the bench.

Both mix in the frames a night camera sees besides uniformly dark ones (issue 17): by default every
second frame of a set (positions 1, 3, 5 ... in name order) is made from its photo by the
``lowlight_edge.scenes`` recipe ``night_lights`` (light sources clipped in linear light on a night
background; for RAW models, the amplification spread over the whole accepted range 1-300), so INT8
ranges are measured on, and fidelity is checked on, highlights too. RGB calibration sets (and so
the search's validation frames, their tail) also hold crushed-shadow frames at positions 2, 6, 10 ...
(``scenes.crushed_shadows``: shadows clipped to exactly 0 by a black point, as in the eval set's
worst INT8 frames; the eval set has real ones). Each frame's recipe parameters and sha256 are
recorded (``CalibrationSet.frames``, ``Frames.info``); ``scenes=None`` gives the plain frames.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.errors import DataError, UsageError
from lowlight_edge.hashing import hash_dict, sha256_file
from lowlight_edge.images import IMAGE_SUFFIXES, fit, list_images, read_rgb, to_nchw
from lowlight_edge.raw import (
    RATIO_RANGE,
    RAW_SUFFIXES,
    SYNTH_BLACK,
    SYNTH_WHITE,
    fit_bayer,
    read_raw,
    synthesize_raw,
)
from lowlight_edge.scenes import (
    CRUSHED_RECIPE,
    CRUSHED_VERSION,
    RECIPE,
    RECIPE_VERSION,
    amp_spread,
    crushed_shadows,
    night_lights,
)

log = logging.getLogger(__name__)

# Bump when the preprocessing changes, so that every hash (and every cache keyed on it) changes.
PREPROCESS_VERSION = 4  # 4: RGB calibration sets mix in crushed-shadow frames
SCENES = RECIPE  # the default scene recipe mixed into calibration and eval sets; None: plain frames only
SCENE_EVERY = 2  # every second frame of a set (positions 1, 3, ...) is a light-source scene
# RGB calibration sets (and so the search's validation frames): positions 2, 2 + CRUSHED_EVERY, ... are
# crushed-shadow frames (scenes.crushed_shadows). Measured 2026-12-03 on the QDQ ONNX for GPU targets
# (NNCF ONNX backend, the preset, ONNX Runtime, all 48 eval frames), calibrated on the set as it was
# vs with a quarter of it (8 of 32) crushed: IAT 50.80/36.95 -> 51.23/43.20 dB, the student
# 50.39/26.80 -> 51.58/39.47; with half of it crushed IAT's min was 39.50.
CRUSHED_EVERY = 4
READ_THREADS = min(4, os.cpu_count() or 1)  # image decoding and resizing release the GIL
SCENE_CHOICES = (RECIPE, None)


class Frames(list):
    """A list of NCHW frames that also says what each one is.

    ``labels``: one short name per frame (the file, plus ``+night_lights`` for a scene frame), used
    to name the worst frame of a fidelity check. ``info``: per frame the file, its recipe
    parameters (None for a plain frame) and the frame's sha256.
    """

    def __init__(self, arrays=(), labels=None, info=None) -> None:
        super().__init__(arrays)
        self.labels: list[str] = list(labels) if labels is not None else [f"frame {i}" for i in range(len(self))]
        self.info: list[dict] = list(info) if info is not None else []


def frames_digest(arrays: list[np.ndarray]) -> str:
    """sha256 over every frame's shape, dtype and bytes: what a cache keyed on frames holds."""
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def scene_summary(scenes: str | None, input_kind: str) -> dict[str, Any] | None:
    """What a hash and a plan record about the scene recipes of a calibration set for models of
    ``input_kind`` (None when none is mixed in)."""
    if scenes is None:
        return None
    summary: dict[str, Any] = {"recipe": scenes, "version": RECIPE_VERSION, "every": SCENE_EVERY,
                               "positions": f"1, 1+{SCENE_EVERY}, ... in name order"}
    if crushes(input_kind, "calib", scenes):
        summary["crushed"] = {"recipe": CRUSHED_RECIPE, "version": CRUSHED_VERSION, "every": CRUSHED_EVERY,
                              "positions": f"2, 2+{CRUSHED_EVERY}, ... in name order"}
    return summary


@dataclass(frozen=True)
class CalibrationSet:
    """A reproducible calibration set and the key that identifies it.

    Attributes:
        files: the images used, sorted by name.
        hash: sha256 (hex) over the sorted file names, their contents' sha256 and the
            preprocessing parameters (resolution, seed, size, input kind, version).
        resolution: (H, W) of every array.
        arrays: one 1xCxHxW float32 array per file, in the deployed module's input range.
        input_kind: "rgb" or "raw_bayer", from the model spec.
        seed: the subset seed (also the root of the RAW models' per-image seeds).
        size: the number of images asked for (``len(files)`` is smaller when the folder is).
        notes: what a reader of the artifact should know (fewer files than asked, skipped files).
    """

    files: list[Path]
    hash: str
    resolution: tuple[int, int]
    arrays: list[np.ndarray]
    input_kind: str = "rgb"
    seed: int = 0
    size: int = 0
    notes: list[str] = field(default_factory=list)
    scenes: str | None = None
    frames: list[dict] = field(default_factory=list)  # per frame: file, scene parameters (or None), sha256

    def __len__(self) -> int:
        return len(self.arrays)

    def meta(self) -> dict[str, Any]:
        """JSON-able description for sidecar metadata (engine.json, reports)."""
        return {
            "hash": self.hash,
            "files": [p.name for p in self.files],
            "resolution": list(self.resolution),
            "input_kind": self.input_kind,
            "seed": self.seed,
            "size": self.size,
            "preprocess_version": PREPROCESS_VERSION,
            "notes": list(self.notes),
            "scenes": scene_summary(self.scenes, self.input_kind),
            "frames": list(self.frames),
        }


def frame_seed(set_seed: int, purpose: str, name: str) -> int:
    """Seed of one image's synthetic RAW frame: fixed by the set seed, the purpose and the file name.

    Keyed on the name rather than the position, so an image gets the same frame in every subset;
    ``purpose`` ("calib" / "eval") keeps eval noise independent of calibration noise.
    """
    digest = hashlib.sha256(f"{purpose}:{set_seed}:{name}".encode()).hexdigest()
    return int(digest[:8], 16)


def _check_args(spec: Any, resolution: tuple[int, int], size: int | None, seed: int, scenes: str | None = None) -> tuple[int, int]:
    if scenes not in SCENE_CHOICES:
        msg = f"scenes must be one of {', '.join(map(repr, SCENE_CHOICES))}, got {scenes!r}"
        raise UsageError(msg)
    kind = getattr(spec, "input_kind", None)
    if kind not in ("rgb", "raw_bayer"):
        msg = f"model spec {getattr(spec, 'name', spec)!r} has input_kind {kind!r}; expected 'rgb' or 'raw_bayer' (fix the zoo entry)"
        raise UsageError(msg)
    try:
        height, width = (int(v) for v in resolution)
    except (TypeError, ValueError) as err:
        msg = f"resolution must be (H, W), got {resolution!r}; pass e.g. --resolution 400x600"
        raise UsageError(msg) from err
    if height <= 0 or width <= 0:
        msg = f"resolution must be positive, got {height}x{width}; pass e.g. --resolution 400x600"
        raise UsageError(msg)
    check = getattr(spec, "check_resolution", None)
    if callable(check):
        check(height, width)
    if kind == "raw_bayer" and (height % 2 or width % 2):
        msg = f"RAW models need an even resolution for the 2x2 Bayer mosaic, got {height}x{width}; use multiples of 16"
        raise UsageError(msg)
    if size is not None and (not isinstance(size, int | np.integer) or size < 1):
        msg = f"calibration size must be a positive integer, got {size!r}; pass e.g. --calib-size 32"
        raise UsageError(msg)
    if not isinstance(seed, int | np.integer) or seed < 0:
        msg = f"seed must be a non-negative integer, got {seed!r}; pass e.g. --seed 0"
        raise UsageError(msg)
    return height, width


def list_inputs(folder: Path, kind: str, role: str) -> list[Path]:
    if not folder.is_dir():
        msg = f"{role} folder {folder} does not exist; pass a folder of real images (PNG/JPEG{', or RAW' if kind == 'raw_bayer' else ''})"
        raise DataError(msg)
    suffixes = IMAGE_SUFFIXES + RAW_SUFFIXES if kind == "raw_bayer" else IMAGE_SUFFIXES
    return list_images(folder, suffixes)  # sorted by name; DataError naming the folder if empty


class _Synthetic:
    """A usable sRGB photo of a synthetic RAW frame, made only once its position in the set is known.

    ``_prepare`` reads and filters in one pass and makes the light-source scenes after it: making
    the plain RAW frame of a photo that then becomes a scene cost 1.3 s of a 12 MP frame for nothing.
    ``brightness``: the photo's mean sRGB level (``_brightness``).
    """

    def __init__(self, brightness: float) -> None:
        self.brightness = brightness


def _synthetic_input(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    """A synthetic RAW model input from an sRGB photo (upscaled if need be: no 12 MP sRGB images exist here;
    unprocessing then adds the sensor noise)."""
    return to_nchw(synthesize_raw(fit(read_rgb(path), height, width), seed=seed))


def _to_input(path: Path, spec: Any, height: int, width: int) -> np.ndarray | _Synthetic:
    """One file -> 1xCxHxW float32 in the deployed input range (a ``_Synthetic`` for a synthetic RAW
    frame's photo); DataError if unreadable or too small."""
    is_raw = path.suffix.lower() in RAW_SUFFIXES
    if spec.input_kind == "raw_bayer" and not is_raw:
        return _Synthetic(float(read_rgb(path).mean()))  # read now: an unreadable photo is skipped here
    if is_raw:
        plane, _ = read_raw(path, amp=None, pattern=getattr(spec, "bayer_pattern", None) or "RGGB")
        h, w = plane.shape
    else:
        image = read_rgb(path)
        h, w = image.shape[:2]
    # Real frames must be at least half the model size.
    if h < height / 2 or w < width / 2:
        msg = f"{path.name} is {h}x{w}, smaller than half of {height}x{width}"
        raise DataError(msg)
    if is_raw:
        return to_nchw(fit_bayer(plane, height, width))
    return to_nchw(_in_value_range(fit(image, height, width), spec))


def _in_value_range(image: np.ndarray, spec: Any) -> np.ndarray:
    """An RGB image in [0, 1] mapped onto the model's declared ``value_range`` (unchanged for [0, 1])."""
    lo, hi = (float(v) for v in getattr(spec, "value_range", (0.0, 1.0)))
    if (lo, hi) != (0.0, 1.0):
        image = lo + image * np.float32(hi - lo)
    return image


def _scene_input(path: Path, spec: Any, height: int, width: int, seed: int, index: int) -> tuple[np.ndarray, dict]:
    """The ``index``-th light-source scene of a set, made from one photo: (1xCxHxW float32, parameters)."""
    image = fit(read_rgb(path), height, width)
    if spec.input_kind == "raw_bayer":
        frame, params = night_lights(image, seed, raw=True, amp=amp_spread(index))
        return to_nchw(frame), params
    frame, params = night_lights(image, seed)
    return to_nchw(_in_value_range(frame, spec)), params


def crushes(input_kind: str, purpose: str, scenes: str | None) -> bool:
    """Whether a set mixes in crushed-shadow frames: RGB calibration sets with scenes (a RAW frame's black
    level is already clipped at 0 by ``synthesize_raw``; eval sets hold the real ones)."""
    return scenes is not None and purpose == "calib" and input_kind == "rgb"


def _crushed_input(path: Path, spec: Any, height: int, width: int, seed: int) -> tuple[np.ndarray, dict]:
    """A crushed-shadow night frame (``scenes.crushed_shadows``) made from one photo: (1x3xHxW float32, parameters)."""
    frame, params = crushed_shadows(fit(read_rgb(path), height, width), seed)
    return to_nchw(_in_value_range(frame, spec)), params


def _brightness(path: Path, spec: Any, array: np.ndarray | _Synthetic) -> float:
    """Mean sRGB level of the scene: the array itself for RGB models, the source photo of a synthetic RAW frame."""
    if isinstance(array, _Synthetic):
        return array.brightness
    if spec.input_kind == "rgb":
        return float(array.mean())
    return 0.0  # a real RAW frame is what the sensor saw: never filtered


def _pick(
    folder: str | Path,
    spec: Any,
    resolution: tuple[int, int],
    size: int | None,
    seed: int,
    purpose: str,
    max_mean: float | None = None,
    scenes: str | None = None,
) -> tuple[list[Path], list[np.ndarray | _Synthetic], list[str], tuple[int, int]]:
    """List, pick a seeded order, read until ``size`` usable images are found: (paths in name order,
    their arrays, a ``_Synthetic`` for each synthetic RAW frame still to be made, notes, (H, W)).

    ``max_mean`` (RGB models) skips frames brighter than that mean level: a low-light model is
    deployed on dark frames, and bright calibration frames widen its INT8 ranges for nothing.
    """
    height, width = _check_args(spec, resolution, size, seed, scenes)
    folder = Path(folder)
    role = "calibration" if purpose == "calib" else "eval"
    files = list_inputs(folder, spec.input_kind, role)
    notes: list[str] = []
    if size is None:
        order = list(range(len(files)))
        want = len(files)
    else:
        want = size
        if len(files) < size:
            notes.append(f"{role} folder has {len(files)} images, fewer than the {size} asked for: using all")
        # A seeded order over all files; the first `size` usable ones are the subset.
        order = [
            int(i) for i in np.random.default_rng(seed).choice(len(files), size=len(files), replace=False)
        ]
    chosen: dict[int, np.ndarray | _Synthetic] = {}
    skipped: list[str] = []
    too_bright = 0

    def read(index: int) -> np.ndarray | _Synthetic | DataError:
        path = files[index]
        try:
            return _to_input(path, spec, height, width)
        except DataError as err:
            return err

    # Read in batches of the images still wanted, on READ_THREADS threads (decoding and resizing
    # release the GIL), and take them in the seeded order: the same frames as one at a time.
    position = 0
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        while len(chosen) < want and position < len(order):
            batch = order[position:position + want - len(chosen)]
            position += len(batch)
            for index, array in zip(batch, pool.map(read, batch), strict=True):
                path = files[index]
                if isinstance(array, DataError):
                    skipped.append(str(array))
                    log.warning("skipping %s image %s: %s", role, path, array)
                elif max_mean is not None and _brightness(path, spec, array) > max_mean:
                    too_bright += 1
                else:
                    chosen[index] = array
    if skipped:
        notes.append(f"skipped {len(skipped)} unusable file(s): " + "; ".join(skipped[:5]))
    if too_bright:
        notes.append(f"skipped {too_bright} image(s) brighter than mean {max_mean} (not low-light)")
    if not chosen and too_bright:
        msg = (
            f"no {role} image in {folder} is darker than mean level {max_mean}; add low-light images "
            "or raise --calib-max-mean (1.0 keeps every image)"
        )
        raise DataError(msg)
    if not chosen:
        msg = (
            f"no image of usable size in {role} folder {folder} ({len(skipped)} skipped: {skipped[0]}); "
            f"images must be readable and at least {height // 2}x{width // 2} for resolution {height}x{width}: "
            "add larger images or lower the resolution"
        )
        raise DataError(msg)
    if size is not None and len(chosen) < size <= len(files):
        notes.append(f"only {len(chosen)} usable images for the {size} asked for")
    picked = sorted(chosen)
    return [files[i] for i in picked], [chosen[i] for i in picked], notes, (height, width)


def check_usable(folder: str | Path, spec: Any, resolution: tuple[int, int], max_mean: float | None = None) -> None:
    """DataError / UsageError as ``load_calibration`` would raise them for this folder and size, without
    making a frame: a 12 MP model's search checks its full-size calibration images before it starts
    (making one frame to find out took a second)."""
    _pick(folder, spec, resolution, 1, 0, "calib", max_mean)


def _prepare(
    folder: str | Path,
    spec: Any,
    resolution: tuple[int, int],
    size: int | None,
    seed: int,
    purpose: str,
    max_mean: float | None = None,
    scenes: str | None = None,
) -> tuple[list[Path], list[np.ndarray], list[str], tuple[int, int], list[dict]]:
    """``_pick``, then the frames: those at positions 1, 1 + SCENE_EVERY, ... (name order) are that
    ``scenes`` recipe's scene made from the same photo (real RAW files stay as they are), and in an
    RGB calibration set those at 2, 2 + CRUSHED_EVERY, ... are crushed-shadow frames."""
    paths, arrays, notes, (height, width) = _pick(folder, spec, resolution, size, seed, purpose, max_mean, scenes)
    # the light-source scenes: positions 1, 1 + SCENE_EVERY, ... (RAW files stay), the n-th made with index n
    at = [i for i, path in enumerate(paths)
          if scenes is not None and i % SCENE_EVERY == 1 and path.suffix.lower() not in RAW_SUFFIXES]
    scene_index = {i: n for n, i in enumerate(at)}
    crushed = set(range(2, len(paths), CRUSHED_EVERY)) if crushes(spec.input_kind, purpose, scenes) else set()
    made: dict[int, dict] = {}

    def finish(i: int) -> tuple[np.ndarray, dict | None]:
        path = paths[i]
        if i in scene_index:
            seed_i = frame_seed(seed, f"{purpose}:{scenes}", path.name)
            return _scene_input(path, spec, height, width, seed_i, scene_index[i])
        if i in crushed:
            return _crushed_input(path, spec, height, width, frame_seed(seed, f"{purpose}:{CRUSHED_RECIPE}", path.name))
        if isinstance(arrays[i], _Synthetic):
            return _synthetic_input(path, height, width, frame_seed(seed, purpose, path.name)), None
        return arrays[i], None

    slowest_first = sorted(range(len(paths)), key=lambda i: i not in scene_index and i not in crushed)  # made ones first
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for i, (array, params) in zip(slowest_first, pool.map(finish, slowest_first), strict=True):
            arrays[i] = array
            if params is not None:
                made[i] = params
    info = [{"file": path.name, "scene": made.get(i), "sha256": frames_digest([arrays[i]])} for i, path in enumerate(paths)]
    return paths, arrays, notes, (height, width), info


def calibration_hash(
    files: list[Path],
    resolution: tuple[int, int],
    seed: int,
    size: int,
    input_kind: str,
    max_mean: float | None = None,
    scenes: str | None = None,
) -> str:
    """sha256 over the sorted file names, their contents' sha256 and the preprocessing parameters."""
    params: dict[str, Any] = {
        "files": [[p.name, sha256_file(p)] for p in sorted(files, key=lambda p: p.name)],
        "resolution": list(resolution),
        "seed": seed,
        "size": size,
        "input_kind": input_kind,
        "version": PREPROCESS_VERSION,
    }
    if max_mean is not None:
        params["max_mean"] = max_mean
    if scenes is not None:
        params["scenes"] = scene_summary(scenes, input_kind)
    if input_kind == "raw_bayer":
        params["synthetic_raw"] = {"black": SYNTH_BLACK, "white": SYNTH_WHITE, "ratio": list(RATIO_RANGE)}
    return hash_dict(params, length=64)


def load_calibration(
    folder: str | Path,
    spec: Any,
    resolution: tuple[int, int],
    size: int = 32,
    seed: int = 0,
    max_mean: float | None = None,
    scenes: str | None = SCENES,
) -> CalibrationSet:
    """A seeded subset of ``size`` real images from ``folder``, preprocessed for ``spec``.

    Files are listed sorted by name and visited in the order of
    ``numpy.random.default_rng(seed).choice(n, n, replace=False)``; the first ``size`` usable ones
    (readable, at least half the resolution in each dimension) form the set, which is then sorted
    by name. Unusable files are skipped with a warning; a folder with fewer than ``size`` images is
    used whole and says so in ``notes``.

    Args:
        folder: real images (PNG/JPEG; for RAW models also .dng/.arw/.nef).
        spec: the model's ``ModelSpec`` (``input_kind``, ``value_range``, ``bayer_pattern``).
        resolution: (H, W) the model is compiled for.
        size: number of images.
        seed: subset seed, and the root of the synthetic-RAW seeds for RAW models.
        max_mean: skip scenes brighter than this mean sRGB level (None keeps all; real RAW files are kept).
        scenes: the scene recipe mixed into every second frame (module docstring); None: plain frames.

    Raises:
        DataError: the folder is missing or empty, or no image in it is usable.
        UsageError: a bad resolution, size or seed.
    """
    files, arrays, notes, res, info = _prepare(folder, spec, resolution, size, seed, "calib", max_mean, scenes)
    digest = calibration_hash(files, res, seed, size, spec.input_kind, max_mean, scenes)
    return CalibrationSet(
        files=files,
        hash=digest,
        resolution=res,
        arrays=arrays,
        input_kind=spec.input_kind,
        seed=seed,
        size=size,
        notes=notes,
        scenes=scenes,
        frames=info,
    )


def eval_frames(
    folder: str | Path,
    spec: Any,
    resolution: tuple[int, int],
    size: int | None = None,
    seed: int = 0,
    scenes: str | None = SCENES,
) -> Frames:
    """The eval images preprocessed exactly like calibration (RAW models: eval-only noise seeds).

    ``size=None`` takes every usable image, in name order; otherwise the same seeded selection as
    ``load_calibration``. Every second frame is a ``scenes`` light-source scene (None: none).
    Deterministic for given arguments. Returns a ``Frames`` list (labels and per-frame info).
    """
    files, arrays, _, _, info = _prepare(folder, spec, resolution, size, seed, "eval", scenes=scenes)
    labels = [p.name + (f"+{scenes}" if i["scene"] else "") for p, i in zip(files, info, strict=True)]
    return Frames(arrays, labels, info)


def check_not_eval(calib_folder: str | Path, eval_folder: str | Path) -> None:
    """UsageError if the calibration folder is, contains, or lies inside the eval folder, or shares an image with it.

    Images are compared by content (sha256), so a copy under another name is caught too.
    A missing eval folder cannot overlap and passes.
    """
    calib, evaluation = Path(calib_folder).resolve(), Path(eval_folder).resolve()
    fix = "calibrate on other images than those the drift is measured on (e.g. data/calib, not data/eval)"
    if calib == evaluation or calib in evaluation.parents or evaluation in calib.parents:
        msg = f"calibration folder {calib_folder} and eval folder {eval_folder} overlap; {fix}"
        raise UsageError(msg)
    if not calib.is_dir() or not evaluation.is_dir():
        return
    suffixes = IMAGE_SUFFIXES + RAW_SUFFIXES

    def digests(folder: Path) -> dict[str, Path]:
        return {
            sha256_file(p): p
            for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in suffixes
        }

    eval_digests = digests(evaluation)
    shared = [(p, eval_digests[d]) for d, p in digests(calib).items() if d in eval_digests]
    if shared:
        first, twin = shared[0]
        msg = f"{len(shared)} calibration image(s) are also eval images (e.g. {first} = {twin}); {fix}"
        raise UsageError(msg)


def folder_digest(folder: str | Path) -> str:
    """sha256 over the names and contents of every image (and RAW) file in ``folder``.

    What a stage's cache key holds for an image folder: the same path with other images in it is
    another input (a path alone would reuse stale outputs). A missing folder digests as "absent".
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "absent"
    suffixes = {s.lower() for s in IMAGE_SUFFIXES + RAW_SUFFIXES}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    return hash_dict({"files": [[p.name, sha256_file(p)] for p in files]}, length=64)
