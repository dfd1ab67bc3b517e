"""quantize/exposure.py: the re-exposed low-light frames QAT trains on, checked on real calibration photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lowlight_edge.images import fit, list_images, read_rgb, to_nchw
from lowlight_edge.raw import srgb_to_linear
from quantize import exposure


def bright_frames(calib_dir: Path, count: int = 3) -> list[np.ndarray]:
    frames = [to_nchw(fit(read_rgb(p), 64, 96)) for p in list_images(calib_dir)]
    return sorted(frames, key=lambda f: -float(f.mean()))[:count]  # the brightest: the ones that must be darkened


def test_transfer_functions_are_inverse() -> None:
    levels = np.linspace(0, 1, 1001, dtype=np.float32)
    assert np.abs(exposure.linear_to_srgb(srgb_to_linear(levels)) - levels).max() < 1e-5


def test_srgb_to_linear_is_the_piecewise_curve_bit_for_bit() -> None:
    """Only the curved segment's pixels take the power: the same float32 values as the whole-array formula."""
    rgb = np.concatenate([np.random.default_rng(1).uniform(-0.1, 1.1, 20001), [0.04045, np.nextafter(np.float32(0.04045), np.float32(1)), 0.0, 1.0]])
    rgb = rgb.astype(np.float32).reshape(4001, 5)
    clipped = np.clip(rgb, 0.0, 1.0)
    whole = np.where(clipped <= 0.04045, clipped / 12.92, ((clipped + 0.055) / 1.055) ** 2.4).astype(np.float32)
    linear = srgb_to_linear(rgb)
    assert linear.dtype == np.float32 and linear.shape == rgb.shape
    assert np.array_equal(linear, whole)


def test_darken_hits_the_target_level_in_8_bits(calib_dir: Path) -> None:
    rng = np.random.default_rng(0)
    for frame in bright_frames(calib_dir):
        assert frame.mean() > 0.3
        for target in (0.01, 0.05, 0.2):
            dark = exposure.darken(frame, target, rng)
            assert dark.shape == frame.shape and dark.dtype == np.float32
            assert abs(float(dark.mean()) - target) < 0.25 * target + 0.004  # noise shifts it a little
            assert np.array_equal(dark * 255, np.round(dark * 255))  # 8-bit levels, like a capture
            assert 0.0 <= dark.min() and dark.max() <= 1.0


def test_a_frame_darker_than_the_target_keeps_its_exposure(calib_dir: Path) -> None:
    frame = bright_frames(calib_dir, 1)[0] * np.float32(0.02)
    dark = exposure.darken(frame, 0.2, np.random.default_rng(0))
    assert abs(float(dark.mean()) - float(frame.mean())) < 0.01


def test_views_are_seeded_and_cover_the_range(calib_dir: Path) -> None:
    frames = bright_frames(calib_dir)
    views = exposure.low_light_views(frames, seed=3, per_frame=4)
    again = exposure.low_light_views(frames, seed=3, per_frame=4)
    other = exposure.low_light_views(frames, seed=4, per_frame=4)
    assert len(views) == 12 and all(np.array_equal(a, b) for a, b in zip(views, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(views, other, strict=True))
    means = [float(v.mean()) for v in views]
    assert max(means) < 0.26 and min(means) < 0.05
