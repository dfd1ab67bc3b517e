"""The device agent: ``python -m bench.agent JOB.json OUT_DIR``, run on the device by bench/remote_boot.py.

It needs only the device's Python (3.8+), numpy and the target's runtime (OpenVINO / ONNX Runtime
on a CPU device; TensorRT's Python bindings, libcudart and onnx where engines are built and run:
runtimes/backend_tensorrt.py reads ONNX precisions with onnx and runs engines through the CUDA runtime
by ctypes, no torch): everything that needs torch or NNCF ran on the workstation, which shipped
the artifacts, the eval frames and their FP32 PyTorch references. The agent

1. checks the device against the target (bench.host.check_host: runtime, Jetson, power mode);
   a miss writes ``{"error", "exit_code": 2}`` and exits 2;
2. describes the device (bench.host.host_info: CPU, cores, versions incl. TensorRT, Jetson L4T and
   power mode; plus the board's device-tree model and the JetPack package version);
3. for a TensorRT row, builds the engine here from the shipped ONNX (engines do not carry
   across GPUs or TensorRT versions) into OUT_DIR/engines/, sidecar beside it;
4. measures every row in its own process with bench.worker.run_in_subprocess, exactly as a
   local bench does (latency, cold start, memory, tegrastats power, drift vs the references).

A job with ``"mode": "build"`` (``python -m export --device``) only builds: no host check and no
measured rows, since building an engine needs the builder, not the target's GPU checks.

OUT_DIR/result.json: {"host": ..., "rows": [{"index", "result", "engine"}]}.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.host import check_host, host_info
from bench.worker import run_in_subprocess
from lowlight_edge.atomic import write_json
from lowlight_edge.errors import LowlightError, MissingRequirement
from lowlight_edge.targets import Budget, Target
from runtimes import BuildConfig, get_backend
from runtimes.cuda import cuda_status


def target_from_job(fields: dict[str, Any]) -> Target:
    """The Target the workstation validated, rebuilt from its JSON fields (export.remote.target_fields)."""
    return Target(
        name=fields["name"],
        runtime=fields["runtime"],
        device=fields["device"],
        precisions=tuple(fields["precisions"]),
        resolutions={k: tuple(v) for k, v in fields["resolutions"].items()},
        threads=fields.get("threads"),
        timeout_s=int(fields.get("timeout_s") or 900),
        requires=tuple(fields.get("requires") or ()),
        options=dict(fields.get("options") or {}),
        budget=Budget(),
    )


def device_flavour(target: Target) -> str | None:
    """The target's TensorRT builder (``builder:``) when this device has it, else the other flavour
    that is here (NVIDIA's TensorRT on a Jetson or a desktop with it, TensorRT for RTX elsewhere)."""
    backend = get_backend("tensorrt")
    wanted = target.options.get("builder")
    for flavour in dict.fromkeys([wanted, "tensorrt", "rtx"]):
        if flavour is not None and backend.is_available(flavour)[0]:
            return flavour
    return wanted  # the build then fails with the backend's own one-line reason


def build_engine(build: dict[str, Any], base: Path, out: Path, target: Target) -> Path:
    """A TensorRT engine built on this device from the shipped ONNX; returns its path."""
    config = BuildConfig(
        precision=build["precision"],
        input_shape=tuple(build["input_shape"]) if build.get("input_shape") else None,
        plan=base / build["plan"] if build.get("plan") else None,
        workspace_mb=int(target.options.get("workspace_mb") or 2048),
        dla_core=target.options.get("dla_core"),
        flavour=device_flavour(target),
    )
    engines = out / "engines" / build["model"]
    for rel in build.get("cache") or ():  # engines built before from this ONNX: reused if their sidecar matches here
        engines.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(str(base / rel), str(engines / Path(rel).name))
    artifact = get_backend("tensorrt").build(base / build["onnx"], config, engines)
    progress(f"{build['model']} {build['precision']} engine: {'reused' if artifact.meta.get('cache') == 'hit' else 'built'}")
    return Path(artifact.path)


def board_model() -> str | None:
    """The device-tree model ("NVIDIA Jetson AGX Orin Developer Kit"), or None off ARM boards."""
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00 \n") or None
    except OSError:
        return None


def jetpack_version() -> str | None:
    """The installed nvidia-jetpack meta-package's version (e.g. "6.1+b123"), or None."""
    query = shutil.which("dpkg-query")
    if not query:
        return None
    try:
        done = subprocess.run([query, "-W", "-f=${Version}", "nvidia-jetpack"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def run_job(job: dict[str, Any], out: Path) -> dict[str, Any]:
    base = Path(job["base"]).resolve() if job.get("base") else Path.cwd() / "tree"
    target = target_from_job(job["target"])
    build_only = job.get("mode") == "build"
    if not build_only:
        check_host(target)
        check_gpu(target)
    threads = target.resolved_threads()
    host = host_info(threads)
    host["limits"] = None  # measured with torch on the workstation only; no roofline on a device
    host["board"] = board_model()
    if host.get("jetson") is not None:
        host["jetson"]["jetpack"] = jetpack_version()
    host["remote"] = job.get("remote")
    rows = []
    for index, row in enumerate(job["rows"]):
        spec = dict(row.get("spec") or {})
        engine = None
        progress(f"row {index + 1}/{len(job['rows'])}: {row.get('label') or spec.get('backend')}")
        if row.get("build"):
            try:
                engine = build_engine(row["build"], base, out, target)
            except LowlightError as err:
                if build_only:
                    raise  # python -m export --device: the export fails with this line
                rows.append({"index": index, "result": {"error": f"engine build on the device failed: {err}"}, "engine": None})
                continue
            if build_only:
                rows.append({"index": index, "result": {}, "engine": str(engine.relative_to(out))})
                continue
            spec["artifact"] = str(engine)
        else:
            spec["artifact"] = str(base / spec["artifact"])
        for key in ("frames", "reference"):
            if spec.get(key):
                spec[key] = str(base / spec[key])
        spec["options"] = target.load_options()  # threads resolved on this device, not the workstation
        result = run_in_subprocess(spec, timeout_s=target.timeout_s)
        rows.append({"index": index, "result": result, "engine": str(engine.relative_to(out)) if engine else None})
    return {"host": host, "rows": rows}


def check_gpu(target: Target) -> None:
    """A TensorRT target runs its engines on this device's GPU through libcudart: one line if it cannot."""
    if target.runtime != "tensorrt":
        return
    ok, why = cuda_status(target.device)
    if not ok:
        msg = f"target {target.name!r} runs TensorRT engines on this device's GPU and it has none usable: {why}"
        raise MissingRequirement(msg)


def progress(line: str) -> None:
    """A line bench.remote shows the user (its PROGRESS_PREFIX)."""
    print(f"progress: {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.agent JOB.json OUT_DIR", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    out = Path(args[1])
    try:
        result = run_job(job, out)
    except LowlightError as err:
        write_json(out / "result.json", {"error": str(err), "exit_code": err.exit_code})
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    write_json(out / "result.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
