"""lowlight_edge/raw.py: synthetic RAW, the amplification estimator, CFA handling and reading real DNG files.

There is no camera RAW file in this project, so the rawpy path is tested on real DNG files that
the tests write with Pillow (a TIFF with the DNG and CFA tags, read back by LibRaw through rawpy).
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from export.config import ExportRequest
from export.pipeline import export
from lowlight_edge import raw as R
from lowlight_edge.errors import DataError, MissingRequirement, UsageError
from lowlight_edge.images import fit, list_images, read_rgb
from lowlight_edge.plan import load_plan

H, W = 64, 96
CODE = {"R": 0, "G": 1, "B": 2}


@pytest.fixture(scope="module")
def calib_images(calib_dir: Path) -> list[np.ndarray]:
    """The first 30 calib images (sorted by name) fitted to 64x96."""
    return [fit(read_rgb(p), H, W) for p in list_images(calib_dir)[:30]]


def write_dng(
    path: Path,
    counts: np.ndarray,
    cfa: tuple[int, ...] = (0, 1, 1, 2),
    dim: tuple[int, int] = (2, 2),
    black: tuple[int, ...] = (512,),
    white: int = 16383,
) -> Path:
    """A minimal uncompressed CFA DNG (16-bit) that LibRaw reads; cfa indices 0=R 1=G 2=B (3=4th colour)."""
    from PIL import Image, TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[254] = 0  # main image
    ifd[262] = 32803  # PhotometricInterpretation = CFA
    ifd.tagtype[33421], ifd[33421] = 3, dim  # CFARepeatPatternDim
    ifd.tagtype[33422], ifd[33422] = 1, bytes(cfa)  # CFAPattern
    ifd.tagtype[50706], ifd[50706] = 1, bytes((1, 4, 0, 0))  # DNGVersion
    ifd[271], ifd[272], ifd[50708] = "Sony", "ILCE-7SM2", "Sony ILCE-7SM2"
    if len(black) == 4:
        ifd.tagtype[50713], ifd[50713] = 3, (2, 2)  # BlackLevelRepeatDim
    ifd.tagtype[50714], ifd[50714] = 4, tuple(black)
    ifd.tagtype[50717], ifd[50717] = 4, (white,)
    matrix = R.XYZ_TO_SONY.ravel()
    ifd.tagtype[50721], ifd[50721] = 10, tuple(Fraction(round(v * 10000), 10000) for v in matrix)
    ifd.tagtype[50778], ifd[50778] = 3, 21  # CalibrationIlluminant1 = D65
    h, w = counts.shape
    image = Image.frombytes("I;16", (w, h), counts.astype("<u2").tobytes())
    image.save(path, format="TIFF", tiffinfo=ifd)
    return path


def labelled(pattern: str, h: int = 6, w: int = 8) -> np.ndarray:
    """A plane whose pixels hold their CFA colour code under ``pattern``."""
    plane = np.empty((h, w), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            plane[i, j] = CODE[pattern[(i % 2) * 2 + j % 2]]
    return plane


# --- synthetic RAW -------------------------------------------------------------------------------


def test_synthesize_is_deterministic_per_seed(calib_images: list[np.ndarray]) -> None:
    rgb = calib_images[0]
    a, info = R.synthesize_raw(rgb, seed=3, return_info=True)
    b = R.synthesize_raw(rgb, seed=3)
    c = R.synthesize_raw(rgb, seed=4)
    assert a.shape == (H, W) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert R.RATIO_RANGE[0] <= info["ratio"] <= R.RATIO_RANGE[1]
    counts = R.synthesize_raw_counts(rgb, seed=3)
    assert counts.dtype == np.uint16 and counts.shape == (H, W)
    assert counts.min() >= 0 and counts.max() <= R.SYNTH_WHITE
    # the plane is exactly the model normalisation of the counts, amplified by the true ratio
    assert np.array_equal(a, R.normalize_raw(counts, 512, 16383, info["ratio"]))


def test_unprocessing_of_white_gives_inverse_white_balance() -> None:
    white = np.ones((4, 6, 3), dtype=np.float32)
    mosaic = R.unprocess_mosaic(white)
    np.testing.assert_allclose(R.RGB_TO_CAM.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(mosaic[0::2, 0::2], 1 / R.WB_GAINS[0], rtol=1e-5)  # R
    np.testing.assert_allclose(mosaic[0::2, 1::2], 1.0, rtol=1e-5)  # G
    np.testing.assert_allclose(mosaic[1::2, 0::2], 1.0, rtol=1e-5)  # G
    np.testing.assert_allclose(mosaic[1::2, 1::2], 1 / R.WB_GAINS[2], rtol=1e-5)  # B
    with pytest.raises(UsageError, match="even"):
        R.unprocess_mosaic(np.ones((5, 6, 3), dtype=np.float32))


@pytest.mark.parametrize("ratio", [100.0, 300.0])
def test_amplified_frame_mean_matches_linear_mosaic(calib_images: list[np.ndarray], ratio: float) -> None:
    rgb = calib_images[3]
    linear = R.unprocess_mosaic(rgb)
    span = R.SYNTH_WHITE - R.SYNTH_BLACK
    # noise-free: only 14-bit rounding separates the two, and it averages out
    clean = R.synthesize_raw(rgb, ratio=ratio, noise=(0.0, 0.0))
    assert abs(clean.mean() - linear.mean()) < 0.05 * ratio / span
    for site in ((0, 0), (0, 1), (1, 0), (1, 1)):
        sl = np.s_[site[0] :: 2, site[1] :: 2]
        assert abs(clean[sl].mean() - linear[sl].mean()) < 0.1 * ratio / span
    # with noise: zero-mean except where max(raw - black, 0) clips the read noise
    noisy, info = R.synthesize_raw(rgb, ratio=ratio, seed=1, return_info=True)
    read_sd = np.sqrt(info["read_noise"])
    spread = np.sqrt((info["shot_noise"] * linear.mean() + info["read_noise"]) / linear.size)
    assert abs(noisy.mean() - linear.mean()) < 0.5 * read_sd + 4 * spread + ratio / span
    assert not np.allclose(noisy, clean)


def test_noise_follows_the_documented_model() -> None:
    grey = np.full((128, 128, 3), 0.5, dtype=np.float32)
    shot, read = 0.01, 1e-4
    frame = R.synthesize_raw(grey, ratio=100.0, seed=0, noise=(shot, read))
    level = R.unprocess_mosaic(grey)[0, 1]  # a green site
    green = frame[0::2, 1::2]
    assert abs(green.mean() - level) < 0.01
    assert green.var() == pytest.approx(shot * level + read, rel=0.15)


# --- the amplification estimator ----------------------------------------------------------------


def test_estimate_amp_recovers_ratio_for_typical_scenes(calib_images: list[np.ndarray]) -> None:
    # scenes as bright as the median training scene (robust level within 1.25x of TARGET_LEVEL)
    typical = [
        rgb
        for rgb in calib_images
        if 0.8 <= R.TARGET_LEVEL / R._robust_level(R.unprocess_mosaic(rgb)) <= 1.25
    ]
    assert len(typical) >= 3, "expected some calib scenes of typical brightness among the first 30"
    for index, rgb in enumerate(typical[:3]):
        for ratio in (100.0, 180.0, 300.0):
            counts = R.synthesize_raw_counts(rgb, ratio=ratio, seed=index)
            amp = R.estimate_amp(R.normalize_raw(counts, 512, 16383))
            assert 1 / 1.5 < amp / ratio < 1.5, (index, ratio, amp)


def test_estimate_amp_is_off_by_the_scene_brightness_only(calib_images: list[np.ndarray]) -> None:
    # any scene, dark or bright: the estimate is ratio * TARGET_LEVEL / scene level (clip disabled)
    for index, rgb in enumerate(calib_images[:8]):
        expected = R.TARGET_LEVEL / R._robust_level(R.unprocess_mosaic(rgb))
        counts = R.synthesize_raw_counts(rgb, ratio=100.0, seed=index)
        amp = R.estimate_amp(R.normalize_raw(counts, 512, 16383), max_amp=1e6)
        assert amp / 100.0 == pytest.approx(expected, rel=0.25), index


def test_estimate_amp_bounds() -> None:
    assert R.estimate_amp(np.zeros((8, 8), np.float32)) == R.MAX_AMP
    assert R.estimate_amp(np.full((8, 8), 0.9, np.float32)) == 1.0
    assert R.estimate_amp(np.full((8, 8), 1e-6, np.float32), max_amp=50) == 50


# --- pure RAW helpers ------------------------------------------------------------------------------


def test_normalize_raw_scalar_and_per_site_black() -> None:
    counts = np.array([[500, 612, 1000, 16383], [512, 512, 8447, 600]], dtype=np.uint16)
    x = R.normalize_raw(counts, 512, 16383, amp=2.0)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[0], [0.0, 200 / 15871, 976 / 15871, 2.0], rtol=1e-6)
    per_site = np.array([[500, 510], [520, 530]])
    y = R.normalize_raw(counts, per_site, 16383)
    np.testing.assert_allclose(y[1, 2], (8447 - 520) / (16383 - 520), rtol=1e-6)  # row 1, even col
    np.testing.assert_allclose(y[0, 3], (16383 - 510) / (16383 - 510), rtol=1e-6)  # row 0, odd col
    assert y[0, 0] == 0.0  # below black clips to 0
    with pytest.raises(DataError, match="not above the black level"):
        R.normalize_raw(counts, 512, 400)


@pytest.mark.parametrize(
    ("pattern", "shift"), [("RGGB", (0, 0)), ("GRBG", (0, 1)), ("GBRG", (1, 0)), ("BGGR", (1, 1))]
)
def test_align_to_rggb(pattern: str, shift: tuple[int, int]) -> None:
    plane = labelled(pattern)
    aligned, notes = R.align_to_rggb(plane, pattern)
    assert aligned.shape == (6 - shift[0], 8 - shift[1])
    assert np.all(aligned[0::2, 0::2] == CODE["R"]) and np.all(aligned[1::2, 1::2] == CODE["B"])
    assert np.all(aligned[0::2, 1::2] == CODE["G"]) and np.all(aligned[1::2, 0::2] == CODE["G"])
    assert bool(notes) == (shift != (0, 0))
    if shift == (1, 1):
        assert "first row and the first column" in notes[0]


def test_align_refuses_non_bayer_patterns() -> None:
    with pytest.raises(UsageError, match="unknown Bayer pattern"):
        R.align_to_rggb(np.zeros((4, 4)), "RGBG")


def test_cfa_pattern_from_rawpy_fields() -> None:
    assert R.cfa_pattern(np.array([[0, 1], [3, 2]]), b"RGBG") == "RGGB"
    assert R.cfa_pattern(np.array([[2, 3], [1, 0]]), b"RGBG") == "BGGR"
    assert R.cfa_pattern(np.array([[1, 0], [2, 3]]), "RGBG") == "GRBG"
    xtrans = np.array([[1, 1, 0, 1, 1, 2], [1, 1, 2, 1, 1, 0], [2, 0, 1, 0, 2, 1]] * 2)
    with pytest.raises(DataError, match="X-Trans"):
        R.cfa_pattern(xtrans, b"RGBG")
    with pytest.raises(DataError, match="GMCY"):
        R.cfa_pattern(np.array([[0, 1], [2, 3]]), b"GMCY")
    with pytest.raises(DataError, match="no colour filter array"):
        R.cfa_pattern(None, b"RGBG")


def test_crop_to_multiple() -> None:
    plane = np.zeros((66, 98), np.float32)
    cropped, notes = R.crop_to_multiple(plane, 16)
    assert cropped.shape == (64, 96) and notes == ["cropped 66x98 to 64x96 (multiple of 16, bottom/right)"]
    assert R.crop_to_multiple(cropped, 16)[1] == []
    with pytest.raises(DataError, match="smaller than 16x16"):
        R.crop_to_multiple(np.zeros((10, 40)), 16)


def test_fit_bayer_keeps_every_site_in_its_colour() -> None:
    plane = np.tile(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), (40, 60))  # 80x120
    small = R.fit_bayer(plane, 32, 48)
    assert small.shape == (32, 48)
    for (i, j), value in {(0, 0): 1.0, (0, 1): 2.0, (1, 0): 3.0, (1, 1): 4.0}.items():
        np.testing.assert_allclose(small[i::2, j::2], value, rtol=1e-6)


# --- real DNG files through rawpy ----------------------------------------------------------------


def test_read_raw_dng_rggb(tmp_path: Path, calib_images: list[np.ndarray]) -> None:
    rgb = fit(calib_images[0], 66, 98)
    counts = R.synthesize_raw_counts(rgb, ratio=100.0, seed=5)
    path = write_dng(tmp_path / "rggb.dng", counts)
    frame, info = R.read_raw(path, amp=100.0)
    assert frame.dtype == np.float32 and frame.shape == (64, 96)
    np.testing.assert_allclose(frame, R.normalize_raw(counts, 512, 16383, 100.0)[:64, :96], rtol=1e-6)
    assert info["black"] == 512 and info["white"] == 16383 and info["pattern"] == "RGGB"
    assert info["crop"] == (0, 0, 64, 96) and info["amp"] == 100.0 and not info["amp_estimated"]
    assert any("66x98 to 64x96" in n for n in info["notes"])


def test_read_raw_dng_bggr_is_shifted_to_rggb(tmp_path: Path, calib_images: list[np.ndarray]) -> None:
    counts = R.synthesize_raw_counts(fit(calib_images[3], 64, 96), ratio=150.0, seed=2)
    # one extra row and column on the top-left: the file now starts on a blue site
    padded = np.pad(counts, ((1, 0), (1, 0)), constant_values=9000)
    # per-site black levels in file order B, G, G, R; after the shift they must follow the sites
    path = write_dng(tmp_path / "bggr.dng", padded, cfa=(2, 1, 1, 0), black=(500, 510, 520, 530))
    frame, info = R.read_raw(path, amp=150.0)
    assert info["pattern"] == "BGGR" and info["crop"] == (1, 1, 64, 96)
    assert any("BGGR aligned to RGGB" in n for n in info["notes"])
    assert info["black"] == [530.0, 520.0, 510.0, 500.0]  # R, G, G, B of the aligned plane
    black = np.array([[530, 520], [510, 500]])
    np.testing.assert_allclose(frame, R.normalize_raw(counts, black, 16383, 150.0), rtol=1e-6)


def test_read_raw_dng_per_channel_black_and_estimated_amp(
    tmp_path: Path, calib_images: list[np.ndarray]
) -> None:
    counts = R.synthesize_raw_counts(calib_images[0], ratio=120.0, seed=7)
    path = write_dng(tmp_path / "black4.dng", counts, black=(500, 510, 520, 530))
    frame, info = R.read_raw(path)
    assert info["black"] == [500.0, 510.0, 520.0, 530.0]
    assert info["amp_estimated"] and 1.0 <= info["amp"] <= R.MAX_AMP
    expected = R.normalize_raw(counts, np.array([[500, 510], [520, 530]]), 16383, info["amp"])
    np.testing.assert_allclose(frame, expected, rtol=1e-6)
    # calib image 0 is a scene of typical brightness: the estimate lands near the true ratio
    assert 1 / 1.5 < info["amp"] / 120.0 < 1.5


def test_read_raw_refuses_non_bayer_and_bad_input(tmp_path: Path) -> None:
    flat = np.full((48, 96), 600, np.uint16)
    xtrans = [
        1,
        1,
        0,
        1,
        1,
        2,
        1,
        1,
        2,
        1,
        1,
        0,
        2,
        0,
        1,
        0,
        2,
        1,
        1,
        1,
        2,
        1,
        1,
        0,
        1,
        1,
        0,
        1,
        1,
        2,
        0,
        2,
        1,
        2,
        0,
        1,
    ]
    with pytest.raises(DataError, match="X-Trans"):
        R.read_raw(write_dng(tmp_path / "xtrans.dng", flat, cfa=tuple(xtrans), dim=(6, 6)))
    with pytest.raises(DataError, match="not an RGB Bayer"):
        R.read_raw(write_dng(tmp_path / "cmyg.dng", flat, cfa=(0, 1, 2, 3)))
    junk = tmp_path / "junk.dng"
    junk.write_bytes(b"not a raw file" * 10)
    with pytest.raises(DataError, match="cannot read RAW file"):
        R.read_raw(junk)
    with pytest.raises(DataError, match="does not exist"):
        R.read_raw(tmp_path / "missing.arw")
    with pytest.raises(UsageError, match="amplification"):
        R.read_raw(junk, amp=400.0)


def test_read_raw_without_rawpy_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rawpy", None)  # makes `import rawpy` raise ImportError
    path = write_dng(tmp_path / "a.dng", np.full((32, 32), 600, np.uint16))
    with pytest.raises(MissingRequirement, match=r"pip install 'lowlight-edge\[raw\]'"):
        R.read_raw(path)


# --- light sources at the whole amplification range (issue 17) ----------------------------------


def test_llpacknet_int8_never_ships_past_the_budget_on_light_source_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quantize stage checks INT8 on eval frames that include lamps clipped at amplification 300 and 1."""
    monkeypatch.setenv("LOWLIGHT_EDGE_REF_CACHE", str(tmp_path / "refs"))
    # pinned: INT8 is calibrated and verified whatever its speed at this size (auto may give it up before calibration)
    request = ExportRequest(model="llpacknet", resolution=(64, 96), until="quantize", out=tmp_path, verify_images=4, calib_size=8,
                            ship="int8")
    manifest = json.loads(export(request, progress=False).read_text())
    folder = tmp_path / "x86-cpu" / "llpacknet"
    plan = load_plan(folder / "precision_plan.yaml")
    result = plan.fidelity["eval"]
    lights = [name for name in result["per_frame"] if name.endswith("+night_lights")]
    # judged on the wider eval set (Context.wide_size: every eval frame at this size), half of it lamp scenes
    assert len(result["per_frame"]) > request.verify_images and len(lights) == len(result["per_frame"]) // 2
    assert result["worst"]["psnr_db"] == result["psnr_db"]["min"]
    assert any("amplification 300, 1" in n for n in manifest["notes"])
    scenes = [f["scene"] for f in plan.calibration["frames"] if f["scene"]]
    assert scenes and max(s["amp"] for s in scenes) == 300.0 and all(len(f["sha256"]) == 64 for f in plan.calibration["frames"])
    if plan.decision == "int8":  # whatever shipped holds the budget's min on its worst frame, lamps included
        assert result["worst"]["psnr_db"] >= plan.budget["psnr_min_db"]
    else:
        assert "ir_int8" not in {f["role"] for f in manifest["files"]}
