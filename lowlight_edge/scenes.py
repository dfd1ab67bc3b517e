"""Night scenes with light sources, made deterministically from real photos (issue 17).

The photo folders here hold uniformly dark (or uniformly bright) frames, but a night camera sees
street lights, headlights and lit windows in most frames: small regions clipped in linear light
next to a dark background. INT8 ranges calibrated on uniformly dark frames saturate there
(LLPackNet INT8 measured 20.0 and 21.5 dB on such scenes against 64-66 dB on dark ones), so
calibration and verification mix in frames made by the recipe below from the same real photos.

Recipe ``night_lights`` (RECIPE_VERSION), for one sRGB photo (HxWx3 in [0, 1]) and a seed:

1. Linearise the photo (inverse sRGB).
2. Find light sources: the brightest ``light_fraction`` of the photo (seeded, 0.5-3 % of the
   pixels, by luminance after a 5x5 box blur: windows, lamps, sky gaps) is pushed to clipping in
   linear light: scaled so that its dimmest pixel reaches LIGHT_GAIN x the clipping level.
3. Create light sources: 1-4 seeded lamps, Gaussian glows (sigma 1-4 % of the short side) whose
   peak is LAMP_PEAK x the clipping level, so the core clips and the halo spans every level
   between the background and clipping; colours of sodium, warm and white LED lamps.
4. RGB models: the rest of the scene is re-exposed to a night mean level (log-uniform in
   NIGHT_MEAN_RANGE, sRGB), the lights are added, shot and read noise, clipped at 1 (the sensor),
   sRGB, 8 bits. RAW models (``raw=True``): the scene is unprocessed to the camera RGGB mosaic at
   its own level (the amplification brings a night frame to the level the network was trained
   on), the amplification ``amp`` is given (``amp_spread``: over the whole range the model accepts,
   1-300), the short exposure is the scene / amp, and the sensor clips at the white level, so a
   light source reads as ``amp`` at the network input, as in a real camera.

Recipe ``crushed_shadows`` (CRUSHED_VERSION, RGB models, calibration sets): a night capture whose
shadows the camera's black point sent to exactly 0. The eval set's worst INT8 frames have 60-70 %
of their pixels at 0 with lamps at 1.0, the calibration folder's darkest at most 18 %; INT8 ranges
measured without such frames broke IAT there (24 dB). For one sRGB photo and a seed:

1. Linearise the photo and re-expose it to a night mean level (log-uniform in CRUSHED_MEAN_RANGE).
2. Add shot and read noise (as ``night_lights``).
3. Subtract a black point: the level below which a seeded share of the pixels (CRUSHED_ZERO_RANGE)
   lies, clipped at 0 and rescaled so that 1 stays 1 (a light that clipped stays clipped).
4. sRGB, 8 bits.

Every frame's parameters are returned by ``night_lights`` / ``crushed_shadows`` and recorded with
the frame's digest (``lowlight_edge.datasets``): the same photo, seed and amp give the same frame,
bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lowlight_edge.errors import UsageError
from lowlight_edge.raw import (
    MAX_AMP,
    RATIO_RANGE,
    READ_NOISE_FIT,
    SHOT_NOISE_RANGE,
    SYNTH_BLACK,
    SYNTH_WHITE,
    srgb_to_linear,
    unprocess_linear,
)

RECIPE = "night_lights"
RECIPE_VERSION = 2  # 2: the exposure bisection reads every 7th value (exposure_for)
LIGHT_FRACTION_RANGE = (0.005, 0.03)  # share of the photo's pixels found bright and pushed to clipping
LIGHT_GAIN = 2.0  # the dimmest found-light pixel reaches this x the clipping level
LAMP_COUNT_RANGE = (1, 4)
LAMP_SIGMA_RANGE = (0.01, 0.04)  # of the short side
LAMP_PEAK = 8.0  # x the clipping level at the lamp's centre
LAMP_COLOURS = {  # linear sRGB, brightest channel 1
    "sodium": (1.0, 0.55, 0.18),
    "warm_led": (1.0, 0.78, 0.52),
    "white_led": (0.92, 0.96, 1.0),
}
NIGHT_MEAN_RANGE = (0.01, 0.2)  # sRGB mean of the re-exposed background (RGB models)
SHOT_NOISE = 2e-4  # RGB: variance per unit of linear signal (as quantize/exposure.py)
READ_NOISE = 1e-3  # RGB: standard deviation, linear units
AMP_RANGE = (1.0, MAX_AMP)  # RAW: the amplifications the model accepts (models.md: <= 300)
BLUR = 5  # box blur side for finding light regions


CRUSHED_RECIPE = "crushed_shadows"
CRUSHED_VERSION = 1
CRUSHED_MEAN_RANGE = (0.003, 0.05)  # sRGB mean of the re-exposed frame before the black point (eval's worst: 0.003-0.04)
CRUSHED_ZERO_RANGE = (0.2, 0.7)  # share of the values the black point sends to exactly 0


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1), inverse of lowlight_edge.raw.srgb_to_linear; clips to [0, 1]."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055).astype(np.float32)


EXPOSURE_SAMPLE_STRIDE = 7  # coprime to 3: the sample takes every channel of a pixel-interleaved array in turn


def exposure_for(linear: np.ndarray, target_mean: float) -> float:
    """The linear gain in (0, 1] that brings the sRGB mean of ``linear`` to ``target_mean`` (bisection).

    The mean is taken over every EXPOSURE_SAMPLE_STRIDE-th value: its 24 evaluations over a whole
    frame were most of a build's scene-making time, and the target mean is itself a random draw.
    """
    sample = np.ascontiguousarray(linear, dtype=np.float32).reshape(-1)[::EXPOSURE_SAMPLE_STRIDE]
    low, high = 0.0, 1.0
    for _ in range(24):
        gain = (low + high) / 2
        if linear_to_srgb(sample * np.float32(gain)).mean() > target_mean:
            high = gain
        else:
            low = gain
    return (low + high) / 2


def _radical_inverse(i: int) -> float:
    """Van der Corput (base 2): 0, 0.5, 0.25, 0.75, 0.125, ... any run of consecutive terms spreads out."""
    value, scale = 0.0, 0.5
    while i:
        value += scale * (i & 1)
        i >>= 1
        scale /= 2
    return value


def amp_spread(index: int) -> float:
    """The amplification of the ``index``-th light-source RAW frame of a set, log-spread over AMP_RANGE.

    Index 0 gets the top of the range (300: a light source then reads 300 at the network input),
    index 1 the bottom (1), then the van der Corput points in between, so every run of consecutive
    frames (the held-out validation tail of a calibration set, the few verification frames) spans
    the range instead of one end of it.
    """
    if index < 0:
        msg = f"scene index must be >= 0, got {index}"
        raise UsageError(msg)
    u = 1.0 if index == 0 else _radical_inverse(index - 1)
    lo, hi = AMP_RANGE
    return float(round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))), 3))


BLUR_ROWS = 256  # rows per pass of _box_blur: a 12 MP frame's whole-frame float64 copies were 0.9 s of fresh pages


def _box_blur(plane: np.ndarray, size: int = BLUR) -> np.ndarray:
    """The mean over each pixel's size x size box (edges repeated), from a float64 2D running sum.

    The running sum is built in blocks of BLUR_ROWS rows, the column sums carried from block to
    block: the same float64 additions in the same order as over the whole padded frame at once.
    """
    h, w = plane.shape
    pad = size // 2
    c = np.zeros((h + 2 * pad + 1, w + 2 * pad + 1), dtype=np.float64)  # a zero row and column in front
    carry = np.zeros(w + 2 * pad, dtype=np.float64)
    for top in range(0, h + 2 * pad, BLUR_ROWS):
        rows = np.clip(np.arange(top, min(top + BLUR_ROWS, h + 2 * pad)) - pad, 0, h - 1)
        block = np.pad(plane[rows].astype(np.float64), ((0, 0), (pad, pad)), mode="edge")
        block[0] += carry
        np.cumsum(block, axis=0, out=block)
        carry = block[-1].copy()
        np.cumsum(block, axis=1, out=c[1 + top:1 + top + len(rows), 1:])
    blurred = np.empty((h, w), dtype=np.float32)
    for top in range(0, h, BLUR_ROWS):
        end = min(top + BLUR_ROWS, h)
        total = c[top + size:end + size, size:size + w] - c[top:end, size:size + w] - c[top + size:end + size, :w] + c[top:end, :w]
        blurred[top:end] = total / (size * size)
    return blurred


def _luma(linear: np.ndarray) -> np.ndarray:
    return linear @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def light_mask(linear: np.ndarray, fraction: float, luma: np.ndarray | None = None) -> np.ndarray:
    """HxW bool: the brightest ``fraction`` of the (blurred) luminance, i.e. the photo's light regions.
    ``luma``: ``linear``'s luminance when the caller has it already."""
    blurred = _box_blur(_luma(linear) if luma is None else luma)
    cut = np.quantile(blurred, 1.0 - fraction)
    mask = blurred >= cut
    if mask.mean() > 2 * fraction:  # a flat photo: ties at the cut would light half of it
        order = np.argsort(blurred, axis=None, kind="stable")[::-1][: max(1, int(round(fraction * blurred.size)))]
        mask = np.zeros(blurred.size, dtype=bool)
        mask[order] = True
        mask = mask.reshape(blurred.shape)
    return mask


LAMP_ROWS = 64  # rows per pass of lamp_field: whole-frame temporaries of a 12 MP frame are 146 MB of fresh pages each


def lamp_field(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """HxWx3 linear light of seeded lamps (peak 1 at each centre, before scaling) and their parameters.

    The lamps are drawn first, then the field is summed in blocks of LAMP_ROWS rows, lamp by lamp:
    the same float32 operations per pixel as over the whole frame at once, 1.3 s less on 12 MP.
    """
    count = int(rng.integers(LAMP_COUNT_RANGE[0], LAMP_COUNT_RANGE[1] + 1))
    names = sorted(LAMP_COLOURS)
    lamps = []
    for _ in range(count):
        y, x = float(rng.uniform(0, height)), float(rng.uniform(0, width))
        sigma = float(rng.uniform(*LAMP_SIGMA_RANGE)) * min(height, width)
        sigma = max(sigma, 1.0)
        colour = names[int(rng.integers(len(names)))]
        lamps.append({"y": round(y, 1), "x": round(x, 1), "sigma": round(sigma, 2), "colour": colour, "_at": (y, x, sigma)})
    field = np.zeros((height, width, 3), dtype=np.float32)
    xx = np.arange(width, dtype=np.float32)[None, :]
    for top in range(0, height, LAMP_ROWS):
        yy = np.arange(top, min(top + LAMP_ROWS, height), dtype=np.float32)[:, None]
        block = field[top:top + LAMP_ROWS]
        for lamp in lamps:
            y, x, sigma = lamp["_at"]
            glow = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
            block += glow[..., None] * np.asarray(LAMP_COLOURS[lamp["colour"]], dtype=np.float32)
    for lamp in lamps:
        del lamp["_at"]
    return field, lamps


def _lights(linear: np.ndarray, rng: np.random.Generator, clip_level: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(light layer HxWx3 in linear units, mask of found lights, parameters); clip_level is where the sensor clips."""
    fraction = float(np.exp(rng.uniform(np.log(LIGHT_FRACTION_RANGE[0]), np.log(LIGHT_FRACTION_RANGE[1]))))
    luma = _luma(linear)
    mask = light_mask(linear, fraction, luma)
    dimmest = max(float(luma[mask].min()), 1e-3)
    boost = LIGHT_GAIN * clip_level / dimmest
    found = np.where(mask[..., None], np.maximum(linear, 1e-3) * np.float32(boost), 0.0).astype(np.float32)
    field, lamps = lamp_field(*linear.shape[:2], rng)
    layer = found + field * np.float32(LAMP_PEAK * clip_level)
    params = {
        "light_fraction": round(fraction, 5),
        "found_light_pixels": int(mask.sum()),
        "found_light_boost": round(boost, 3),
        "lamps": lamps,
    }
    return layer, mask, params


def _rgb_photo(rgb: np.ndarray, recipe: str) -> np.ndarray:
    """``rgb`` as float32 HxWx3, or a UsageError naming the recipe that needed it."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        msg = f"{recipe} needs an HxWx3 RGB image, got shape {rgb.shape}; read it with lowlight_edge.images.read_rgb"
        raise UsageError(msg)
    return rgb


def _with_capture_noise(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB capture's shot and read noise added to a linear signal (shot noise saturates with the sensor at 1)."""
    sigma = np.sqrt(np.minimum(signal, 1.0) * SHOT_NOISE + READ_NOISE**2)
    return signal + rng.standard_normal(signal.shape, dtype=np.float32) * sigma


def night_lights(
    rgb: np.ndarray, seed: int, *, raw: bool = False, amp: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """One light-source night frame from a photo: (frame, parameters).

    Args:
        rgb: HxWx3 sRGB in [0, 1] (already fitted to the model size; even H and W for ``raw``).
        seed: everything random comes from ``numpy.random.default_rng(seed)``.
        raw: make the RAW model input (HxW RGGB plane, black/white-normalised x amp) instead of RGB.
        amp: RAW only, the amplification (in AMP_RANGE); see ``amp_spread``.

    Returns:
        RGB: HxWx3 float32 sRGB in [0, 1], 8-bit levels. RAW: HxW float32, up to ``amp`` where the
        sensor clipped. Parameters: recipe, version, seed and what was drawn.
    """
    rgb = _rgb_photo(rgb, RECIPE)
    rng = np.random.default_rng(seed)
    linear = srgb_to_linear(rgb)
    params: dict[str, Any] = {"recipe": RECIPE, "version": RECIPE_VERSION, "seed": int(seed)}
    if not raw:
        if amp is not None:
            msg = "amp applies to RAW frames only; leave it out for an RGB model"
            raise UsageError(msg)
        night = float(np.exp(rng.uniform(np.log(NIGHT_MEAN_RANGE[0]), np.log(NIGHT_MEAN_RANGE[1]))))
        gain = exposure_for(linear, night) if float(linear_to_srgb(linear).mean()) > night else 1.0
        layer, mask, light = _lights(linear, rng, 1.0)
        background = np.where(mask[..., None], 0.0, linear * np.float32(gain)).astype(np.float32)
        signal = background + layer
        noisy = _with_capture_noise(signal, rng)
        frame = (np.round(linear_to_srgb(noisy) * 255.0) / 255.0).astype(np.float32)
        params.update({"night_mean": round(night, 4), "gain": round(gain, 5), **light,
                       "clipped_fraction": round(float((noisy >= 1.0).any(axis=-1).mean()), 5)})
        return frame, params
    if amp is None or not AMP_RANGE[0] <= float(amp) <= AMP_RANGE[1]:
        msg = f"a RAW night_lights frame needs amp in [{AMP_RANGE[0]:g}, {AMP_RANGE[1]:g}], got {amp!r}; use amp_spread(i)"
        raise UsageError(msg)
    amp = float(amp)
    layer, mask, light = _lights(linear, rng, amp)
    scene = np.where(mask[..., None], 0.0, linear).astype(np.float32) + layer
    mosaic = unprocess_linear(scene)  # camera RGGB, linear, in network-input units, not clipped
    # Noise of the synthetic training frames (lowlight_edge.raw), drawn at the network input for the
    # trained ratios 100-300 and scaled down with a smaller amplification (longer exposure, less gain).
    log_shot = rng.uniform(math.log(SHOT_NOISE_RANGE[0]), math.log(SHOT_NOISE_RANGE[1]))
    slope, intercept, spread = READ_NOISE_FIT
    log_read = slope * log_shot + intercept + rng.normal(0.0, spread)
    scale = min(1.0, amp / RATIO_RANGE[0])
    shot, read = math.exp(log_shot) * scale, math.exp(log_read) * scale**2
    span = float(SYNTH_WHITE - SYNTH_BLACK)
    dn_per_unit = span / amp
    signal = mosaic * np.float32(dn_per_unit)
    variance = np.float32(shot * dn_per_unit) * np.minimum(signal, span) + np.float32(read * dn_per_unit**2)
    signal = signal + np.sqrt(variance) * rng.standard_normal(signal.shape, dtype=np.float32)
    counts = np.clip(np.rint(signal + SYNTH_BLACK), 0, SYNTH_WHITE)
    frame = (np.maximum(counts - SYNTH_BLACK, 0.0) / span * amp).astype(np.float32)
    params.update({
        "amp": amp, **light, "shot_noise": shot, "read_noise": read,
        "black": SYNTH_BLACK, "white": SYNTH_WHITE,
        "clipped_fraction": round(float((counts >= SYNTH_WHITE).mean()), 5),
    })
    return frame, params


def crushed_shadows(rgb: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """One crushed-shadow night frame from an sRGB photo (HxWx3 in [0, 1]): (frame, parameters).

    Returns HxWx3 float32 sRGB in [0, 1] on 8-bit levels, and the recipe, version, seed and what
    was drawn (the mean level, the share of zeros asked for and the share that came out).
    """
    rgb = _rgb_photo(rgb, CRUSHED_RECIPE)
    rng = np.random.default_rng(seed)
    linear = srgb_to_linear(rgb)
    level = float(np.exp(rng.uniform(np.log(CRUSHED_MEAN_RANGE[0]), np.log(CRUSHED_MEAN_RANGE[1]))))
    gain = exposure_for(linear, level) if float(rgb.mean()) > level else 1.0
    signal = linear * np.float32(gain)
    noisy = _with_capture_noise(signal, rng)
    zeros = float(rng.uniform(*CRUSHED_ZERO_RANGE))
    sample = noisy.reshape(-1)[::EXPOSURE_SAMPLE_STRIDE]  # a quantile of every 7th value, as exposure_for
    black = max(0.0, float(np.quantile(sample, zeros)))  # noise may put the quantile below 0: nothing to crush then
    crushed = np.maximum(noisy - np.float32(black), 0.0) / np.float32(1.0 - black)
    frame = (np.round(linear_to_srgb(crushed) * 255.0) / 255.0).astype(np.float32)
    params = {"recipe": CRUSHED_RECIPE, "version": CRUSHED_VERSION, "seed": int(seed), "mean_level": round(level, 5),
              "gain": round(gain, 5), "zero_share": round(zeros, 4), "black": round(black, 6),
              "zeros_made": round(float((frame == 0.0).mean()), 4)}
    return frame, params
