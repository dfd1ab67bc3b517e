"""RAW Bayer input for RAW models (LLPackNet): real camera files and synthetic frames.

Both paths end in the same tensor, the one LLPackNet's inference.py feeds its network:
``x = max(raw - black, 0) / (white - black) * amp`` as an HxW float32 plane whose top-left 2x2
block is R G / G B and whose H and W are multiples of 16. Values are not clipped after the
amplification, so they can exceed 1.

- ``read_raw`` reads a camera file with rawpy (LibRaw). rawpy is an optional extra and is imported
  only when a RAW file is actually read.
- ``synthesize_raw`` makes such a frame from an sRGB image by unprocessing it (Brooks et al.,
  "Unprocessing Images for Learned Raw Denoising", CVPR 2019), following the recipe that the
  project's LLPackNet checkpoint was trained on (weights/SOURCES.md). There is no real RAW data
  here, so calibration and fidelity checks of RAW models run on these frames.
- ``estimate_amp`` chooses the amplification from the dark frame alone, for files whose exposure
  ratio is unknown.

The pure parts (``normalize_raw``, ``align_bayer``/``align_to_rggb``, ``crop_to_multiple``,
``cfa_pattern``) carry the logic and are tested without RAW files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.errors import DataError, MissingRequirement, UsageError
from lowlight_edge.images import fit

RAW_SUFFIXES = (".dng", ".arw", ".nef")
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
MAX_AMP = 300.0  # LLPackNet caps the amplification at 300 (inference.py: min(ratio, 300))
SIZE_MULTIPLE = 16  # LLPackNet packs 2x2 then 8x8: H and W must be multiples of 16

# --- synthetic recipe (weights/SOURCES.md; Brooks et al. 2019 for the unprocessing steps) -------

SYNTH_BLACK = 512  # Sony A7S II (SID) black level, 14-bit
SYNTH_WHITE = 16383  # 14-bit white level
RATIO_RANGE = (100.0, 300.0)  # SID short-exposure ratios (x100, x250, x300)

# XYZ -> camera matrix of the Sony ILCE-7S / 7S II (the SID camera), from dcraw/LibRaw's
# adobe_coeff table (entries / 10000).
XYZ_TO_SONY = np.array(
    [[0.5838, -0.1430, -0.0246], [-0.3497, 1.1477, 0.2297], [-0.0748, 0.1885, 0.5778]],
)
# Linear sRGB (D65) -> XYZ (IEC 61966-2-1).
SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
)


def _rgb_to_cam() -> np.ndarray:
    """sRGB -> camera RGB, rows normalised to sum to 1 so that white stays white (as Brooks et al.)."""
    m = XYZ_TO_SONY @ SRGB_TO_XYZ
    return m / m.sum(axis=1, keepdims=True)


# Applied by unprocessing: camera RGB = RGB_TO_CAM @ linear sRGB. A camera ISP applies its
# inverse (the colour correction matrix CAM_TO_RGB); unprocessing undoes that CCM.
RGB_TO_CAM = _rgb_to_cam()
CAM_TO_RGB = np.linalg.inv(RGB_TO_CAM)
# White-balance gains a camera would apply (daylight-like; Brooks et al. sample red in [1.9, 2.4]
# and blue in [1.5, 1.9]; we fix them at the low ends). Unprocessing divides by them.
WB_GAINS = (1.9, 1.0, 1.5)  # (red, green, blue)
# Noise (Brooks et al.'s heteroscedastic Gaussian model, stated at the network input, i.e. on the
# amplified frame x): Var[x] = shot * x + read, with log(shot) ~ U(log 1e-4, log 1.2e-2) and
# log(read) = 2.18 * log(shot) + 1.20 + N(0, 0.26). On the short exposure this is the
# Poisson-Gaussian sensor model in DN: Var = (shot * N / ratio) * signal + read * (N / ratio)^2,
# N = white - black, i.e. shot noise grows with the signal and read noise does not.
SHOT_NOISE_RANGE = (1e-4, 1.2e-2)
READ_NOISE_FIT = (2.18, 1.20, 0.26)  # slope, intercept, std of log(read) against log(shot)

# Robust level of an amplified training frame, calibrated on the synthetic generator: the median
# over the 300 calib/ images of ``_robust_level`` of synthesize_raw frames (seed = index, ratio
# drawn in 100-300), see estimate_amp. Measured: 0.161 (quartiles 0.045 and 0.337: calib/ holds
# under- and over-exposed SICE images).
TARGET_LEVEL = 0.161


# --- pure parts ----------------------------------------------------------------------------------


def normalize_raw(
    counts: np.ndarray, black: float | np.ndarray, white: float, amp: float = 1.0
) -> np.ndarray:
    """``max(counts - black, 0) / (white - black) * amp`` as float32.

    Args:
        counts: HxW sensor values (DN), any integer or float dtype.
        black: one black level, or a 2x2 array of per-CFA-site levels tiled over the plane
            (``black[i, j]`` applies to pixels ``[i::2, j::2]``).
        white: the saturation level (DN).
        amp: the amplification (exposure ratio); 1 gives the plain normalised frame.
    """
    counts = np.asarray(counts)
    black_arr = np.asarray(black, dtype=np.float32)
    if black_arr.ndim and black_arr.shape != (2, 2):
        msg = f"black level must be one value or 2x2 per CFA site, got shape {black_arr.shape}; pass e.g. 512"
        raise UsageError(msg)
    if float(white) <= float(black_arr.max()):
        msg = (
            f"white level {white} is not above the black level {black_arr.max():g}; "
            "the RAW file's levels are inconsistent, use a file from a supported camera"
        )
        raise DataError(msg)
    x = counts.astype(np.float32)
    if black_arr.ndim:
        h, w = x.shape
        black_arr = np.tile(black_arr, ((h + 1) // 2, (w + 1) // 2))[:h, :w]
    scale = np.float32(amp) / (np.float32(white) - black_arr)
    return np.maximum(x - black_arr, 0.0).astype(np.float32) * scale


def cfa_pattern(raw_pattern: np.ndarray | None, color_desc: bytes | str, source: str = "RAW file") -> str:
    """The 2x2 Bayer pattern ("RGGB", ...) of a sensor, or DataError for a non-Bayer one.

    Args:
        raw_pattern: colour indices of the top-left CFA tile (rawpy ``raw_pattern`` or
            ``raw_colors_visible[:2, :2]``); None for sensors without a CFA (linear DNG, Foveon).
        color_desc: the letters those indices refer to (rawpy ``color_desc``, e.g. b"RGBG").
        source: how to name the file in the error message.
    """
    desc = color_desc.decode() if isinstance(color_desc, bytes) else str(color_desc)
    fix = "RAW models need a 2x2 Bayer sensor (RGGB/BGGR/GRBG/GBRG); use an RGB model for this camera"
    if raw_pattern is None:
        msg = f"{source} has no colour filter array (linear DNG or Foveon); {fix}"
        raise DataError(msg)
    tile = np.asarray(raw_pattern)
    if tile.shape != (2, 2):
        kind = "6x6 X-Trans" if tile.shape == (6, 6) else "x".join(str(n) for n in tile.shape)
        msg = f"{source} has a {kind} colour filter array, not a 2x2 Bayer one; {fix}"
        raise DataError(msg)
    pattern = "".join(desc[int(i)] for i in tile.ravel())
    if pattern not in BAYER_PATTERNS:
        msg = f"{source} has a {pattern} colour filter array (colours {desc}), not an RGB Bayer one; {fix}"
        raise DataError(msg)
    return pattern


def _bayer_shift(source: str, target: str) -> tuple[int, int]:
    """Rows and columns to drop from the top/left so that ``source`` reads as ``target``."""
    for dy in (0, 1):
        for dx in (0, 1):
            shifted = "".join(source[((i + dy) % 2) * 2 + (j + dx) % 2] for i in (0, 1) for j in (0, 1))
            if shifted == target:
                return dy, dx
    msg = f"cannot turn a {source} Bayer pattern into {target}; RAW models take one of {', '.join(BAYER_PATTERNS)}"
    raise UsageError(msg)


def align_bayer(bayer: np.ndarray, pattern: str, target: str = "RGGB") -> tuple[np.ndarray, list[str]]:
    """Crop one row and/or column off the top/left so the plane starts with ``target``'s 2x2 tile.

    Shifting by one pixel is exact for a Bayer mosaic (no resampling); it costs one row and/or
    column. Returns the cropped view and notes saying what was done (empty when nothing was).
    """
    pattern, target = pattern.upper(), target.upper()
    for name, value in (("pattern", pattern), ("target pattern", target)):
        if value not in BAYER_PATTERNS:
            msg = f"unknown Bayer {name} {value!r}; use one of {', '.join(BAYER_PATTERNS)}"
            raise UsageError(msg)
    dy, dx = _bayer_shift(pattern, target)
    if (dy, dx) == (0, 0):
        return bayer, []
    parts = [p for p, on in (("the first row", dy), ("the first column", dx)) if on]
    note = f"CFA {pattern} aligned to {target} by dropping {' and '.join(parts)}"
    return bayer[dy:, dx:], [note]


def align_to_rggb(bayer: np.ndarray, pattern: str) -> tuple[np.ndarray, list[str]]:
    """``align_bayer(bayer, pattern, "RGGB")``: the layout LLPackNet was trained on."""
    return align_bayer(bayer, pattern, "RGGB")


def crop_to_multiple(bayer: np.ndarray, multiple: int = SIZE_MULTIPLE) -> tuple[np.ndarray, list[str]]:
    """Keep the top-left ``floor(H/m)*m x floor(W/m)*m`` (an even crop keeps the CFA phase)."""
    h, w = bayer.shape[:2]
    new_h, new_w = h // multiple * multiple, w // multiple * multiple
    if new_h == 0 or new_w == 0:
        msg = f"RAW image of {h}x{w} is smaller than {multiple}x{multiple} after alignment; use a full-size RAW file"
        raise DataError(msg)
    if (new_h, new_w) == (h, w):
        return bayer, []
    return bayer[:new_h, :new_w], [
        f"cropped {h}x{w} to {new_h}x{new_w} (multiple of {multiple}, bottom/right)"
    ]


def fit_bayer(bayer: np.ndarray, height: int, width: int) -> np.ndarray:
    """``lowlight_edge.images.fit`` for an RGGB plane: resize and crop each CFA site, never mixing colours.

    The plane is packed into its four H/2 x W/2 sites, each is cover-resized and centre-cropped
    to height/2 x width/2, and the result is unpacked, so the output is still RGGB.
    """

    h, w = bayer.shape
    if h % 2 or w % 2 or height % 2 or width % 2:
        msg = f"a Bayer plane is resized in 2x2 tiles and needs even sizes, got {h}x{w} -> {height}x{width}; use an even resolution"
        raise UsageError(msg)
    packed = np.stack([bayer[0::2, 0::2], bayer[0::2, 1::2], bayer[1::2, 0::2], bayer[1::2, 1::2]], axis=-1)
    packed = fit(np.ascontiguousarray(packed, dtype=np.float32), height // 2, width // 2)
    out = np.empty((height, width), dtype=np.float32)
    out[0::2, 0::2], out[0::2, 1::2] = packed[..., 0], packed[..., 1]
    out[1::2, 0::2], out[1::2, 1::2] = packed[..., 2], packed[..., 3]
    return out


def _robust_level(frame: np.ndarray, percentile: float = 99.0) -> float:
    """Mean of the pixels at or below the ``percentile``-th percentile (ignores hot pixels and highlights)."""
    flat = np.asarray(frame, dtype=np.float32).ravel()
    cut = np.percentile(flat, percentile)
    return float(flat[flat <= cut].mean())


def estimate_amp(
    normalized: np.ndarray,
    target_mean: float = TARGET_LEVEL,
    max_amp: float = MAX_AMP,
    percentile: float = 99.0,
) -> float:
    """Amplification for a dark frame whose exposure ratio is unknown.

    LLPackNet's paper derives the amplification from the dark frame's histogram; this is the
    simplest robust form of that idea. The robust level of the frame (the mean of its pixels at or
    below the 99th percentile, so hot pixels and specular highlights do not count) is divided into
    the level the network saw in training::

        amp = clip(target_mean / level(normalized), 1, max_amp)

    ``target_mean`` (TARGET_LEVEL) is calibrated on the synthetic generator, which knows the true
    ratio: it is the median level of amplified ``synthesize_raw`` frames of the 300 calib/ images.
    A frame of a scene that is k times darker or brighter than that typical scene gets an
    estimate k times off (before the clip to [1, max_amp]), which is the inherent limit of
    estimating exposure from one frame. Measured over the 300 calib/ images (under- and
    over-exposed SICE scenes, synthetic ratios 100-300): median estimate/true ratio 0.99, within
    a factor 1.5 for 40% of the images, 2 for 64%, 3 for 85%. For scenes of typical brightness
    it recovers the ratio within 1.5 whatever the ratio and noise (tests/test_raw.py).

    Args:
        normalized: the black/white-normalised frame ``max(raw - black, 0) / (white - black)``,
            before amplification.
        target_mean: the robust level the amplified frame should have.
        max_amp: upper bound (LLPackNet uses at most 300).
        percentile: pixels above this percentile are left out of the level.
    """
    level = _robust_level(normalized, percentile)
    if not math.isfinite(level) or level <= 0.0:
        return float(max_amp)
    return float(min(max(target_mean / level, 1.0), max_amp))


# --- synthetic RAW ----------------------------------------------------------------------------


SRGB_CHUNK = 1 << 18  # elements per pass of srgb_to_linear


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function (IEC 61966-2-1, the exact piecewise curve).

    In chunks, the power only where the curve has it: each whole-frame temporary of a 12 MP frame
    is 146 MB of fresh pages to fault in, and the one-pass version took 1.0-1.6 s a frame; the
    values are the same float32 operations, element by element.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    linear = np.empty(rgb.shape, dtype=np.float32)
    source, target = rgb.reshape(-1), linear.reshape(-1)
    for start in range(0, source.size, SRGB_CHUNK):
        x = np.clip(source[start:start + SRGB_CHUNK], 0.0, 1.0)
        out = x / np.float32(12.92)
        curved = x > 0.04045
        out[curved] = ((x[curved] + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4)
        target[start:start + SRGB_CHUNK] = out
    return linear


def unprocess_mosaic(rgb: np.ndarray) -> np.ndarray:
    """sRGB HxWx3 in [0,1] -> linear camera RGGB mosaic HxW in [0,1], noise-free, full exposure.

    Inverse gamma, inverse colour correction (RGB_TO_CAM), inverse white balance (divide by
    WB_GAINS), then keep R at (0,0), G at (0,1) and (1,0), B at (1,1) of every 2x2 tile.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        msg = f"synthetic RAW needs an HxWx3 RGB image, got shape {rgb.shape}; read it with lowlight_edge.images.read_rgb"
        raise UsageError(msg)
    h, w = rgb.shape[:2]
    if h % 2 or w % 2 or h == 0 or w == 0:
        msg = f"synthetic RAW needs an even H and W for the 2x2 Bayer mosaic, got {h}x{w}; fit the image to an even size first"
        raise UsageError(msg)
    return _mosaic(np.clip(srgb_to_linear(rgb) @ RGB_TO_CAM.T.astype(np.float32), 0.0, 1.0))


def unprocess_linear(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB HxWx3 (any level >= 0, lights far above 1) -> camera RGGB mosaic, not clipped above.

    ``unprocess_mosaic`` without the gamma and without the clip at 1: the light sources of a night
    scene (lowlight_edge.scenes) keep their level until the simulated sensor clips them.
    """
    linear = np.asarray(linear, dtype=np.float32)
    if linear.ndim != 3 or linear.shape[2] != 3 or linear.shape[0] % 2 or linear.shape[1] % 2:
        msg = f"unprocess_linear needs an HxWx3 image with even H and W, got shape {linear.shape}; fit it to an even size first"
        raise UsageError(msg)
    return _mosaic(np.maximum(np.maximum(linear, 0.0) @ RGB_TO_CAM.T.astype(np.float32), 0.0))


def _mosaic(cam: np.ndarray) -> np.ndarray:
    """Camera RGB HxWx3 -> white balance undone (divide by WB_GAINS) -> RGGB mosaic HxW float32."""
    h, w = cam.shape[:2]
    cam = cam / np.asarray(WB_GAINS, dtype=np.float32)
    mosaic = np.empty((h, w), dtype=np.float32)
    mosaic[0::2, 0::2] = cam[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = cam[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = cam[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = cam[1::2, 1::2, 2]
    return mosaic


def synthesize_raw_counts(
    rgb: np.ndarray,
    *,
    ratio: float | None = None,
    seed: int = 0,
    black: int = SYNTH_BLACK,
    white: int = SYNTH_WHITE,
    noise: tuple[float, float] | None = None,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """The short-exposure sensor counts (uint16 HxW, RGGB) that a camera would have recorded.

    The mosaic from ``unprocess_mosaic`` is darkened by ``ratio``, scaled to DN above ``black``,
    given shot and read noise (Gaussian approximation of Poisson-Gaussian, see the module
    constants), rounded and clipped to [0, white].

    Args:
        rgb: HxWx3 sRGB in [0, 1], H and W even.
        ratio: exposure ratio; None draws one uniformly in [100, 300] from ``seed``.
        seed: everything random (ratio, noise levels, noise) comes from ``numpy.random.default_rng(seed)``.
        black, white: the sensor's levels in DN.
        noise: ``(shot, read)`` variances at the network input (see SHOT_NOISE_RANGE); None draws
            them from ``seed``; ``(0, 0)`` gives a noise-free frame (quantisation only).
        return_info: also return a dict of the parameters used.
    """
    if ratio is not None and not 0 < ratio <= 10_000:
        msg = f"exposure ratio must be positive (typically 100-300), got {ratio}; pass e.g. ratio=100"
        raise UsageError(msg)
    if not 0 <= black < white <= 65535:
        msg = f"need 0 <= black < white <= 65535, got black={black} white={white}; use black=512 white=16383"
        raise UsageError(msg)
    mosaic = unprocess_mosaic(rgb)
    rng = np.random.default_rng(seed)
    ratio = float(rng.uniform(*RATIO_RANGE)) if ratio is None else float(ratio)
    if noise is None:
        log_shot = rng.uniform(math.log(SHOT_NOISE_RANGE[0]), math.log(SHOT_NOISE_RANGE[1]))
        slope, intercept, spread = READ_NOISE_FIT
        log_read = slope * log_shot + intercept + rng.normal(0.0, spread)
        shot, read = math.exp(log_shot), math.exp(log_read)
    else:
        shot, read = (float(v) for v in noise)
    span = float(white - black)
    dn_per_unit = span / ratio  # one unit of the amplified frame, in DN of the short exposure
    signal = mosaic * np.float32(dn_per_unit)  # DN above black
    variance = np.float32(shot * dn_per_unit) * signal + np.float32(read * dn_per_unit**2)
    if shot or read:
        signal = signal + np.sqrt(variance) * rng.standard_normal(signal.shape, dtype=np.float32)
    counts = np.clip(np.rint(signal + black), 0, white).astype(np.uint16)
    if not return_info:
        return counts
    info = {
        "ratio": ratio,
        "seed": seed,
        "black": black,
        "white": white,
        "shot_noise": shot,
        "read_noise": read,
        "read_noise_dn": math.sqrt(read) * dn_per_unit,
        "pattern": "RGGB",
        "wb_gains": WB_GAINS,
        "rgb_to_cam": RGB_TO_CAM.round(6).tolist(),
    }
    return counts, info


def synthesize_raw(
    rgb: np.ndarray,
    *,
    ratio: float | None = None,
    seed: int = 0,
    black: int = SYNTH_BLACK,
    white: int = SYNTH_WHITE,
    noise: tuple[float, float] | None = None,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """The network input for a synthetic short exposure of ``rgb``: float32 HxW, RGGB.

    ``normalize_raw(synthesize_raw_counts(...), black, white, amp=ratio)``: the amplification uses
    the true ratio, as LLPackNet's training and its inference.py do, so apart from noise, clipping
    and quantisation the result equals the linear mosaic (``unprocess_mosaic``). Same seed, same
    frame. Arguments as in ``synthesize_raw_counts``.
    """
    counts, info = synthesize_raw_counts(
        rgb, ratio=ratio, seed=seed, black=black, white=white, noise=noise, return_info=True
    )
    frame = normalize_raw(counts, black, white, info["ratio"])
    return (frame, info) if return_info else frame


# --- camera files -------------------------------------------------------------------------------


def _import_rawpy() -> Any:
    try:
        import rawpy
    except ImportError as err:
        msg = "reading camera RAW files needs rawpy, which is not installed; pip install 'lowlight-edge[raw]'"
        raise MissingRequirement(msg) from err
    return rawpy


def read_raw(
    path: str | Path, amp: float | None = None, pattern: str = "RGGB"
) -> tuple[np.ndarray, dict[str, Any]]:
    """A camera RAW file as the RAW model's input plane.

    Reads ``raw_image_visible`` with rawpy, subtracts the file's black level (per CFA site when
    the camera has several), divides by ``white_level - black``, shifts the CFA so that the plane
    starts with ``pattern`` (one row and/or column dropped, noted), crops H and W down to
    multiples of 16 (bottom/right, noted) and multiplies by ``amp``.

    Args:
        path: a .dng/.arw/.nef (anything LibRaw reads) from a Bayer sensor.
        amp: the exposure ratio to amplify by (at most 300); None estimates it with ``estimate_amp``.
        pattern: the CFA layout the model expects (the spec's ``bayer_pattern``).

    Returns:
        (HxW float32 plane, info) with info keys ``black`` (one value, or four in the plane's
        R, G, G, B order), ``white``, ``pattern`` (the file's CFA), ``crop`` ((top, left, height,
        width) within the visible image), ``amp``, ``amp_estimated`` and ``notes``.
    """
    if amp is not None and not 0 < amp <= MAX_AMP:
        msg = f"amplification must be in (0, {MAX_AMP:g}], got {amp}; pass the exposure ratio, e.g. --amp 100, or omit it to estimate"
        raise UsageError(msg)
    rawpy = _import_rawpy()
    path = Path(path)
    if not path.is_file():
        msg = f"RAW file {path} does not exist; pass a .dng/.arw/.nef file"
        raise DataError(msg)
    try:
        with rawpy.imread(str(path)) as raw:
            raw_pattern = raw.raw_pattern
            desc = raw.color_desc
            if raw_pattern is not None and np.asarray(raw_pattern).shape == (2, 2):
                raw_pattern = raw.raw_colors_visible[:2, :2].copy()  # phase of the visible area
            source = cfa_pattern(raw_pattern, desc, f"RAW file {path}")
            counts = raw.raw_image_visible.copy()
            black_levels = list(raw.black_level_per_channel)
            white = float(raw.white_level)
    except (rawpy.LibRawError, OSError) as err:
        msg = f"cannot read RAW file {path}: {err}; pass a RAW file that LibRaw supports (.dng/.arw/.nef)"
        raise DataError(msg) from err
    black_tile = np.array([[black_levels[int(i)] for i in row] for row in raw_pattern], dtype=np.float32)
    normalized = normalize_raw(counts, black_tile, white, 1.0)
    notes: list[str] = []
    aligned, more = align_bayer(normalized, source, pattern)
    notes += more
    dy, dx = normalized.shape[0] - aligned.shape[0], normalized.shape[1] - aligned.shape[1]
    black_tile = np.roll(black_tile, (-dy, -dx), axis=(0, 1))
    cropped, more = crop_to_multiple(aligned, SIZE_MULTIPLE)
    notes += more
    estimated = amp is None
    if estimated:
        amp = estimate_amp(cropped)
        notes.append(
            f"amplification {amp:.1f} estimated from the frame (estimate_amp); pass amp= to override"
        )
    frame = cropped * np.float32(amp)
    blacks = black_tile.ravel().tolist()
    info = {
        "black": blacks[0] if len(set(blacks)) == 1 else blacks,
        "white": white,
        "pattern": source,
        "crop": (dy, dx, *cropped.shape),
        "amp": float(amp),
        "amp_estimated": estimated,
        "notes": notes,
    }
    return np.ascontiguousarray(frame, dtype=np.float32), info
