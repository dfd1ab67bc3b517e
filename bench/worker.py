"""One benchmark row, measured in its own process so its memory is its own.

The parent (bench/harness.py) writes the input frames and the PyTorch FP32 reference outputs
as .npy stacks, then runs ``python -m bench.worker SPEC.json OUT.json`` through
`run_in_subprocess`. The worker:

1. loads the frames (N x C x H x W float32) and records the resident memory so far;
2. loads the runtime (``runtimes.get_backend(name).load(...)``) and runs the first frame:
   cold start = load + compile + first inference, in seconds;
3. runs ``warmup`` untimed calls, then ``iterations`` timed calls cycling over the N frames
   (varied real input: a reused input lets caches flatter the numbers, users.md pain point 8);
4. reads peak memory right after the timed runs, before anything is kept for fidelity:
   the process's peak RSS (VmHWM) on the CPU, GPU memory (NVML / cudaMemGetInfo) for a cuda device, and on a Jetson
   the tegrastats RAM/NvMap peak and input power (VDD_IN, or the sum of rails on AGX Orin) -> mJ per frame;
5. runs each frame once more and compares the outputs with the references (lowlight_edge.metrics);
   with ``preview`` it also writes the first frame's output and its |difference| to the reference,
   shrunk to a thumbnail (the report's images: a 12 MP output never leaves this process whole).

With ``tile`` in the spec every call above (cold start, warm-up, timed, fidelity) processes the
whole frame in overlapping tiles, so latency is per full frame and memory is bounded by the tile.

Row-level keys come back under their results.json names (latency_ms, fps, cold_start_s,
peak_mem_mb, psnr_db, ssim, max_abs_err, nonfinite) so the parent can merge them as they are.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.host import GpuMemorySampler, TegrastatsSampler, summarize_samples
from bench.preview import THUMB_SIDE, write_preview_npz
from lowlight_edge.atomic import atomic_path, write_json
from lowlight_edge.errors import DataError, LowlightError
from lowlight_edge.memory import peak_rss_mb
from lowlight_edge.metrics import fidelity, fps, latency_stats
from runtimes import get_backend  # lazy: importing bench must not load a runtime
from runtimes.tiling import plan_tiles, run_tiled

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_KEYS = (
    "backend",  # runtimes.get_backend name: openvino | onnxruntime | tensorrt | torch
    "artifact",  # path to the IR / ONNX / engine, or "MODEL[:WEIGHTS]" for torch eager
    "device",  # "CPU", "cpu", "cuda:0", ...
    "options",  # dict passed to Backend.load (threads, hint, ...)
    "warmup",
    "iterations",
    "frames",  # .npy, N x C x H x W float32
    "reference",  # .npy of the FP32 PyTorch outputs of the frames, or None
    "tegrastats_interval_ms",  # Jetson: sample tegrastats during the timed runs; None = off
    "gpu_memory",  # sample GPU memory (default: when device starts with "cuda")
    "save_outputs",  # optional .npy path for the fidelity-pass outputs (drift debugging)
    "preview",  # optional {"path": .npz, "max_side": N}: the first frame's output and |output - reference|, shrunk
    "tile",  # [tile_h, tile_w, overlap, size multiple]: run each frame in tiles (runtimes.tiling), or None
)
_REQUIRED = ("backend", "artifact", "iterations", "frames")


def rss_mb() -> float:
    """Current resident set size of this process in MB (psutil, else /proc/self/statm: a device
    agent has only numpy and its runtime)."""
    try:
        import psutil
    except ImportError:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return peak_rss_mb()
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    return psutil.Process().memory_info().rss / 2**20


def _check_spec(spec: dict[str, Any]) -> None:
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    missing = [k for k in _REQUIRED if spec.get(k) is None]
    if unknown or missing:
        msg = f"bad worker spec: unknown keys {unknown}, missing keys {missing}"
        raise ValueError(msg)
    if int(spec["iterations"]) < 1 or int(spec.get("warmup") or 0) < 0:
        msg = f"bad worker spec: iterations {spec['iterations']} must be >= 1 and warmup >= 0"
        raise ValueError(msg)


def _load_stack(path: str | Path, what: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        msg = f"cannot read the {what} stack {path}: {err}; the parent must write an N x C x H x W .npy"
        raise DataError(msg) from err
    if array.ndim != 4 or array.shape[0] < 1:
        msg = f"the {what} stack {path} has shape {array.shape}, not N x C x H x W with N >= 1"
        raise DataError(msg)
    return np.ascontiguousarray(array, dtype=np.float32)


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one row as described in the module docstring; returns a JSON-able dict."""
    _check_spec(spec)

    device = str(spec.get("device") or "cpu")
    options = dict(spec.get("options") or {})
    warmup = int(spec.get("warmup") or 0)
    iterations = int(spec["iterations"])
    frames = _load_stack(spec["frames"], "input frames")
    count = frames.shape[0]
    notes: list[str] = []
    if count < 2:
        notes.append("one input frame reused for every timed run: caches may flatter the latency")

    rss_baseline = rss_mb()
    gpu = None
    if spec.get("gpu_memory", device.startswith("cuda")):

        gpu = GpuMemorySampler(_device_index(device)).start()
    tegra = None
    if spec.get("tegrastats_interval_ms"):

        tegra = TegrastatsSampler(int(spec["tegrastats_interval_ms"])).start()
        if not tegra.wait_for_samples(1):  # the first sample is the before-load memory baseline
            notes.append("tegrastats printed nothing within 5 s: no Jetson memory or power figures")

    try:
        t0 = time.perf_counter()
        with get_backend(spec["backend"]).load(spec["artifact"], device=device, options=options) as loaded:
            runner = _tiled(loaded, spec["tile"]) if spec.get("tile") else loaded
            # keep only the shape: a held full-size output would count in every row's peak memory
            first_shape = list(np.asarray(runner(frames[0:1])).shape[1:])
            cold_start_s = time.perf_counter() - t0
            for i in range(warmup):
                k = (i + 1) % count
                runner(frames[k : k + 1])

            times_ms: list[float] = []
            window_start = time.monotonic()
            for i in range(iterations):
                k = i % count
                x = frames[k : k + 1]
                t = time.perf_counter()
                runner(x)
                times_ms.append((time.perf_counter() - t) * 1e3)
            window_end = time.monotonic()
            rss_peak = peak_rss_mb()
            gpu_peak = gpu.stop() if gpu is not None else None
            tegra_samples = tegra.stop() if tegra is not None else None

            outputs = None
            if spec.get("reference") is not None or spec.get("save_outputs") or spec.get("preview"):
                outputs = np.concatenate(
                    [np.asarray(runner(frames[k : k + 1]), dtype=np.float32) for k in range(count)]
                )
            describe = _jsonable(loaded.describe())
    finally:
        if gpu is not None:
            gpu.stop()
        if tegra is not None:
            tegra.stop()

    stats = latency_stats(times_ms)
    result: dict[str, Any] = {
        "latency_ms": stats,
        "fps": fps(stats),
        "cold_start_s": cold_start_s,
        "peak_mem_mb": rss_peak,
        "peak_mem_source": "process peak RSS (VmHWM)",
        "rss_peak_mb": rss_peak,
        "rss_baseline_mb": rss_baseline,
        "timed_total_s": sum(times_ms) / 1e3,
        "frames": count,
        "warmup": warmup,
        "iterations": iterations,
        "input_shape": list(frames.shape[1:]),
        "output_shape": first_shape,
        "runtime": describe,
        "psnr_db": None,
        "ssim": None,
        "max_abs_err": None,
        "nonfinite": None,
        "notes": notes,
    }
    if spec.get("tile"):

        th, tw, overlap, multiple = spec["tile"]
        tiles = len(plan_tiles(*frames.shape[2:], th, tw, overlap, multiple))
        result["tiled"] = {"tile": f"{th}x{tw}", "overlap": overlap, "tiles": tiles}
        notes.append(
            f"each frame ran as {tiles} tiles of {th}x{tw}, {overlap} px overlap; fidelity includes the seams"
        )
    if gpu is not None:
        result["gpu_mem_peak_mb"] = gpu_peak
        result["gpu_mem_source"] = gpu.source
        if gpu_peak is not None:
            result["peak_mem_mb"] = gpu_peak
            result["peak_mem_source"] = f"GPU memory ({gpu.source})"
        else:
            notes.append("no GPU memory reading (no NVML, no torch.cuda): peak_mem_mb is process RSS")
    if tegra_samples is not None:
        _add_tegrastats(result, tegra_samples, window_start, window_end, iterations, notes)

    if outputs is not None and spec.get("save_outputs"):
        with atomic_path(spec["save_outputs"]) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, outputs)
    if spec.get("reference") is not None:
        reference = _load_stack(spec["reference"], "reference output")
        if reference.shape != outputs.shape:
            msg = f"runtime output shape {outputs.shape} differs from the reference {reference.shape}"
            raise DataError(msg)
        measured = fidelity(outputs, reference)
        measured.pop("images")  # the row's frames are counted elsewhere
        result.update(measured)
    if spec.get("preview"):
        ref0 = reference[0] if spec.get("reference") is not None else None
        write_preview_npz(spec["preview"]["path"], outputs[0], ref0, int(spec["preview"].get("max_side") or THUMB_SIDE))
    return result


def _tiled(runner: Any, tile: Sequence[int]) -> Any:
    """``runner`` taking whole frames: each call runs overlapping tiles and stitches them."""
    from functools import partial

    th, tw, overlap, multiple = tile
    return partial(run_tiled, runner, tile=(th, tw), overlap=overlap, multiple=multiple)


def _add_tegrastats(
    result: dict[str, Any],
    samples: Sequence[Any],
    start: float,
    end: float,
    iterations: int,
    notes: list[str],
) -> None:
    whole = summarize_samples(samples)
    window = summarize_samples(samples, start, end)
    nvmaps = [s.nvmap_mb for s in samples if s.nvmap_mb is not None]
    result["tegrastats"] = {"whole_run": whole, "timed_window": window}
    if nvmaps:
        # users.md: NvMapMemUsed plus RSS on a Jetson. GPU buffers live in NvMap, outside the
        # process RSS; the two peaks need not coincide, so their sum is an upper bound.
        result["nvmap_rise_mb"] = max(nvmaps) - nvmaps[0]
        result["peak_mem_mb"] = result["rss_peak_mb"] + result["nvmap_rise_mb"]
        result["peak_mem_source"] = "process peak RSS + NvMapMemUsed rise since before load (Jetson)"
    elif whole["ram_peak_mb"] is not None and whole["ram_baseline_mb"] is not None:
        result["peak_mem_mb"] = whole["ram_peak_mb"] - whole["ram_baseline_mb"]
        result["peak_mem_source"] = "tegrastats RAM peak minus its value before load (system-wide)"
    power = window["power_mean_mw"]
    source = window["power_source"]
    if power is not None:
        result["power_mean_mw"] = power
        result["power_source"] = source
        result["energy_mj_per_frame"] = power * (end - start) / iterations  # mW x s = mJ
        if source and source.startswith("sum of rails"):
            notes.append(f"power is the {source}")
        if window["power_samples"] < 3:
            notes.append(
                f"only {window['power_samples']} power samples ({source}) in the timed window: "
                "raise iterations for a steadier mJ/frame"
            )
    else:
        notes.append("no tegrastats power rail readings in the timed window: energy per frame not measured")


def _device_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# --------------------------------------------------------------------------------------------
# Running a row in a fresh process


def run_in_subprocess(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run ``python -m bench.worker`` on ``spec`` in a new process; never raises for a failed row.

    A crash, a kill (e.g. out of memory) or a timeout returns {"error": <one line>, ...} with the
    last stderr line, so one broken row does not lose the others. The child runs in its own
    process group, killed whole on timeout (tegrastats included).
    """
    _check_spec(spec)
    with tempfile.TemporaryDirectory(prefix="bench-row-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec, default=str))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", "bench.worker", str(spec_path), str(out_path)]
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return {
                "error": f"timed out after {timeout_s:g} s (load + warmup + timed runs + fidelity)",
                "returncode": None,
            }
        except BaseException:
            _kill_group(proc)
            proc.communicate()
            raise
        if proc.returncode != 0 or not out_path.is_file():
            lines = [line for line in stderr.splitlines() if line.strip()]
            if proc.returncode is not None and proc.returncode < 0:
                name = signal.Signals(-proc.returncode).name
                hint = " (out of memory?)" if name == "SIGKILL" else ""
                error = f"killed by {name}{hint}"
            else:
                error = lines[-1].strip() if lines else f"exit code {proc.returncode} with no message"
            return {"error": error, "returncode": proc.returncode, "stderr_tail": lines[-20:]}
        return json.loads(out_path.read_text())


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.worker SPEC.json OUT.json``: run one row, write OUT.json atomically."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.worker SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    try:
        result = run_worker(spec)
    except LowlightError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    write_json(args[1], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
