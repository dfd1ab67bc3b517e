"""`python -m bench` end to end on a tiny target, and the host checks at the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main as bench_main
from lowlight_edge.console import run_main

TINY_TARGET = """
version: 1
targets:
  tiny-cpu:
    description: a tiny x86 target for tests
    runtime: openvino
    device: CPU
    precisions: [int8, fp32]
    threads: 1
    budget: {psnr_mean_db: 40.0, psnr_min_db: 38.0}
    warmup: 1
    iterations: 3
    timeout_s: 300
    resolutions:
      default: 48x72
    requires: [openvino]
    options:
      hint: LATENCY
      precision: f32
"""


@pytest.mark.parametrize("target", ["jetson-orin", "desktop-gpu"])
def test_gpu_target_on_this_host_exits_2_and_writes_nothing(tmp_path: Path, target: str, capsys) -> None:
    out = tmp_path / "results"
    code = run_main(bench_main, ["--target", target, "--out", str(out), "--artifacts", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "jetson" in err.lower() or "tensorrt" in err.lower() or "cuda" in err.lower()
    assert not out.exists() and not (tmp_path / "a").exists()


def test_unknown_model_exits_2(tmp_path: Path, capsys) -> None:
    code = run_main(bench_main, ["--models", "zero_dce", "--out", str(tmp_path / "r")])
    assert code == 2 and "zero_dce_pp" in capsys.readouterr().err


def test_bench_writes_the_three_files_with_torch_alongside(tmp_path: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text(TINY_TARGET)
    out = tmp_path / "results"
    code = run_main(
        bench_main,
        ["--targets", str(targets), "--target", "tiny-cpu", "--models", "tinydce", "--out", str(out),
         "--artifacts", str(tmp_path / "artifacts"), "--quiet"],
    )
    assert code == 0
    rows = json.loads((out / "results.json").read_text())
    assert (out / "results.md").is_file() and (out / "results.png").stat().st_size > 1000
    by = {(r["runtime"], r["precision"]): r for r in rows if not r.get("baseline")}
    assert ("torch", "fp32") in by and ("openvino", "fp32") in by
    fp32 = by[("openvino", "fp32")]
    for key in ("model", "target", "runtime", "precision", "resolution", "latency_ms", "fps", "cold_start_s",
                "peak_mem_mb", "psnr_db", "ssim", "max_abs_err", "nonfinite", "speedup_vs_torch", "roofline_ms",
                "roofline_fraction", "host"):
        assert key in fp32, key
    assert set(fp32["latency_ms"]) >= {"p50", "p90", "p99", "max", "mean"}
    assert fp32["resolution"] == "48x72" and fp32["psnr_db"]["min"] >= 60 and fp32["nonfinite"] == 0
    assert fp32["speedup_vs_torch"] > 0 and 0 < fp32["roofline_fraction"]
    assert by[("torch", "fp32")]["speedup_vs_torch"] == pytest.approx(1.0)
    # the video figures (issue 18): streams at 30 fps end to end, flicker; TinyDCE has nothing to smooth
    video = fp32["video"]
    assert video["frames"] > 0 and 0 < video["e2e_fps"] <= video["infer_fps"] and video["flicker"] > 0
    assert "global parameters" in video["smoothing"]["skipped"] and video["clip"]["fps"] == 30
    assert "skipped" in by[("torch", "fp32")]["video"]
    assert "## Video: streams at 30 fps" in (out / "results.md").read_text()
    # the baseline (OpenVINO FP32 with its defaults on the plain export): one more row, the ratio beside each row
    (baseline,) = [r for r in rows if r.get("baseline")]
    assert baseline["baseline"] == "openvino-default" and (baseline["runtime"], baseline["precision"]) == ("openvino", "fp32")
    assert Path(baseline["artifact"]).name == "tinydce.onnx" and Path(baseline["artifact"]).is_file()
    assert not Path(baseline["artifact"] + ".json").exists()  # no sidecar beside the raw export
    options = baseline["runtime_info"]["runtime_options"]
    assert "artifact" not in options["from"].values() and "overridden" not in options  # nothing from any sidecar
    assert options["used"] == {"precision": "f32"}  # the target's own pin; denormals at OpenVINO's default
    assert "denormals_optimization" not in baseline["runtime_info"] or not baseline["runtime_info"]["denormals_optimization"]
    assert any("plain ONNX export" in n for n in baseline["notes"])
    assert baseline["speedup_vs_baseline"] == pytest.approx(1.0)
    assert baseline["psnr_db"]["mean"] is not None and "skipped" in baseline["video"]
    for row in rows:
        if row["runtime"] == "openvino" and not row.get("error"):
            assert isinstance(row["speedup_vs_baseline"], float) and row["speedup_vs_baseline"] > 0
        if row["runtime"] == "openvino" and not row.get("error") and not row.get("baseline"):
            paired = row["vs_baseline_paired"]  # measured side by side with the baseline, in one process
            assert paired["rounds"] >= 10 and row["speedup_vs_baseline"] == paired["median"]
            assert len(paired["samples_ms"]["baseline_ms"]) == len(paired["samples_ms"]["row_ms"]) == paired["rounds"]
    assert by[("torch", "fp32")]["speedup_vs_baseline"] > 0  # the ratio is there for every row of the model
    assert rows[0]["build"]["seconds"] > 0 and set(rows[0]["build"]["stages"]) >= {"onnx", "simplify", "engine"}
    md = (out / "results.md").read_text()
    assert "- build cost (stage sums from each manifest, this host): tinydce @ " in md
    assert "| vs baseline |" in md and "fp32 (OpenVINO defaults, plain export)" in md
    assert md.count("1.00x") >= 1


def test_collect_help_is_help_not_a_folder(tmp_path: Path) -> None:
    """`python -m export.collect --help` once treated --help as the artifacts folder."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "export.collect", "--help"], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo)}, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m export.collect") and "ARTIFACTS_DIR" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no folder named --help, no MANIFEST.json
