"""Cross-check the bench's OpenVINO latency against OpenVINO's own benchmark_app.

If the bench's p50 for an IR and benchmark_app's median for the same IR, device, thread count,
latency hint and input shape differ by more than 20%, one of the two measures something else
(a reused input, a missing sync, another thread count), and the row should not be trusted: the
bench shows it in results.md and exits 1 (bench.report.crosscheck_failures).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lowlight_edge.errors import CheckFailed, MissingRequirement

TOLERANCE = 0.20
_MEDIAN_RE = re.compile(r"Median:\s*([0-9.]+)\s*(ms|us|µs|s)\b")
_TO_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
# benchmark_app refuses -nthreads together with -hint ("fine tune options"), so the thread count
# and the latency hint travel together in a -load_config file, as the runtime sets them.
DEFAULT_PROPERTIES = {"INFERENCE_PRECISION_HINT": "f32"}


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
) -> float:
    """Median latency in ms of OpenVINO's benchmark_app on the same IR, threads, hint and shape.

    Runs ``benchmark_app -m XML -d CPU -hint latency -load_config CFG -shape [..] -t S`` where
    CFG sets PERFORMANCE_HINT=LATENCY and INFERENCE_NUM_THREADS=threads plus ``properties``
    (default: INFERENCE_PRECISION_HINT=f32, because OpenVINO otherwise picks bf16 on CPUs with
    AVX512_BF16/AMX; pass the properties the bench's runner compiled with). It runs in a
    temporary folder, since benchmark_app drops benchmark_report.csv into its working folder.
    """
    tool = find_benchmark_app()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(int(threads))}
    config.update({k: str(v) for k, v in (DEFAULT_PROPERTIES if properties is None else properties).items()})
    shape_arg = "[" + ",".join(str(int(d)) for d in shape) + "]"
    limit = timeout_s if timeout_s is not None else 120 + 2 * seconds
    with tempfile.TemporaryDirectory(prefix="benchmark-app-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps({device: config}))
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
        msg = f"benchmark_app failed on {xml}: {last}; run by hand: {' '.join(cmd[:-8])} ..."
        raise CheckFailed(msg)
    return median


def compare(bench_p50_ms: float, app_p50_ms: float, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """{bench_p50_ms, benchmark_app_p50_ms, rel_diff, ok}: rel_diff = |bench - app| / app."""
    rel = abs(bench_p50_ms - app_p50_ms) / app_p50_ms if app_p50_ms > 0 else float("inf")
    return {
        "bench_p50_ms": bench_p50_ms,
        "benchmark_app_p50_ms": app_p50_ms,
        "rel_diff": rel,
        "tolerance": tolerance,
        "ok": rel <= tolerance,
    }
