"""A benchmark_app cross-check that disagrees is shown and fails the bench (exit 1); it is never only in results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main as bench_main
from bench.crosscheck import compare, find_benchmark_app, tolerance_for
from bench.report import crosscheck_failures, render_markdown
from lowlight_edge.console import run_main
from lowlight_edge.errors import MissingRequirement

BUDGET = {"psnr_mean_db": 40.0, "psnr_min_db": 38.0}


def rows() -> list[dict]:
    base = {"model": "tinydce", "target": "x86-cpu", "resolution": "400x600", "psnr_db": {"mean": 60.0, "min": 59.0},
            "nonfinite": 0, "latency_ms": {"p50": 12.1}}
    return [
        {**base, "runtime": "torch", "precision": "fp32", "psnr_db": None},
        {**base, "runtime": "openvino", "precision": "fp32", "crosscheck": compare(12.1, 10.0)},  # 21% vs 10%
        {**base, "runtime": "openvino", "precision": "int8", "latency_ms": {"p50": 5.0}, "crosscheck": compare(5.0, 4.8)},
        {**base, "model": "llpacknet", "runtime": "openvino", "precision": "fp32",
         "crosscheck": {"skipped": "benchmark_app would time one tile, the row a whole frame"}},
        {**base, "model": "sgz", "runtime": "openvino", "precision": "fp32",
         "crosscheck": {"error": "benchmark_app failed on x.xml: boom"}},
    ]


def test_a_disagreement_is_one_line_naming_the_row_and_by_how_much() -> None:
    failures = crosscheck_failures(rows())
    assert len(failures) == 2
    assert failures[0] == (
        "tinydce openvino fp32 @ 400x600 on x86-cpu: bench p50 12.10 ms vs benchmark_app 10.00 ms, "
        "21.0% apart, over the 10% tolerance"
    )
    assert failures[1].startswith("sgz openvino fp32") and "crosscheck did not run (benchmark_app failed" in failures[1]
    assert crosscheck_failures([r for r in rows() if r["precision"] == "int8"]) == []  # 4% apart agrees


def test_rows_above_10_ms_agree_within_10_percent_faster_rows_within_20_percent_or_half_a_ms() -> None:
    assert compare(11.0, 10.0)["ok"] and not compare(11.2, 10.0)["ok"]  # 10.0 -> 11.2 ms: 12%
    assert not compare(9.5, 11.0)["ok"] and compare(9.5, 11.0)["tolerance"] == 0.10  # either side above 10 ms
    assert compare(348.0, 380.0)["ok"] and not compare(496.0, 348.0)["ok"]  # the LLPackNet INT8 row
    assert compare(3.5, 3.0)["ok"] and not compare(4.0, 3.0)["ok"]  # 17% / 33% of a 3 ms row
    assert compare(1.0, 0.6)["ok"] and not compare(1.2, 0.6)["ok"]  # 0.4 ms apart / 0.6 ms apart
    assert tolerance_for(5.0, 4.0)[:2] == (0.20, 0.5) and "whichever is looser" in tolerance_for(5.0, 4.0)[2]
    assert compare(12.0, 10.0, tolerance=0.25)["ok"]  # an explicit tolerance is a plain relative one


def test_results_md_shows_every_crosscheck() -> None:
    md = render_markdown(rows(), BUDGET)
    assert "**crosscheck vs OpenVINO benchmark_app: 2 of 4 rows DISAGREE or failed**" in md
    assert "## Crosscheck" in md
    assert "| tinydce | openvino | fp32 | 12.10 | 10.00 | 21.0% | DISAGREE (tolerance 10%) |" in md
    assert "| tinydce | openvino | int8 | 5.00 | 4.80 | 4.2% | agree |" in md
    assert "not run: benchmark_app would time one tile" in md and "FAILED: benchmark_app failed" in md
    agreeing = [r for r in rows() if r["precision"] == "int8"]
    assert "all 1 checked rows agree" in render_markdown(agreeing, BUDGET)
    assert "Crosscheck" not in render_markdown([r for r in rows() if "crosscheck" not in r], BUDGET)


TINY_TARGETS = """
version: 1
targets:
  tiny-cpu:
    description: a tiny x86 target for tests
    runtime: openvino
    device: CPU
    precisions: [fp32]
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
  tiny-ort:
    description: the same on ONNX Runtime
    runtime: onnxruntime
    device: CPU
    precisions: [fp32]
    threads: 1
    budget: {psnr_mean_db: 40.0, psnr_min_db: 38.0}
    resolutions:
      default: 48x72
    requires: [onnxruntime]
"""


def bench(tmp_path: Path, target: str) -> int:
    targets = tmp_path / "targets.yaml"
    targets.write_text(TINY_TARGETS)
    return run_main(bench_main, ["--targets", str(targets), "--target", target, "--models", "tinydce", "--crosscheck",
                                 "--out", str(tmp_path / "results"), "--artifacts", str(tmp_path / "artifacts"), "--quiet"])


def test_crosscheck_on_a_runtime_it_cannot_time_exits_2_before_any_work(tmp_path: Path, capsys) -> None:
    code = bench(tmp_path, "tiny-ort")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--crosscheck times OpenVINO IRs" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "artifacts").exists()


def test_a_real_crosscheck_is_in_results_md_and_decides_the_exit_code(tmp_path: Path, capsys) -> None:
    """A real bench with --crosscheck: whatever the timings, the verdict is shown and a miss exits 1."""
    try:
        find_benchmark_app()
    except MissingRequirement as err:
        pytest.skip(str(err))
    code = bench(tmp_path, "tiny-cpu")
    captured = capsys.readouterr()
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    checked = [r for r in results if r["runtime"] == "openvino"]
    assert checked and all("ok" in r["crosscheck"] or "error" in r["crosscheck"] for r in checked)
    md = (tmp_path / "results" / "results.md").read_text()
    assert "## Crosscheck" in md and md in captured.out  # the printed summary is results.md
    misses = [r for r in checked if not r["crosscheck"].get("ok")]
    assert code == (1 if misses else 0)
    lines = [line for line in captured.err.splitlines() if line.startswith("crosscheck: ")]
    assert len(lines) == len(misses)
    for line, row in zip(lines, misses, strict=True):
        assert f"{row['model']} openvino {row['precision']}" in line
        assert "error" in row["crosscheck"] or f"{row['crosscheck']['rel_diff']:.1%} apart" in line


def test_the_verdict_is_on_alternations_that_share_the_hosts_load() -> None:
    from bench.crosscheck import interleaved, round_seconds

    def timer(values):
        it = iter(values)
        return lambda: next(it)

    # the host got twice as busy in the second alternation: both sides moved, each pair agrees
    record = interleaved(timer([20.0, 40.0, 20.5]), timer([20.4, 41.0, 20.0]), alternations=3)
    assert record["ok"] and record["rel_diff"] < 0.03 and len(record["pairs"]) == 3
    assert record["bench_p50_ms"] == 20.5 and record["benchmark_app_p50_ms"] == 20.4
    # a bench that is slower in every alternation (a copy on its timed path) is caught
    record = interleaved(timer([13.0, 26.0, 13.0]), timer([10.0, 20.0, 10.0]), alternations=3)
    assert not record["ok"] and record["rel_diff"] == pytest.approx(0.3) and record["rule"].startswith("10%")
    assert round_seconds(10.0) == 3.0 and round_seconds(1600.0) == 8.0
