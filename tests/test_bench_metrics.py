"""Fidelity and latency metrics, the roofline bound, and the results writers (known answers)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.report import ROW_KEYS, budget_failures, fill_speedups, render_markdown, write_results
from bench.roofline import bytes_moved, count_flops, measure_host_limits, roofline_fraction, roofline_ms
from lowlight_edge.metrics import (
    ERROR_CHUNK,
    PSNR_CAP_DB,
    fidelity,
    fps,
    frame_errors,
    frame_psnr,
    gaussian_window_1d,
    latency_stats,
    max_abs_err,
    nonfinite_count,
    psnr,
    ssim,
)

BUDGET = {"psnr_mean_db": 40.0, "psnr_min_db": 38.0}


# -- PSNR ----------------------------------------------------------------------------------


def test_psnr_constant_offset_is_exactly_40_db():
    a = np.random.default_rng(0).uniform(0.1, 0.8, (3, 8, 12)).astype(np.float32)
    b = a.astype(np.float64) + 0.01
    assert psnr(a.astype(np.float64), b) == pytest.approx(40.0, abs=1e-9)
    assert psnr(a * 255.0, b * 255.0, data_range=255.0) == pytest.approx(40.0, abs=1e-6)


def test_psnr_identical_is_capped():
    a = np.full((1, 3, 4, 4), 0.5, np.float32)
    assert psnr(a, a) == PSNR_CAP_DB == 99.0
    assert psnr(a, a + 1e-9) == PSNR_CAP_DB  # above the cap is reported at the cap
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(a, a[0])


# -- SSIM ----------------------------------------------------------------------------------


def slow_ssim(x: np.ndarray, y: np.ndarray, clamp: bool = True) -> float:
    """Straight from the definition: a 2-D 11x11 Gaussian at every valid position, per channel."""
    size, sigma = 11, 1.5
    g = np.mgrid[-(size // 2) : size // 2 + 1, -(size // 2) : size // 2 + 1]
    win = np.exp(-(g[0] ** 2 + g[1] ** 2) / (2 * sigma**2))
    win /= win.sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - size + 1):
            for j in range(x.shape[2] - size + 1):
                px, py = x[c, i : i + size, j : j + size], y[c, i : i + size, j : j + size]
                mx, my = (win * px).sum(), (win * py).sum()
                vx = (win * px * px).sum() - mx * mx
                vy = (win * py * py).sum() - my * my
                cov = (win * px * py).sum() - mx * my
                cs = (2 * cov + c2) / (vx + vy + c2)
                if clamp:
                    cs = max(cs, 0.0)
                values.append((2 * mx * my + c1) / (mx * mx + my * my + c1) * cs)
    return float(np.mean(values))


def test_ssim_identical_is_one():
    x = np.random.default_rng(1).uniform(0, 1, (3, 20, 24))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x[None], x[None]) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_slow_reference_on_random_32x32():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (3, 32, 32))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    fast = ssim(x, y)
    assert fast == pytest.approx(slow_ssim(x, y), abs=1e-10)
    assert 0.3 < fast < 0.99  # a real, partial similarity


def test_ssim_matches_iqa_pytorch_formulation():
    """IQA_pytorch SSIM(channels=3): 2-D window via grouped conv2d, valid padding, relu(cs), mean over C,H,W."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (1, 3, 40, 48))
    y = np.clip(x * 0.9 + 0.05 + rng.normal(0, 0.05, x.shape), 0, 1)
    g = np.outer(gaussian_window_1d(), gaussian_window_1d())
    win = torch.from_numpy(g)[None, None].repeat(3, 1, 1, 1)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def filt(t):
        return torch.nn.functional.conv2d(t, win, groups=3)

    mu1, mu2 = filt(X), filt(Y)
    s1, s2, s12 = filt(X * X) - mu1**2, filt(Y * Y) - mu2**2, filt(X * Y) - mu1 * mu2
    cs = torch.relu((2 * s12 + 0.03**2) / (s1 + s2 + 0.03**2))
    expected = (((2 * mu1 * mu2 + 0.01**2) / (mu1**2 + mu2**2 + 0.01**2)) * cs).mean().item()
    assert ssim(x, y) == pytest.approx(expected, abs=1e-10)


def test_ssim_clamps_negative_structure_at_zero():
    x = np.random.default_rng(4).uniform(0, 1, (3, 16, 16))
    inverted = 1.0 - x  # perfectly anti-correlated: cs < 0 everywhere
    assert slow_ssim(x, inverted, clamp=False) < 0
    assert ssim(x, inverted) == 0.0


def test_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError, match="H, W >= 11"):
        ssim(np.zeros((3, 8, 8)), np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="batch of 2"):
        ssim(np.zeros((2, 3, 16, 16)), np.zeros((2, 3, 16, 16)))


# -- errors, counts, latency ---------------------------------------------------------------------


def test_max_abs_err_and_nonfinite():
    a = np.array([0.0, 0.5, np.nan, np.inf, -np.inf, 1.0])
    b = np.array([0.1, 0.5, 0.2, 0.3, 0.4, 0.25])
    assert nonfinite_count(a) == 3
    assert max_abs_err(a, b) == pytest.approx(0.75)  # over the finite pairs only


def test_frame_errors_in_chunks_match_the_whole_array_formulas():
    """The chunked one-pass figures equal the whole-array float64 definitions, NaN/Inf in a later chunk included."""
    rng = np.random.default_rng(3)
    ref = rng.uniform(-0.1, 1.1, (3, 300, 400)).astype(np.float32)  # 360k elements: two chunks
    out = ref + rng.normal(0, 0.02, ref.shape).astype(np.float32)
    assert out.size > ERROR_CHUNK
    clipped = np.clip(out.astype(np.float64), 0, 1) - np.clip(ref.astype(np.float64), 0, 1)
    bad, worst, mse = frame_errors(out, ref)
    assert bad == 0
    assert worst == np.max(np.abs(out.astype(np.float64) - ref))
    assert mse == pytest.approx(np.mean(clipped**2), rel=1e-12)
    assert frame_psnr(out, ref) == pytest.approx(psnr(np.clip(out, 0, 1), np.clip(ref, 0, 1)), rel=1e-12)
    out.reshape(-1)[ERROR_CHUNK + 7] = np.nan  # in the second chunk
    ref.reshape(-1)[ERROR_CHUNK + 9] = np.inf
    bad, worst_nan, _ = frame_errors(out, ref)
    finite = np.isfinite(out) & np.isfinite(ref)
    assert bad == 1 and worst_nan == np.max(np.abs(out[finite].astype(np.float64) - ref[finite]))
    assert frame_psnr(out, ref) == 0.0


def test_latency_stats_known_answer():
    stats = latency_stats(list(range(1, 101)))
    assert stats == pytest.approx({"p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0, "mean": 50.5})
    assert fps(stats) == pytest.approx(1000 / 50.5)
    with pytest.raises(ValueError):
        latency_stats([])


def test_summarize_fidelity_counts_nan_before_clipping():
    rng = np.random.default_rng(5)
    refs = rng.uniform(0.2, 0.7, (3, 3, 16, 16)).astype(np.float32)
    outs = refs + np.float32(0.01)
    outs[2, 0, 0, 0] = np.nan
    outs[2, 1, 0, 0] = np.inf
    result = fidelity(outs, refs)
    assert result["nonfinite"] == 2
    assert result["psnr_per_image"][:2] == pytest.approx([40.0, 40.0], abs=1e-3)
    assert result["psnr_per_image"][2] == 0.0  # an image holding NaN scores 0 dB
    assert result["psnr_db"]["min"] == 0.0
    assert result["psnr_db"]["mean"] == pytest.approx(80.0 / 3, abs=1e-3)
    assert result["max_abs_err"] == pytest.approx(0.01, abs=1e-6)
    assert set(result) >= {"psnr_db", "ssim", "max_abs_err", "nonfinite"}


def test_summarize_fidelity_clips_to_unit_range_but_reports_raw_error():
    refs = np.full((1, 3, 16, 16), 1.0, np.float32)
    outs = refs + np.float32(0.2)  # overshoot: identical once saved as an image
    result = fidelity([outs], [refs])
    assert result["psnr_db"] == {"mean": 99.0, "min": 99.0}
    assert result["ssim"] == pytest.approx(1.0)
    assert result["max_abs_err"] == pytest.approx(0.2, abs=1e-6)
    with pytest.raises(ValueError, match="as many outputs"):
        fidelity(outs, np.concatenate([refs, refs]))


# -- roofline ------------------------------------------------------------------------------


def test_count_flops_single_conv_exact():
    torch = pytest.importorskip("torch")
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # 2 FLOP per MAC: out elements (8*16*24) x MACs each (3*3*3); the bias is not counted
    assert count_flops(conv, (1, 3, 16, 24)) == 2 * 8 * 16 * 24 * 3 * 3 * 3
    assert conv.weight.device.type == "cpu"  # counted on a meta copy, the caller's module untouched
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10))
    assert count_flops(net, (1, 3, 8, 8)) == 2 * 4 * 64 * 3 + 2 * 256 * 10


def test_roofline_bound_is_the_larger_of_compute_and_memory():
    limits = {"matmul_gflops": 100.0, "copy_gbps": 10.0}
    assert bytes_moved((1, 3, 4, 4), (1, 3, 4, 4)) == 2 * 48 * 4
    assert roofline_ms(1e9, 1e6, limits) == pytest.approx(10.0)  # compute-bound: 1 GFLOP at 100 GFLOP/s
    # memory-bound: 1 GB of in+out traffic at 2 x 10 GB/s (a copy reads and writes)
    assert roofline_ms(1e6, 1e9, limits) == pytest.approx(50.0)
    assert roofline_ms(1e6, 1e9, {**limits, "traffic_gbps": 40.0}) == pytest.approx(25.0)
    assert roofline_fraction(5.0, 20.0) == 0.25
    assert roofline_fraction(5.0, 0.0) is None


def test_measure_host_limits_small_and_restores_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    limits = measure_host_limits(1, seconds_budget=0.05, matmul_n=128, copy_mb=4)
    assert torch.get_num_threads() == before
    assert limits["threads"] == 1
    for key in ("matmul_gflops", "copy_gbps", "traffic_gbps"):
        assert math.isfinite(limits[key]) and limits[key] > 0
    assert limits["traffic_gbps"] == pytest.approx(2 * limits["copy_gbps"])


# -- report --------------------------------------------------------------------------------


def make_rows() -> list[dict]:
    host = {"cpu": "Test CPU", "threads": 2, "versions": {"numpy": np.__version__}}
    lat = {"p50": 20.0, "p90": 21.0, "p99": 22.0, "max": 23.0, "mean": 20.5}
    base = {"model": "tinydce", "target": "x86-cpu", "resolution": "400x600", "host": host}
    return [
        {**base, "runtime": "torch", "precision": "fp32", "latency_ms": lat, "fps": 48.8, "psnr_db": None},
        {
            **base,
            "runtime": "openvino",
            "precision": "int8",
            "latency_ms": {**lat, "p50": 5.0},
            "psnr_db": {"mean": 47.0, "min": 46.5},
            "ssim": 0.999,
            "nonfinite": 0,
            "artifact": "x.xml",
        },
        {
            **base,
            "runtime": "openvino",
            "precision": "fp32",
            "latency_ms": {**lat, "p50": 8.0},
            "psnr_db": {"mean": 41.0, "min": 37.0},
            "nonfinite": 0,
        },
        {
            **base,
            "model": "sgz",
            "runtime": "openvino",
            "precision": "int8",
            "latency_ms": lat,
            "psnr_db": {"mean": 60.0, "min": 59.0},
            "nonfinite": 4,
        },
        {
            **base,
            "model": "iat",
            "runtime": "openvino",
            "precision": "int8",
            "error": "killed by SIGKILL (out of memory?)",
        },
    ]


def test_budget_failures_names_each_failing_row():
    failures = budget_failures(make_rows(), BUDGET)
    assert len(failures) == 3
    assert "tinydce openvino fp32" in failures[0] and "PSNR min 37.00 dB < 38" in failures[0]
    assert "4 NaN/Inf values" in failures[1]
    assert "did not run (killed by SIGKILL" in failures[2]
    assert not any(" torch " in f or f.startswith("tinydce openvino int8") for f in failures)


def test_budget_failures_can_leave_crashes_to_the_caller():
    failures = budget_failures(make_rows(), BUDGET, include_errors=False)
    assert len(failures) == 2 and not any("did not run" in f for f in failures)


def test_fill_speedups_against_the_torch_row():
    rows = make_rows()
    fill_speedups(rows)
    assert rows[0]["speedup_vs_torch"] == pytest.approx(1.0)
    assert rows[1]["speedup_vs_torch"] == pytest.approx(4.0)
    assert rows[3]["speedup_vs_torch"] is None  # no torch row for sgz


def baseline_row(p50: float = 10.0, psnr: float = 30.0) -> dict:
    """The OpenVINO-defaults row on the plain export, over the budget here: a reference, never a failure."""
    row = make_rows()[2]
    return {**row, "baseline": "openvino-default", "artifact": "tinydce.onnx", "latency_ms": {**row["latency_ms"], "p50": p50},
            "psnr_db": {"mean": psnr, "min": psnr - 1}, "nonfinite": 3}


def test_baseline_over_budget_fails_nothing_but_shows_its_psnr():
    rows = [*make_rows()[:3], baseline_row()]
    assert budget_failures(rows, BUDGET) == budget_failures(rows[:3], BUDGET)
    assert budget_failures([rows[0], rows[1], rows[3]], BUDGET) == []
    md = render_markdown(rows, BUDGET)
    line = next(ln for ln in md.splitlines() if "OpenVINO defaults, plain export" in ln)
    assert "30.00 / 29.00" in line and "not judged (baseline)" in line and "FAIL" not in line


def test_fill_speedups_against_the_baseline_row():
    rows = [*make_rows(), baseline_row(p50=10.0)]
    fill_speedups(rows)
    assert rows[-1]["speedup_vs_baseline"] == pytest.approx(1.0)
    assert rows[1]["speedup_vs_baseline"] == pytest.approx(2.0)  # INT8 at 5 ms
    assert rows[2]["speedup_vs_baseline"] == pytest.approx(1.25)  # the shipped FP32 IR at 8 ms
    assert rows[0]["speedup_vs_baseline"] == pytest.approx(0.5)  # PyTorch eager at 20 ms
    assert rows[3]["speedup_vs_baseline"] is None  # no baseline for sgz
    md = render_markdown(rows, BUDGET)
    assert "| vs torch | vs baseline |" in md and "| 2.00x |" in md and "| 1.25x |" in md
    no_baseline = make_rows()
    fill_speedups(no_baseline)
    assert all(r["speedup_vs_baseline"] is None for r in no_baseline)


def test_a_side_by_side_ratio_wins_over_the_ratio_of_p50s_and_is_named():
    from bench.paired import ratio_record, rotate

    assert [rotate(["b", "f", "i"], k) for k in range(4)] == [["b", "f", "i"], ["f", "i", "b"], ["i", "b", "f"], ["b", "f", "i"]]
    baseline_ms = [10.0 + 0.1 * (i % 4) for i in range(12)]
    record = ratio_record(baseline_ms, [t / 1.5 for t in baseline_ms])
    assert record["median"] == pytest.approx(1.5) and record["rounds"] == 12
    assert record["interval"][0] <= record["median"] <= record["interval"][1]
    assert record["samples_ms"] == {"baseline_ms": baseline_ms, "row_ms": [t / 1.5 for t in baseline_ms]}
    rows = [*make_rows(), baseline_row(p50=10.0)]
    rows[2]["vs_baseline_paired"] = record  # p50s say 1.25x (8 vs 10 ms, separate runs); side by side said 1.5x
    rows[1]["vs_baseline_paired"] = {"skipped": "the row runs tiled"}
    fill_speedups(rows)
    assert rows[2]["speedup_vs_baseline"] == pytest.approx(1.5)
    assert rows[1]["speedup_vs_baseline"] == pytest.approx(2.0)  # no side-by-side figure: the p50 ratio stays
    md = render_markdown(rows, BUDGET)
    assert "| 1.50x |" in md and "vs baseline: median of per-round baseline ms / row ms" in md and "12-12 rounds" in md


def test_the_build_cost_of_each_model_heads_the_results():
    from bench.harness import build_cost

    manifest = {"stages": {"onnx": {"seconds": 12.0, "peak_rss_mb": 880}, "quantize": {"seconds": 70.5, "peak_rss_mb": 2900},
                           "engine": {"seconds": 3.0, "peak_rss_mb": 770, "reused": True}}}
    cost = build_cost(manifest)
    assert cost["seconds"] == 85.5 and cost["peak_rss_mb"] == 2900 and cost["reused"] == ["engine"]
    rows = make_rows()
    rows[0]["build"] = rows[1]["build"] = cost
    md = render_markdown(rows, BUDGET)
    line = next(ln for ln in md.splitlines() if ln.startswith("- build cost"))
    assert f"{rows[0]['model']} @ {rows[0]['resolution']} 85.5 s, 2900 MB [over 60 s]" in line and line.count(" s, ") == 1
    # first-time PyTorch references are shown apart and the limit is held to the build without them
    manifest["stages"]["quantize"]["references_seconds"] = 31.0
    cost = build_cost(manifest)
    assert cost["seconds"] == 85.5 and cost["seconds_without_references"] == 54.5
    rows[0]["build"] = rows[1]["build"] = cost
    line = next(ln for ln in render_markdown(rows, BUDGET).splitlines() if ln.startswith("- build cost"))
    assert f"{rows[0]['resolution']} 54.5 s + 31 s first PyTorch references, 2900 MB" in line and "over 60 s" not in line
    # the preflight (eval frames and their references, before the first stage) is part of the build
    manifest["preflight"] = {"seconds": 9.5, "references_seconds": 2.0}
    cost = build_cost(manifest)
    assert cost["seconds"] == 95.0 and cost["references_seconds"] == 33.0 and cost["seconds_without_references"] == 62.0
    assert cost["preflight_seconds"] == 9.5


def test_write_results_four_files_with_the_issue_keys(tmp_path):
    pytest.importorskip("matplotlib")
    rows = make_rows()
    fill_speedups(rows)
    written = write_results(rows, tmp_path / "out", BUDGET, title="unit test")
    assert sorted(written) == ["results.html", "results.json", "results.md", "results.png"]
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(data) == 5
    assert list(data[0])[: len(ROW_KEYS)] == list(ROW_KEYS)  # every issue key, in order, then extras
    assert data[1]["artifact"] == "x.xml"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Test CPU, 2 threads" in md and "| tinydce | openvino | int8 |" in md
    assert md.count("| pass |") == 1 and md.count("| FAIL |") == 3
    assert (tmp_path / "out" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".tmp")] == []


def test_failed_write_leaves_previous_results_intact(tmp_path):
    out = tmp_path / "out"
    write_results(make_rows()[:2], out, BUDGET, plot=False)
    before = (out / "results.json").read_text()
    broken = make_rows()
    broken[1]["psnr_db"] = "not a mapping"  # the Markdown renderer fails after results.json was built
    with pytest.raises(AttributeError):
        write_results(broken, out, BUDGET, plot=False)
    assert (out / "results.json").read_text() == before
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]


def test_markdown_marks_reference_and_errors():
    md = render_markdown(make_rows(), BUDGET)
    assert "mJ/frame" not in md
    rows = make_rows()
    rows[1]["energy_mj_per_frame"] = 123.4
    assert "| mJ/frame |" in render_markdown(rows, BUDGET) and "| 123.4 |" in render_markdown(rows, BUDGET)
    assert "| reference |" in md
    assert "| error |" in md and "killed by SIGKILL" in md
    assert "PSNR mean >= 40 dB, min >= 38 dB" in md


def test_a_row_run_with_runtime_options_says_so_and_gets_the_bound_of_what_it_ran():
    from bench.harness import compute_precision

    rows = make_rows()
    bf16 = {"runtime_options": {"used": {"precision": "bf16", "denormals": True}, "from": {}}}
    rows[2]["runtime_info"] = bf16
    rows[1]["runtime_info"] = {"runtime_options": {"used": {"precision": "f32"}, "from": {}}}
    lines = render_markdown(rows, BUDGET).splitlines()
    assert any("| fp32 (bf16 float layers, denormals flushed) |" in ln for ln in lines)
    assert any("| int8 |" in ln for ln in lines)  # plain f32 float layers: nothing to say
    assert compute_precision("fp32", bf16) == "bf16" and compute_precision("int8", bf16) == "int8"
    assert compute_precision("fp32", rows[1]["runtime_info"]) == "fp32" and compute_precision("fp32", None) == "fp32"
    rows[2]["runtime_info"] = {"runtime_options": {"used": {"precision": "bf16", "f32_layers": ["a", "b", "c"]}, "from": {}}}
    assert any("| fp32 (bf16 float layers but 3 kept f32) |" in ln for ln in render_markdown(rows, BUDGET).splitlines())
