"""Cross-check the bench's OpenVINO latency against OpenVINO's own benchmark_app.

If the bench's p50 for an IR and benchmark_app's median for the same IR, device, thread count,
latency hint, runtime options and input shape differ by more than the tolerance, one of the two
measures something else (a reused input, a copy on the timed path, a missing sync, another thread
count), and the row should not be trusted: the bench shows it in results.md and exits 1
(bench.report.crosscheck_failures).

Tolerance (``tolerance_for``): rows above 10 ms (either figure) must agree within 10%; faster rows
within 20% or 0.5 ms, whichever is looser, because there a fixed per-call cost (the Python call,
the timer, benchmark_app's own request loop) is a visible share of the frame.
benchmark_app gets the runtime options the bench's runner compiles with: the IR sidecar's decided
``runtime_options`` (denormal flushing, inference precision), with the caller's properties winning
(runtimes.backend_openvino.runtime_properties).

The two are timed in alternation (``interleaved``): ALTERNATIONS times, the bench's runner (the
call its worker times) for a few seconds in this process, then benchmark_app for as long, the order
swapped each time, and the verdict is on the median of the per-alternation ratios. Comparing the
row's p50 with one benchmark_app run made later measured the host's load between them: on a shared
2-core host 8 of 14 rows disagreed, in both directions, including the plain ONNX baseline, which is
the same file benchmark_app reads (2026-12-01). With 3 alternations 9 of 10 rows agreed there; the
tenth had one 3-second stretch 35% off (2026-12-02), hence 5.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.errors import CheckFailed, MissingRequirement
from runtimes.backend_openvino import runtime_properties

TOLERANCE = 0.10  # rows above SLOW_ROW_MS
SLOW_ROW_MS = 10.0
FAST_TOLERANCE = 0.20  # rows at or below SLOW_ROW_MS: this relative difference, or FAST_ABS_MS, whichever is looser
FAST_ABS_MS = 0.5
_MEDIAN_RE = re.compile(r"Median:\s*([0-9.]+)\s*(ms|us|µs|s)\b")
_TO_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
# benchmark_app refuses -nthreads together with -hint ("fine tune options"), so the thread count
# and the latency hint travel together in a -load_config file, as the runtime sets them.
DEFAULT_PROPERTIES = {"INFERENCE_PRECISION_HINT": "f32"}
ALTERNATIONS = 5  # bench runner, then benchmark_app (order swapped each time): the verdict is on the median ratio
ROUND_SECONDS = 3.0  # each side's timing per alternation, at least; at least 5 runs of the row


def find_benchmark_app() -> str:
    """benchmark_app beside this Python (the venv's bin), else on PATH; MissingRequirement if neither."""
    beside = Path(sys.executable).parent / "benchmark_app"
    if beside.is_file():
        return str(beside)
    found = shutil.which("benchmark_app")
    if found:
        return found
    msg = "OpenVINO's benchmark_app was not found beside this Python or on PATH; pip install openvino (it ships the tool)"
    raise MissingRequirement(msg)


def parse_median_ms(stdout: str) -> float | None:
    """The 'Median: X ms' (or us) latency that benchmark_app prints, in ms; None if absent."""
    match = _MEDIAN_RE.search(stdout)
    return float(match.group(1)) * _TO_MS[match.group(2)] if match else None


def benchmark_app_p50(
    xml: str | Path,
    threads: int,
    shape: Sequence[int],
    seconds: float = 5.0,
    device: str = "CPU",
    properties: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    inputs: Path | None = None,
) -> float:
    """Median latency in ms of OpenVINO's benchmark_app on the same IR, threads, hint and shape.

    Runs ``benchmark_app -m XML -d CPU -hint latency -load_config CFG -shape [..] -t S`` where
    CFG sets PERFORMANCE_HINT=LATENCY and INFERENCE_NUM_THREADS=threads plus ``properties``
    (default: INFERENCE_PRECISION_HINT=f32, because OpenVINO otherwise picks bf16 on CPUs with
    AVX512_BF16/AMX), then the runtime options of the IR's sidecar (as the runner applies them),
    then ``properties`` (the options the caller passed the runner explicitly). It runs in a
    temporary folder, since benchmark_app drops benchmark_report.csv into its working folder.

    ``inputs``: a folder of the bench's own input frames as .npy files (``write_inputs``), given to
    benchmark_app with ``-ip f32`` (the input stays float32, as the bench feeds it). Without them benchmark_app times another
    graph on other data: it turns an image-shaped input into u8 with a conversion and fills it with
    random 0-255 values, and a graph whose speed depends on its data (denormals) runs another
    speed. Measured on IAT's plain FP32 export, 2 threads: random u8 234 ms, the real frames as
    .npy 297 ms, the bench 300 ms.
    """
    tool = find_benchmark_app()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(int(threads))}
    config.update(DEFAULT_PROPERTIES)
    config.update(runtime_properties(xml))  # what the runner applies from the IR's sidecar
    config.update({k: str(v) for k, v in (properties or {}).items()})  # the caller's win, as in the runner
    shape_arg = "[" + ",".join(str(int(d)) for d in shape) + "]"
    limit = timeout_s if timeout_s is not None else 120 + 2 * seconds
    with tempfile.TemporaryDirectory(prefix="benchmark-app-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps({device: config}))
        given = ["-i", str(inputs), "-ip", "f32"] if inputs is not None else []
        cmd = [
            tool,
            "-m",
            str(Path(xml).resolve()),
            "-d",
            device,
            "-hint",
            "latency",
            "-load_config",
            str(config_path),
            "-shape",
            shape_arg,
            "-t",
            str(max(1, round(seconds))),
            *given,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=tmp)
        except subprocess.TimeoutExpired as err:
            msg = f"benchmark_app on {xml} did not finish within {limit:g} s; pass a shorter time or check the IR"
            raise CheckFailed(msg) from err
    median = parse_median_ms(proc.stdout)
    if proc.returncode != 0 or median is None:
        tail = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        last = tail[-1].strip() if tail else f"exit code {proc.returncode}"
        msg = f"benchmark_app failed on {xml}: {last}; run by hand: {' '.join(cmd[:5])} ..."
        raise CheckFailed(msg)
    return median


def write_inputs(frames: Sequence[np.ndarray], folder: Path) -> Path:
    """``frames`` as float32 .npy files in ``folder`` (created), for ``benchmark_app_p50(inputs=...)``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        np.save(folder / f"frame_{i:03d}.npy", np.ascontiguousarray(frame, dtype=np.float32))
    return folder


def tolerance_for(bench_p50_ms: float, app_p50_ms: float) -> tuple[float, float, str]:
    """(relative tolerance, absolute allowance in ms, the rule in words) for a row of these p50s."""
    if max(bench_p50_ms, app_p50_ms) > SLOW_ROW_MS:
        return TOLERANCE, 0.0, f"{TOLERANCE:.0%} (p50 above {SLOW_ROW_MS:g} ms)"
    return FAST_TOLERANCE, FAST_ABS_MS, f"{FAST_TOLERANCE:.0%} or {FAST_ABS_MS:g} ms, whichever is looser (p50 at most {SLOW_ROW_MS:g} ms)"


def compare(bench_p50_ms: float, app_p50_ms: float, tolerance: float | None = None) -> dict[str, Any]:
    """{bench_p50_ms, benchmark_app_p50_ms, rel_diff, tolerance, rule, ok}: rel_diff = |bench - app| / app.

    ``tolerance`` None applies ``tolerance_for`` (10% above 10 ms, else 20% or 0.5 ms); a number is
    a plain relative tolerance for every row.
    """
    diff = abs(bench_p50_ms - app_p50_ms)
    rel = diff / app_p50_ms if app_p50_ms > 0 else float("inf")
    if tolerance is None:
        tolerance, allowance, rule = tolerance_for(bench_p50_ms, app_p50_ms)
    else:
        allowance, rule = 0.0, f"{tolerance:.0%}"
    return {
        "bench_p50_ms": bench_p50_ms,
        "benchmark_app_p50_ms": app_p50_ms,
        "rel_diff": rel,
        "tolerance": tolerance,
        "abs_tolerance_ms": allowance,
        "rule": rule,
        "ok": rel <= tolerance or diff <= allowance,
    }


def round_seconds(p50_ms: float) -> float:
    """How long each side is timed per alternation: ROUND_SECONDS, or 5 runs of a slow row."""
    return max(ROUND_SECONDS, 5 * p50_ms / 1e3)


def interleaved(time_bench: Callable[[], float], time_app: Callable[[], float], alternations: int = ALTERNATIONS) -> dict[str, Any]:
    """``compare`` of the bench's timing and benchmark_app's, taken in alternation (module docstring).

    ``time_bench`` and ``time_app`` each time one stretch and return its median in ms. The record's
    p50s are the medians over alternations; ``rel_diff`` and ``ok`` come from the median of the
    per-alternation ratios bench / app (each pair shares the host's load of its moment), under
    ``tolerance_for``. ``pairs`` holds every alternation's two medians.
    """
    bench_ms: list[float] = []
    app_ms: list[float] = []
    for i in range(alternations):
        sides = ((time_bench, bench_ms), (time_app, app_ms))
        for timer, out in sides if i % 2 == 0 else sides[::-1]:
            out.append(float(timer()))
    ratio = statistics.median(b / a for b, a in zip(bench_ms, app_ms, strict=True))
    result = compare(statistics.median(bench_ms), statistics.median(app_ms))
    diff = abs(result["bench_p50_ms"] - result["benchmark_app_p50_ms"])
    result["rel_diff"] = abs(ratio - 1.0)
    result["ok"] = result["rel_diff"] <= result["tolerance"] or diff <= result["abs_tolerance_ms"]
    result["pairs"] = [{"bench_ms": round(b, 3), "benchmark_app_ms": round(a, 3)} for b, a in zip(bench_ms, app_ms, strict=True)]
    result["method"] = (f"{alternations} alternations of the bench runner in this process and benchmark_app, order swapped "
                        "each time; rel_diff = |median of per-alternation bench/app ratios - 1|")
    return result
