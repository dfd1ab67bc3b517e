"""lowlight_edge/datasets.py: seeded real-image calibration sets, their hash, RAW frames, eval guard."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lowlight_edge import raw as R
from lowlight_edge.datasets import (
    CalibrationSet,
    check_not_eval,
    check_usable,
    eval_frames,
    frame_seed,
    frames_digest,
    load_calibration,
)
from lowlight_edge.errors import DataError, UsageError
from lowlight_edge.images import fit, list_images, read_rgb
from lowlight_edge.scenes import crushed_shadows, night_lights

RES = (64, 96)


@dataclass(frozen=True)
class Spec:
    """The ModelSpec fields calibration reads (kept here so these tests do not depend on the zoo)."""

    name: str
    input_kind: str
    channels: int
    value_range: tuple[float, float]
    bayer_pattern: str | None = None


RGB = Spec("tiny_rgb", "rgb", 3, (0.0, 1.0))
RAW = Spec("tiny_raw", "raw_bayer", 1, (0.0, 300.0), "RGGB")


@pytest.fixture(scope="module")
def rgb_set(calib_dir: Path) -> CalibrationSet:
    return load_calibration(calib_dir, RGB, RES, size=4, seed=0)


def few_images(src: Path, dst: Path, count: int) -> Path:
    dst.mkdir()
    for path in list_images(src)[:count]:
        shutil.copy(path, dst / path.name)
    return dst


def test_subset_follows_the_documented_seeded_rule(calib_dir: Path, rgb_set: CalibrationSet) -> None:
    files = list_images(calib_dir)
    order = np.random.default_rng(0).choice(len(files), size=len(files), replace=False)
    expected = sorted(files[i] for i in order[:4])
    assert rgb_set.files == expected
    assert len(rgb_set) == 4 and rgb_set.resolution == RES and rgb_set.notes == []
    assert len(rgb_set.hash) == 64


def test_same_arguments_same_set_and_hash(calib_dir: Path, rgb_set: CalibrationSet) -> None:
    again = load_calibration(calib_dir, RGB, RES, size=4, seed=0)
    assert again.hash == rgb_set.hash and again.files == rgb_set.files
    assert all(np.array_equal(a, b) for a, b in zip(again.arrays, rgb_set.arrays, strict=True))


@pytest.mark.parametrize(
    ("spec", "res", "size", "seed"),
    [(RGB, RES, 4, 1), (RGB, RES, 5, 0), (RGB, (64, 64), 4, 0), (RAW, RES, 4, 0)],
    ids=["seed", "size", "resolution", "input_kind"],
)
def test_any_parameter_changes_the_hash(
    calib_dir: Path, rgb_set: CalibrationSet, spec: Spec, res: tuple[int, int], size: int, seed: int
) -> None:
    other = load_calibration(calib_dir, spec, res, size=size, seed=seed)
    assert other.hash != rgb_set.hash


def test_rgb_arrays_are_nchw_in_unit_range(calib_dir: Path, rgb_set: CalibrationSet) -> None:
    for i, (path, array, info) in enumerate(zip(rgb_set.files, rgb_set.arrays, rgb_set.frames, strict=True)):
        assert array.shape == (1, 3, *RES) and array.dtype == np.float32
        assert 0.0 <= array.min() and array.max() <= 1.0 and array.std() > 0.002  # not blank (a crushed frame is dark)
        assert info["file"] == path.name and info["sha256"] == frames_digest([array])
        if i % 4 == 0:  # plain frames: the photo itself
            assert info["scene"] is None
            np.testing.assert_array_equal(array[0].transpose(1, 2, 0), fit(read_rgb(path), *RES))
        elif i % 4 == 2:  # every fourth: the same photo with its shadows crushed to 0 by a black point
            expected, params = crushed_shadows(fit(read_rgb(path), *RES), frame_seed(0, "calib:crushed_shadows", path.name))
            np.testing.assert_array_equal(array[0].transpose(1, 2, 0), expected)
            assert info["scene"] == params and params["recipe"] == "crushed_shadows"
            assert (array == 0).mean() >= 0.15 and params["zeros_made"] == pytest.approx((array == 0).mean(), abs=1e-4)
        else:  # every second frame: the light-source night scene of the same photo, with its lights clipped
            expected, params = night_lights(fit(read_rgb(path), *RES), frame_seed(0, "calib:night_lights", path.name))
            np.testing.assert_array_equal(array[0].transpose(1, 2, 0), expected)
            assert info["scene"] == params and params["recipe"] == "night_lights"
            assert array.max() == 1.0 and params["clipped_fraction"] > 0.001
    meta = rgb_set.meta()
    assert meta["hash"] == rgb_set.hash and meta["files"] == [p.name for p in rgb_set.files]
    assert meta["scenes"]["recipe"] == "night_lights" and meta["frames"] == rgb_set.frames
    assert meta["scenes"]["crushed"]["recipe"] == "crushed_shadows" and meta["scenes"]["crushed"]["every"] == 4
    plain = load_calibration(calib_dir, RGB, RES, size=4, seed=0, scenes=None)
    assert plain.files == rgb_set.files and plain.hash != rgb_set.hash  # the recipe is part of the hash
    assert all(f["scene"] is None for f in plain.frames)


def test_raw_model_gets_synthetic_bayer_frames(calib_dir: Path) -> None:
    calib = load_calibration(calib_dir, RAW, RES, size=3, seed=0, scenes=None)
    for path, array in zip(calib.files, calib.arrays, strict=True):
        assert array.shape == (1, 1, *RES) and array.dtype == np.float32
        assert array.min() >= 0.0
        expected = R.synthesize_raw(fit(read_rgb(path), *RES), seed=frame_seed(0, "calib", path.name))
        np.testing.assert_array_equal(array[0, 0], expected)
    # amplified back by the true ratio: the frames sit at the level of the linear image, not at 1/ratio
    levels = [R._robust_level(a) for a in calib.arrays]
    linear = [R._robust_level(R.unprocess_mosaic(fit(read_rgb(p), *RES))) for p in calib.files]
    np.testing.assert_allclose(levels, linear, rtol=0.2, atol=0.01)


def test_eval_frames_share_preprocessing_but_not_noise(calib_dir: Path, tmp_path: Path) -> None:
    folder = few_images(calib_dir, tmp_path / "three", 3)
    rgb = eval_frames(folder, RGB, RES, scenes=None)
    calib = load_calibration(folder, RGB, RES, size=3, scenes=None)
    assert len(rgb) == 3 and all(np.array_equal(a, b) for a, b in zip(rgb, calib.arrays, strict=True))
    raw_eval = eval_frames(folder, RAW, RES, scenes=None)
    raw_calib = load_calibration(folder, RAW, RES, size=3, scenes=None).arrays
    assert all(np.array_equal(a, b) for a, b in zip(raw_eval, eval_frames(folder, RAW, RES, scenes=None), strict=True))
    for e, c in zip(raw_eval, raw_calib, strict=True):
        assert e.shape == c.shape == (1, 1, *RES)
        assert not np.array_equal(e, c)  # distinct seeds: other ratio and noise
        assert abs(R._robust_level(e) - R._robust_level(c)) < 0.2 * R._robust_level(c) + 0.01
    assert len(eval_frames(folder, RGB, RES, size=2, seed=1)) == 2


def test_fewer_files_than_size_uses_all_and_says_so(calib_dir: Path, tmp_path: Path) -> None:
    folder = few_images(calib_dir, tmp_path / "two", 2)
    calib = load_calibration(folder, RGB, RES, size=32)
    assert len(calib) == 2 and "fewer than the 32 asked for" in calib.notes[0]


def test_missing_or_empty_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_calibration(tmp_path / "nowhere", RGB, RES)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images .* in .*empty"):
        load_calibration(tmp_path / "empty", RGB, RES)


def test_small_and_unreadable_images_are_skipped(
    calib_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    first = list_images(calib_dir)[0]
    Image.open(first).convert("RGB").resize((40, 30)).save(folder / "a_small.png")
    (folder / "b_broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="no image of usable size"):
        load_calibration(folder, RGB, RES, size=4)
    shutil.copy(first, folder / "c_good.jpg")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lowlight_edge.datasets"):
        calib = load_calibration(folder, RGB, RES, size=4)
    assert [p.name for p in calib.files] == ["c_good.jpg"]
    assert any("skipped 2 unusable" in n for n in calib.notes)
    assert sum("skipping" in r.message for r in caplog.records) == 2


def test_check_usable_raises_what_loading_would_and_makes_no_frame(calib_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A 12 MP search checks its full-size calibration images up front with check_usable: the errors
    of load_calibration, and no synthetic RAW frame made (one took a second at 12 MP)."""
    import lowlight_edge.datasets as D

    folder = tmp_path / "small"
    folder.mkdir()
    Image.open(list_images(calib_dir)[0]).convert("RGB").resize((40, 30)).save(folder / "a_small.png")
    for check in (check_usable, load_calibration):
        with pytest.raises(DataError, match="no image of usable size"):
            check(folder, RGB, RES)
        with pytest.raises(DataError, match="darker than mean level 0.0001"):
            check(calib_dir, RAW, RES, max_mean=0.0001)
        with pytest.raises(UsageError, match="even"):
            check(calib_dir, RAW, (63, 96))
    monkeypatch.setattr(D, "synthesize_raw", lambda *a, **k: pytest.fail("check_usable made a frame"))
    check_usable(folder, RAW, RES)  # a synthetic RAW frame is unprocessed from any photo, even a small one
    check_usable(calib_dir, RGB, RES, max_mean=0.5)


def test_bad_arguments_are_usage_errors(calib_dir: Path) -> None:
    with pytest.raises(UsageError, match="size"):
        load_calibration(calib_dir, RGB, RES, size=0)
    with pytest.raises(UsageError, match="even"):
        load_calibration(calib_dir, RAW, (63, 96), size=1)
    with pytest.raises(UsageError, match="input_kind"):
        load_calibration(calib_dir, Spec("x", "depth", 1, (0.0, 1.0)), RES, size=1)


def test_eval_guard(calib_dir: Path, eval_dir: Path, tmp_path: Path) -> None:
    check_not_eval(calib_dir, eval_dir)  # the shipped folders are disjoint
    with pytest.raises(UsageError, match="overlap"):
        check_not_eval(eval_dir, eval_dir)
    with pytest.raises(UsageError, match="overlap"):
        check_not_eval(eval_dir.parent, eval_dir)
    sneaky = few_images(calib_dir, tmp_path / "calib_copy", 2)
    shutil.copy(list_images(eval_dir)[0], sneaky / "renamed.png")
    with pytest.raises(UsageError, match="also eval images"):
        check_not_eval(sneaky, eval_dir)


def test_import_pulls_in_no_heavy_backend() -> None:
    code = (
        "import sys, lowlight_edge.raw, lowlight_edge.datasets; "
        "bad = [m for m in ('nncf', 'openvino', 'tensorrt', 'rawpy', 'torch') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
