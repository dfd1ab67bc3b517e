"""The bench's video figures (issue 18) on real clips from eval photos: streams at 30 fps, flicker, smoothing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import video_rows
from bench.cli import build_parser
from bench.report import render_html, render_markdown
from export.config import ExportRequest
from export.pipeline import export
from lowlight_edge import zoo

H, W = 64, 96


@pytest.fixture(scope="module")
def iat_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("art")
    manifest = export(ExportRequest(model="iat", resolution=(H, W), until="onnx", out=out, verify_images=2), progress=False)
    return manifest.parent / "iat.onnx"


def test_iat_row_reports_streams_flicker_and_smoothing(iat_onnx: Path, eval_dir: Path, tmp_path: Path) -> None:
    spec = zoo.get_spec("iat")
    clips, recipe = video_rows.make_clips(eval_dir, spec, (H, W), tmp_path)
    assert len(clips) == video_rows.SCENES and recipe["frames_per_scene"] == video_rows.CLIP_FRAMES
    assert len(recipe["scenes"]) == video_rows.SCENES and recipe["resolution"] == f"{H}x{W}"
    record = video_rows.measure_video("onnxruntime", iat_onnx, "cpu", {"threads": 2}, spec, clips, tmp_path)
    assert record["frames"] == video_rows.SCENES * video_rows.CLIP_FRAMES
    assert 0 < record["e2e_fps"] <= record["infer_fps"]  # end to end includes inference and more
    assert record["streams_at_fps"] == pytest.approx(record["e2e_fps"] / 30, rel=0.01)
    assert set(record["stage_ms"]) == {"decode", "pre", "infer", "post", "encode"}
    assert all(v >= 0 for v in record["stage_ms"].values()) and record["stage_ms"]["encode"] > 0
    assert math.isfinite(record["flicker"]) and record["flicker"] > 0
    smooth = record["smoothing"]
    assert smooth["alpha"] == video_rows.SMOOTHING_ALPHA
    assert smooth["flicker_coarse"] < record["flicker_coarse"]  # smoothing the global parameters steadies the image
    cost = smooth["psnr_vs_unsmoothed_db"]
    assert 20 < cost["min"] <= cost["mean"] < 99  # and costs a stated, finite amount per frame
    assert not list(tmp_path.glob("sink*"))  # the encoded streams were timed, then removed


def test_rows_that_cannot_be_measured_say_why() -> None:
    assert "RAW" in video_rows.skip_reason(zoo.get_spec("llpacknet"), "openvino", "CPU", tiled=False)
    assert "tiles" in video_rows.skip_reason(zoo.get_spec("tinydce"), "openvino", "CPU", tiled=True)
    assert "reference" in video_rows.skip_reason(zoo.get_spec("tinydce"), "torch", "cpu", tiled=False)
    assert "CUDA" in video_rows.skip_reason(zoo.get_spec("tinydce"), "tensorrt", "cpu", tiled=False)
    assert video_rows.skip_reason(zoo.get_spec("tinydce"), "openvino", "CPU", tiled=False) is None
    assert "baseline" in video_rows.skip_reason(zoo.get_spec("tinydce"), "openvino", "CPU", tiled=False, baseline=True)
    assert build_parser().parse_args(["--no-video"]).no_video is True


def test_reports_show_the_video_figures() -> None:
    video = {"e2e_fps": 1.5, "infer_fps": 1.6, "streams_at_fps": 0.05, "flicker": 6.5, "flicker_coarse": 7.1,
             "smoothing": {"alpha": 0.9, "flicker": 5.8, "flicker_coarse": 6.3, "psnr_vs_unsmoothed_db": {"mean": 57.4, "min": 42.6}}}
    rows = [{"model": "iat", "runtime": "openvino", "precision": "fp32", "video": video},
            {"model": "llpacknet", "runtime": "openvino", "precision": "fp32", "video": {"skipped": "RAW Bayer model: camera video is RGB"}}]
    page = render_html(rows)
    assert "1.5 fps end to end (0.05 streams at 30 fps)" in page and "flicker 5.8 (blocks 6.3)" in page
    assert "video: skipped (RAW Bayer model" in page
    table = render_markdown(rows)
    assert "| iat | fp32 (openvino) | 1.5 | 1.6 | 0.05 | 6.5 | 7.1 | 5.8 | 6.3 | 57.4 / 42.6 |" in table
    # the baseline row's skip is said once, on its own row, not as a line of the video table
    baseline = {"model": "iat", "runtime": "openvino", "precision": "fp32", "baseline": "openvino-default",
                "video": {"skipped": "the OpenVINO-defaults baseline is a speed reference, not a deployment"}}
    table = render_markdown([*rows, baseline])
    assert table.split("## Video")[1].count("| iat |") == 1 and "speed reference" not in table.split("## Video")[1]
