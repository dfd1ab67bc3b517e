"""lowlight_edge/scenes.py: light-source night scenes from real photos, and where they enter calibration and checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from export.verify import measure
from lowlight_edge import raw as R
from lowlight_edge import scenes as S
from lowlight_edge.datasets import Frames, eval_frames, frame_seed, load_calibration
from lowlight_edge.errors import UsageError
from lowlight_edge.images import fit, list_images, read_rgb
from quantize.crops import CROPS_PER_FRAME, crops

H, W = 64, 96


@dataclass(frozen=True)
class Spec:
    name: str
    input_kind: str
    channels: int
    value_range: tuple[float, float]
    bayer_pattern: str | None = None


RGB = Spec("tiny_rgb", "rgb", 3, (0.0, 1.0))
RAW = Spec("tiny_raw", "raw_bayer", 1, (0.0, 300.0), "RGGB")


@pytest.fixture(scope="module")
def photos(eval_dir: Path) -> list[np.ndarray]:
    return [fit(read_rgb(p), H, W) for p in list_images(eval_dir)[::8]]


def test_same_seed_same_frame_other_seed_other_frame(photos: list[np.ndarray]) -> None:
    a, pa = S.night_lights(photos[0], 7)
    b, pb = S.night_lights(photos[0], 7)
    c, _ = S.night_lights(photos[0], 8)
    assert np.array_equal(a, b) and pa == pb and not np.array_equal(a, c)
    r1, _ = S.night_lights(photos[0], 7, raw=True, amp=30.0)
    r2, _ = S.night_lights(photos[0], 7, raw=True, amp=30.0)
    assert np.array_equal(r1, r2)


def test_rgb_scene_is_a_dark_frame_with_clipped_lights(photos: list[np.ndarray]) -> None:
    for i, photo in enumerate(photos):
        frame, params = S.night_lights(photo, i)
        assert frame.shape == photo.shape and frame.dtype == np.float32
        np.testing.assert_array_equal(np.round(frame * 255), frame * 255)  # 8-bit levels like a capture
        clipped = (frame >= 1.0).any(axis=-1)
        assert 0.002 < clipped.mean() < 0.2, params  # lamps and windows, not the whole frame
        assert params["lamps"] and params["found_light_pixels"] > 0
        # away from the lights the frame sits at a night level, far below the lights
        mask = S.light_mask(R.srgb_to_linear(photo), params["light_fraction"])
        background = frame[~mask & ~clipped]
        assert np.median(background) < 0.35


def test_found_lights_are_the_photos_brightest_region() -> None:
    photo = np.full((H, W, 3), 0.05, dtype=np.float32)
    photo[10:20, 30:50] = 0.8  # a lit window: 200 px of 6144
    mask = S.light_mask(R.srgb_to_linear(photo), 0.02)
    assert mask.sum() > 60 and mask[10:20, 30:50].sum() >= 0.9 * mask.sum()
    flat = np.full((H, W, 3), 0.1, dtype=np.float32)  # nothing stands out: a fraction is still lit, not half
    assert S.light_mask(R.srgb_to_linear(flat), 0.01).mean() <= 0.02


@pytest.mark.parametrize("amp", [1.0, 17.3, 300.0])
def test_raw_scene_clips_at_the_amplification_like_a_sensor(photos: list[np.ndarray], amp: float) -> None:
    frame, params = S.night_lights(photos[1], 3, raw=True, amp=amp)
    assert frame.shape == (H, W) and frame.dtype == np.float32 and frame.min() >= 0.0
    assert frame.max() == pytest.approx(amp, rel=1e-5)  # the sensor's white level, amplified
    assert params["clipped_fraction"] > 0.001 and params["amp"] == amp
    plain = R.synthesize_raw(photos[1], seed=3)
    assert plain.max() < 2.0  # the uniformly dark frames never come near it
    # the background stays at the photo's own linear level (the amplification's purpose)
    level = R._robust_level(R.unprocess_mosaic(photos[1]), 90)
    assert R._robust_level(frame, 90) == pytest.approx(level, rel=0.5, abs=0.02)


def test_amp_spread_covers_the_accepted_range_in_every_run() -> None:
    amps = [S.amp_spread(i) for i in range(40)]
    assert amps[0] == 300.0 and amps[1] == 1.0
    assert all(1.0 <= a <= 300.0 for a in amps) and len(set(amps)) == 40
    for start in range(0, 36):  # any 4 consecutive frames span more than a factor 10
        run = amps[start : start + 4]
        assert max(run) / min(run) > 10, (start, run)
    with pytest.raises(UsageError):
        S.amp_spread(-1)


def test_bad_arguments_are_usage_errors(photos: list[np.ndarray]) -> None:
    with pytest.raises(UsageError, match="amp"):
        S.night_lights(photos[0], 0, raw=True, amp=400.0)
    with pytest.raises(UsageError, match="RAW frames only"):
        S.night_lights(photos[0], 0, amp=2.0)
    with pytest.raises(UsageError, match="HxWx3"):
        S.night_lights(photos[0][..., 0], 0)
    with pytest.raises(UsageError, match="scenes"):
        eval_frames(Path("."), RGB, (H, W), scenes="daylight")


def test_eval_and_calibration_sets_mix_in_light_scenes(eval_dir: Path, calib_dir: Path) -> None:
    frames = eval_frames(eval_dir, RAW, (H, W), size=4)
    assert isinstance(frames, Frames) and len(frames) == len(frames.labels) == len(frames.info) == 4
    scene = [i["scene"] for i in frames.info]
    assert scene[0] is None and scene[2] is None and scene[1]["amp"] == 300.0 and scene[3]["amp"] == 1.0
    assert frames.labels[1].endswith("+night_lights") and not frames.labels[0].endswith("+night_lights")
    assert frames[1].max() == pytest.approx(300.0) and frames[0].max() < 2.0
    name = frames.info[1]["file"]
    photo = fit(read_rgb(eval_dir / name), H, W)
    expected, _ = S.night_lights(photo, frame_seed(0, "eval:night_lights", name), raw=True, amp=300.0)
    np.testing.assert_array_equal(frames[1][0, 0], expected)
    calib = load_calibration(calib_dir, RAW, (H, W), size=12)
    amps = [f["scene"]["amp"] for f in calib.frames if f["scene"]]
    assert len(amps) == 6 and max(amps) == 300.0 and min(amps) == 1.0
    assert not {f["file"] for f in calib.frames} & {p.name for p in list_images(eval_dir)}  # never calibrated on eval


def test_crushed_shadows_is_a_night_frame_whose_shadows_are_exactly_zero(photos: list[np.ndarray]) -> None:
    for i, photo in enumerate(photos):
        frame, params = S.crushed_shadows(photo, i)
        again, same = S.crushed_shadows(photo, i)
        assert np.array_equal(frame, again) and params == same  # seeded: bit for bit
        assert frame.shape == photo.shape and frame.dtype == np.float32
        np.testing.assert_array_equal(np.round(frame * 255), frame * 255)  # 8-bit levels like a capture
        lo, hi = S.CRUSHED_ZERO_RANGE
        zeros = float((frame == 0.0).mean())
        # the black point takes its share of the values to exactly 0 (sRGB rounding adds the values just above it)
        assert lo - 0.05 <= params["zero_share"] - 0.05 <= zeros <= 0.95, params
        assert params["recipe"] == "crushed_shadows" and S.CRUSHED_MEAN_RANGE[0] <= params["mean_level"] <= S.CRUSHED_MEAN_RANGE[1]
        assert float(frame.mean()) <= params["mean_level"] + 0.01  # at a night level, or below it once crushed
    assert not np.array_equal(S.crushed_shadows(photos[0], 1)[0], S.crushed_shadows(photos[0], 2)[0])
    with pytest.raises(UsageError, match="HxWx3"):
        S.crushed_shadows(photos[0][..., 0], 1)


def test_only_rgb_calibration_sets_hold_crushed_frames(eval_dir: Path, calib_dir: Path) -> None:
    calib = load_calibration(calib_dir, RGB, (H, W), size=8)
    recipes = [(f["scene"] or {}).get("recipe") for f in calib.frames]
    assert recipes == [None, "night_lights", "crushed_shadows", "night_lights"] * 2
    assert all(f["scene"] is None for f in load_calibration(calib_dir, RGB, (H, W), size=8, scenes=None).frames)
    # eval sets hold real crushed frames; RAW frames are clipped at the black level by synthesis already
    assert all((i["scene"] or {}).get("recipe") != "crushed_shadows" for i in eval_frames(eval_dir, RGB, (H, W), size=8).info)
    assert all((f["scene"] or {}).get("recipe") != "crushed_shadows" for f in load_calibration(calib_dir, RAW, (H, W), size=4).frames)


def test_measure_names_the_worst_frame(photos: list[np.ndarray]) -> None:
    refs = Frames([p[None].transpose(0, 3, 1, 2).copy() for p in photos[:3]], labels=["a.png", "b.png+night_lights", "c.png"])
    outs = [r.copy() for r in refs]
    outs[1][..., :8, :8] += 0.3  # the light-source frame breaks
    outs[2] += 0.001
    result = measure(outs, refs)
    assert result["worst"]["frame"] == "b.png+night_lights"
    assert result["worst"]["psnr_db"] == result["psnr_db"]["min"] < result["per_frame"]["c.png"]
    assert set(result["per_frame"]) == {"a.png", "b.png+night_lights", "c.png"}
    plain = measure(outs, list(refs))  # no labels: the index names it
    assert plain["worst"]["frame"] == "frame 1"


def test_crop_calibration_keeps_the_light_sources() -> None:
    rng = np.random.default_rng(0)
    frames = []
    for y, x in ((5, 7), (90, 150), (50, 80)):
        frame = rng.random((1, 1, 96, 160), dtype=np.float32) * 0.05
        frame[0, 0, y, x] = 300.0  # a clipped lamp at amplification 300
        frames.append(frame)
    out = crops(frames, (32, 48), multiple=16, seed=0)
    assert len(out) == 3 * CROPS_PER_FRAME
    for i in range(3):  # the first crop of every frame holds its lamp: the widest range is measured
        assert out[i * CROPS_PER_FRAME].max() == 300.0


def test_frames_read_on_threads_are_the_frames_read_one_at_a_time(eval_dir: Path, monkeypatch) -> None:
    """eval_frames reads and makes its scenes on READ_THREADS threads: the same frames, labels and
    scene parameters, in the same order, as one thread (the references' cache key is their digest)."""
    import lowlight_edge.datasets as D

    threaded = eval_frames(eval_dir, RGB, (H, W), size=9)
    monkeypatch.setattr(D, "READ_THREADS", 1)
    single = eval_frames(eval_dir, RGB, (H, W), size=9)
    assert threaded.labels == single.labels and threaded.info == single.info
    assert sum(1 for i in single.info if i["scene"]) == 4
    assert all(np.array_equal(a, b) for a, b in zip(threaded, single, strict=True))


def test_a_raw_scene_photo_is_not_synthesized_as_a_plain_frame_first(eval_dir: Path, calib_dir: Path, monkeypatch) -> None:
    """Each synthetic RAW frame is made once: a photo whose position makes it a light-source scene
    never goes through the plain synthesis (1.3 s of a 12 MP frame), and the frames are the same
    as those made one at a time."""
    import lowlight_edge.datasets as D

    calls: list[tuple[int, int]] = []
    real = D.synthesize_raw

    def counted(rgb, **kwargs):
        calls.append(rgb.shape[:2])
        return real(rgb, **kwargs)

    monkeypatch.setattr(D, "synthesize_raw", counted)
    frames = eval_frames(eval_dir, RAW, (H, W), size=6)
    assert sum(1 for i in frames.info if i["scene"]) == 3 and len(calls) == 3
    calib = load_calibration(calib_dir, RAW, (H, W), size=5, max_mean=0.2)
    assert len(calls) == 3 + sum(1 for f in calib.frames if not f["scene"])
    monkeypatch.setattr(D, "READ_THREADS", 1)
    single = eval_frames(eval_dir, RAW, (H, W), size=6)
    assert single.info == frames.info and all(np.array_equal(a, b) for a, b in zip(frames, single, strict=True))


@pytest.mark.parametrize("shape", [(3, 4), (257, 130), (600, 301)])
def test_box_blur_in_blocks_is_the_whole_frame_running_sum(shape: tuple[int, int]) -> None:
    """_box_blur builds its running sum BLUR_ROWS rows at a time: bit for bit the whole-frame sum
    (a scene's light mask, hence its frame and the references' cache key, depend on it)."""
    plane = np.random.default_rng(shape[0]).random(shape, dtype=np.float32) ** 3
    pad = S.BLUR // 2
    c = np.pad(np.pad(plane.astype(np.float64), pad, mode="edge").cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w, k = *shape, S.BLUR
    whole = ((c[k:k + h, k:k + w] - c[:h, k:k + w] - c[k:k + h, :w] + c[:h, :w]) / (k * k)).astype(np.float32)
    blurred = S._box_blur(plane)
    np.testing.assert_array_equal(blurred, whole)
    if min(shape) > 2 * pad:  # and it is the box mean: away from the edges, the mean of each 5x5 window
        windows = np.lib.stride_tricks.sliding_window_view(plane, (k, k)).mean(axis=(-1, -2))
        np.testing.assert_allclose(blurred[pad:h - pad, pad:w - pad], windows, rtol=1e-5, atol=1e-6)
