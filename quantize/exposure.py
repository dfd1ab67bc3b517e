"""Synthetic low-light exposures of calibration frames, for QAT.

A low-light model is deployed on frames far darker than most photo folders: ../shared/data's
calibration set has a median mean level of 0.41, the eval set 0.04. Self-distillation needs no
labels, so QAT can train on the frames the camera will really see: each calibration frame is
re-exposed in linear light to a darker level, given shot and read noise, and stored in 8 bits
like a real capture. Measured on the IAT student (2026-11-22, all 48 eval images, same plan): QAT on
the calibration frames as they are gained little; on re-exposed frames it gained +1.9 dB mean,
+2.7 dB min; and calibrating the fake-quantizer ranges on them was worth +5 dB on its own for
the preset plan at 200x300.
"""

from __future__ import annotations

import numpy as np

from lowlight_edge.raw import srgb_to_linear
from lowlight_edge.scenes import exposure_for, linear_to_srgb  # noqa: F401  (one sRGB curve; re-exported for QAT)

# Mean sRGB levels drawn log-uniformly: from a night street (0.01) to dim indoor light (0.2).
DARKEST_MEAN = 0.01
BRIGHTEST_MEAN = 0.2
SHOT_NOISE = 2e-4  # variance per unit of linear signal
READ_NOISE = 1e-3  # standard deviation, linear units


def darken(frame: np.ndarray, target_mean: float, rng: np.random.Generator) -> np.ndarray:
    """One RGB frame (NCHW in [0,1]) re-exposed to ``target_mean``, noisy and 8-bit like a capture.

    A frame already darker than the target keeps its exposure and only gains the noise.
    """
    linear = srgb_to_linear(frame)
    gain = exposure_for(linear, target_mean) if float(frame.mean()) > target_mean else 1.0
    signal = linear * gain
    sigma = np.sqrt(signal * SHOT_NOISE + READ_NOISE**2)
    noisy = signal + rng.standard_normal(signal.shape, dtype=np.float32) * sigma
    return (np.round(linear_to_srgb(noisy) * 255.0) / 255.0).astype(np.float32)


def low_light_views(frames: list[np.ndarray], seed: int, per_frame: int = 1) -> list[np.ndarray]:
    """``per_frame`` seeded darker versions of each frame, mean levels log-uniform in the range above."""
    rng = np.random.default_rng(seed)
    views = []
    for frame in frames:
        for _ in range(per_frame):
            target = float(np.exp(rng.uniform(np.log(DARKEST_MEAN), np.log(BRIGHTEST_MEAN))))
            views.append(darken(frame, target, rng))
    return views


def describe(seed: int, per_frame: int) -> dict:
    """What the plan records about the re-exposed training set."""
    return {
        "seed": seed,
        "views_per_frame": per_frame,
        "mean_level_range": [DARKEST_MEAN, BRIGHTEST_MEAN],
        "shot_noise": SHOT_NOISE,
        "read_noise": READ_NOISE,
        "bits": 8,
    }
