"""The benchmark run: model x precision rows for one target, each measured in its own process.

For every model the harness builds (or reuses) the target's artifacts through the export
pipeline, writes the eval frames and their FP32 PyTorch outputs once, then measures a PyTorch
eager FP32 row, one row per precision and, on an OpenVINO target, a baseline row (the plain ONNX
export read by OpenVINO with its defaults: what a user gets without lowlight-edge) in fresh
subprocesses. On a memory-bounded target (option tile or max_memory_mb) every row runs each
full-size frame in tiles, so its fidelity includes the seams against the full-frame reference. Host limits are measured in the
same run, so speed-ups and roofline fractions are ratios taken side by side.

With a device (``--device ssh://...`` or the target's ``remote:``) the artifacts, frames and
references are made here and bench.remote measures the rows there (bench_remote): no local host
check, no PyTorch eager row and no roofline, the rows' host block is the device's.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.crosscheck import benchmark_app_p50, find_benchmark_app, interleaved, round_seconds, write_inputs
from bench.host import check_host, host_info
from bench.paired import median_ms, paired_vs_baseline
from bench.preview import THUMB_SIDE, input_thumbnail, load_row_preview
from bench.remote import RemoteJob, Session, SshDevice, parse_device, run_remote, target_fields
from bench.report import budget_failures, fill_speedups, used_options, write_results
from bench.roofline import (
    bytes_moved,
    count_flops,
    measure_host_limits,
    roofline_fraction,
    roofline_ms,
    roofline_row,
)
from bench.video_rows import make_clips, skip_reason, video_record
from bench.worker import run_in_subprocess
from export.config import ExportRequest
from export.pipeline import export
from lowlight_edge import refcache, zoo
from lowlight_edge.datasets import eval_frames
from lowlight_edge.errors import LowlightError, UsageError
from lowlight_edge.targets import Target, get_target
from runtimes import get_backend
from runtimes.base import onnx_input_dims, sidecar_path
from runtimes.tiling import target_tiling

log = logging.getLogger(__name__)

LARGE_FRAME_PIXELS = 4_000_000  # above this, fewer frames are held (LLPackNet's 12 MP Bayer)


@dataclass(frozen=True)
class BenchRequest:
    target: str = "x86-cpu"
    targets_file: Path | None = None  # None: the packaged targets.yaml (the repository root links to it)
    models: tuple[str, ...] | None = None  # None: the whole zoo
    precisions: tuple[str, ...] | None = None  # None: the target's
    images: Path | None = None  # eval images; None: the default data folder
    iterations: int | None = None
    warmup: int | None = None
    frames: int = 8
    out: Path = Path("bench-results")
    artifacts: Path = Path("artifacts")
    progress: bool = True
    crosscheck: bool = False  # also time each OpenVINO IR with OpenVINO's own benchmark_app
    device: str | None = None  # ssh://[user@]host[:port]: measure there (bench.remote); None: this host
    video: bool = True  # each row's streams at 30 fps and flicker on clips made from eval photos (bench.video_rows)


def run_bench(request: BenchRequest) -> tuple[list[dict], list[str]]:
    """Measure and write results.{json,md,png}; returns (rows, budget failures).

    With ``crosscheck`` each OpenVINO row (the baseline on its plain .onnx included: its p50 is what
    ``speedup_vs_baseline`` rests on) gets a ``crosscheck`` record (bench.crosscheck.compare,
    or {"error"} when benchmark_app failed, or {"skipped"} for a tiled row); report.crosscheck_failures
    lists the ones that disagree or failed, and results.md shows every one.
    """

    target = get_target(request.target, request.targets_file)
    # --device local measures here even when the target names a remote device in targets.yaml
    address = request.device or target.remote
    device = parse_device(address) if address and address != "local" else None
    if device is None:
        check_host(target)  # one line and exit 2 before anything is written
    elif request.crosscheck:
        msg = "--crosscheck runs benchmark_app on this host; it cannot time a remote --device"
        raise UsageError(msg)
    if request.crosscheck:  # asked for and impossible: exit 2 now, not a quiet gap in the results
        if target.runtime != "openvino":
            msg = f"--crosscheck times OpenVINO IRs with benchmark_app; target {target.name} runs {target.runtime}"
            raise UsageError(msg)
        find_benchmark_app()
    # a target without a default resolution (x86-cpu-lowmem: RAW frames only) runs the models it lists
    names = list(
        request.models
        or [m for m in zoo.list_models() if m in target.resolutions or "default" in target.resolutions]
    )
    for name in names:
        zoo.get_spec(name)  # unknown model: UsageError with a suggestion, before any work
    precisions = list(request.precisions or target.precisions)
    unknown = sorted(set(precisions) - set(target.precisions))
    if unknown:
        msg = f"precision {', '.join(unknown)} is not offered by target {target.name} ({', '.join(target.precisions)})"
        raise UsageError(msg)

    rows: list[dict] = []
    from tqdm import tqdm

    if device is not None:
        with tempfile.TemporaryDirectory(prefix="bench-") as work:
            rows = bench_remote(device, names, target, precisions, request, Path(work))
    else:
        threads = target.resolved_threads()  # null in targets.yaml: every core this process may use
        limits = measure_host_limits(threads)
        host = host_info(threads)
        host["limits"] = limits
        bar = tqdm(total=len(names) * rows_per_model(target, precisions), unit="row", disable=not request.progress)
        with tempfile.TemporaryDirectory(prefix="bench-") as work:
            for name in names:
                rows += bench_model(name, target, threads, precisions, request, Path(work), limits, host, bar)
        bar.close()

    fill_speedups(rows)
    where = f" at {device.url}" if device is not None else ""
    write_results(rows, request.out, target.budget, title=f"lowlight-edge bench on {target.name}{where}")
    return rows, budget_failures(rows, target.budget, include_errors=False)


def eval_set(name: str, spec, resolution: tuple[int, int], request: BenchRequest, work: Path):
    """(module, frames, FP32 references, frames .npy, references .npy): what every row is measured on."""
    count = 2 if resolution[0] * resolution[1] > LARGE_FRAME_PIXELS else request.frames
    eval_dir = request.images or ExportRequest(model=name).eval_folder
    frames = eval_frames(eval_dir, spec, resolution, size=count, seed=1)
    module = zoo.get_model(name)
    refs, _ = refcache.references(name, module, frames)  # computed once per weights, frames and model
    frames_file, refs_file = work / f"{name}.frames.npy", work / f"{name}.refs.npy"
    np.save(frames_file, np.concatenate(frames))
    np.save(refs_file, np.concatenate(refs))
    return module, frames, refs, frames_file, refs_file


def bench_model(name, target: Target, threads: int, precisions, request: BenchRequest, work: Path, limits, host, bar) -> list[dict]:
    spec = zoo.get_spec(name)
    resolution = target.resolution_for(name, raw=spec.input_kind == "raw_bayer")
    tiling = target_tiling(target, spec, resolution)  # memory-bounded: built at the tile size, frames run tiled
    bar.set_description(f"{name}: building artifacts")
    manifest_path = export(
        ExportRequest(
            model=name,
            target=target.name,
            targets_file=request.targets_file,
            resolution=tiling[:2] if tiling else resolution,
            out=request.artifacts,
            eval_dir=request.images,
        ),
        progress=False,
    )
    manifest = json.loads(manifest_path.read_text())
    module, frames, refs, frames_file, refs_file = eval_set(name, spec, resolution, request, work)
    flops = count_flops(module, frames[0].shape)
    moved = bytes_moved(frames[0].shape, refs[0].shape)
    bound = roofline_ms(flops, moved, limits)
    frames_shape = frames[0].shape
    input_png, input_caption = input_thumbnail(frames[0], raw=spec.input_kind == "raw_bayer")  # results.html
    timed_frames = None if tiling else frames  # the side-by-side timings and the crosscheck (neither runs tiled)
    del module, frames, refs

    base = {
        "model": name,
        "target": target.name,
        "resolution": f"{resolution[0]}x{resolution[1]}",
        "flops": flops,
        "roofline_ms": round(bound, 3),
        "host": host,
        "build": build_cost(manifest),
    }
    # the two references first (PyTorch eager, then OpenVINO's defaults on the plain export), then the shipped rows
    jobs = [("torch", "fp32", name, "cpu", [], None)]
    if (job := baseline_job(manifest, target, manifest_path.parent, [1, frames_shape[1], *(tiling[:2] if tiling else resolution)])):
        jobs.append((*job, BASELINE))
    jobs += [(*job, None) for p in precisions if (job := artifact_job(manifest, target, p, manifest_path.parent))]
    rows, loads = [], []
    for backend, precision, artifact, device, notes, baseline in jobs:
        bar.set_description(f"{name}: {backend} {precision}" + (" baseline" if baseline else ""))
        tag = f"{precision}.baseline" if baseline else precision
        spec_ = {
            "backend": backend,
            "artifact": str(artifact),
            "device": device,
            "options": {"threads": threads} if backend == "torch" else target.load_options(),
            "tegrastats_interval_ms": target.options.get("tegrastats_interval_ms"),
            "warmup": request.warmup if request.warmup is not None else target.warmup,
            "iterations": request.iterations or target.iterations,
            "frames": str(frames_file),
            "reference": str(refs_file),
            "tile": [*tiling, spec.size_multiple] if tiling else None,
            "preview": {"path": str(work / f"{name}.{backend}.{tag}.preview.npz"), "max_side": THUMB_SIDE},
        }
        result = run_in_subprocess(spec_, timeout_s=target.timeout_s)
        row = {**base, **result, "runtime": backend, "precision": precision, "artifact": str(artifact)}
        if baseline:
            row["baseline"] = baseline
        preview_file = Path(spec_["preview"]["path"])
        if preview_file.is_file():  # small PNGs only: the report's thumbnails of the row's first frame
            row["preview"] = load_row_preview(preview_file, input_png, input_caption)
            preview_file.unlink()
        row["runtime_info"] = result.get("runtime")
        row["notes"] = notes + list(result.get("notes") or [])
        p50 = (row.get("latency_ms") or {}).get("p50")
        if backend == "torch":  # eager FP32: the FP32 bound
            row["roofline_fraction"] = roofline_fraction(bound, p50) if p50 else None
        else:  # the bound of the row's own precision (INT8 with VNNI/AMX or not, BF16), and which bound it is
            row.update(roofline_row(flops, moved, limits, compute_precision(precision, row["runtime_info"]), p50))
        if request.crosscheck and backend == "openvino" and p50:
            # the baseline too: benchmark_app reads the plain .onnx as it is, and its p50 is what the ratios rest on
            if tiling:
                row["crosscheck"] = {"skipped": "benchmark_app would time one tile, the row a whole frame"}
            else:
                row["crosscheck"] = crosscheck_row(artifact, threads, p50, target, timed_frames)
        rows.append(row)
        loads.append((device, spec_["options"]))
        bar.update(1)
    add_paired(rows, target, timed_frames, tiled=bool(tiling))
    if request.video:
        add_video(rows, loads, spec, resolution, request, work, tiled=bool(tiling), bar=bar)
    bar.update(rows_per_model(target, precisions) - len(jobs))
    return rows


def add_paired(rows: list[dict], target: Target, frames: list[np.ndarray] | None, tiled: bool) -> None:
    """Measure each shipped OpenVINO row against the baseline row side by side (bench.paired) into
    ``vs_baseline_paired``, which report.fill_speedups prefers to the ratio of p50s from separate runs."""
    base = next((r for r in rows if r.get("baseline") and not r.get("error")), None)
    shipped = {r["precision"]: r for r in rows if r["runtime"] == "openvino" and not r.get("baseline") and not r.get("error")}
    if base is None or not shipped:
        return
    if tiled:
        for row in shipped.values():
            row["vs_baseline_paired"] = {"skipped": "the row runs tiled; its ratio is the ratio of p50s from separate runs"}
        return
    try:
        records = paired_vs_baseline(("openvino", Path(base["artifact"])),
                                     {p: ("openvino", Path(r["artifact"])) for p, r in shipped.items()},
                                     target.device, target.load_options(), frames)
    except Exception as err:  # noqa: BLE001 - a failed side-by-side leaves the p50 ratio, and says why
        log.warning("%s: side-by-side timing against the baseline failed (%s)", base["model"], str(err).splitlines()[0])
        records = {p: {"skipped": f"side-by-side timing failed: {str(err).splitlines()[0]}"} for p in shipped}
    for precision, record in records.items():
        shipped[precision]["vs_baseline_paired"] = record


BUILD_LIMIT = {"seconds": 60.0, "peak_rss_mb": 4096}  # issue 17: export + quantize of one model at 400x600 on 2 cores


def build_cost(manifest: dict) -> dict:
    """What building the model's artifacts cost, from its manifest's records of the preflight and the
    stages (each stage's own run: a reused stage carries the figures of the run that made its files)."""
    stages = manifest.get("stages") or {}
    runs = [manifest.get("preflight") or {}, *stages.values()]
    seconds = round(sum(run.get("seconds", 0.0) for run in runs), 1)
    references = round(sum(run.get("references_seconds", 0.0) for run in runs), 1)
    return {
        "seconds": seconds,
        "references_seconds": references,
        "seconds_without_references": round(seconds - references, 1),
        "peak_rss_mb": max((run.get("peak_rss_mb", 0) for run in stages.values()), default=0),
        "preflight_seconds": (manifest.get("preflight") or {}).get("seconds"),
        "stages": {name: run.get("seconds") for name, run in stages.items()},
        "reused": sorted(name for name, run in stages.items() if run.get("reused")),
        "limit": BUILD_LIMIT,
        "what": "wall time of the preflight (eval frames, their references) and the pipeline stages (process start-up "
                "not included), and of it the PyTorch FP32 references the cache did not hold (computed once per "
                "weights and frame set; the limit is held to the build without them); peak RSS of the largest stage",
    }


def rows_per_model(target: Target, precisions) -> int:
    """Rows a local run plans per model: PyTorch, one per precision, and the baseline on OpenVINO."""
    return 1 + len(precisions) + (target.runtime == "openvino")


def add_video(rows: list[dict], loads, spec, resolution, request: BenchRequest, work: Path, tiled: bool, bar) -> None:
    """Each row's ``video`` record (bench.video_rows): streams at 30 fps and flicker, on clips made once per model.

    ``loads``: each row's (device, load options), as its worker got them.
    """
    clips, recipe = None, None
    for row, (device, options) in zip(rows, loads, strict=True):
        skip = skip_reason(spec, row["runtime"], device, tiled, baseline=bool(row.get("baseline")))
        if skip is None and clips is None:
            eval_dir = request.images or ExportRequest(model=spec.name).eval_folder
            clips, recipe = make_clips(Path(eval_dir), spec, resolution, work)
        bar.set_description(f"{spec.name}: video {row['runtime']} {row['precision']}")
        record = video_record(row["runtime"], Path(row["artifact"]), device, options, spec, clips, work, skip)
        if "skipped" not in record:
            record["clip"] = recipe
        row["video"] = record


def artifact_job(manifest: dict, target: Target, precision: str, folder: Path):
    """(backend, precision, artifact, device, notes) for one precision row, or None if not built."""
    files = {f["role"]: f for f in manifest["files"]}
    if target.runtime == "openvino":
        role = {"fp32": "ir_fp32", "int8": "ir_int8"}.get(precision)
    elif target.runtime == "onnxruntime":
        role = {"fp32": "simplified", "int8": "qdq_onnx"}.get(precision)
    else:
        role = f"engine_{precision}"
    if role in files:
        return (target.runtime, precision, folder / files[role]["path"], target.device, [])
    plan = files.get("plan")
    if precision == "int8" and plan is not None:
        log.info("%s: no INT8 artifact shipped (%s)", manifest["model"], "; ".join(plan["notes"]))
    else:
        log.warning("%s: no %s artifact for %s", manifest["model"], precision, target.name)
    return None


BASELINE = "openvino-default"
BASELINE_NOTE = (
    "baseline: the plain ONNX export (before simplification and our graph passes), read by OpenVINO with "
    "its defaults and no sidecar runtime options (only the target's own load options): what a user gets "
    "without lowlight-edge; a reference, not judged against the budget"
)


def baseline_job(manifest: dict, target: Target, folder: Path, shape: list[int]):
    """(backend, precision, artifact, device, notes) of the baseline row, or None (reason logged).

    Only on OpenVINO targets: the issue's claim is "faster than OpenVINO FP32 with default options".
    The row runs like the FP32 row (tiled when it is), so the raw ONNX must take the same input:
    the bench exports it at the row's shape, but a static ONNX of another size is skipped, not reshaped.
    """
    if target.runtime != "openvino":
        return None
    files = {f["role"]: f for f in manifest["files"]}
    if "onnx" not in files:
        log.info("%s: no baseline row (the manifest lists no plain ONNX export, role 'onnx')", manifest["model"])
        return None
    onnx_file = folder / files["onnx"]["path"]
    if sidecar_path(onnx_file).exists():  # the OpenVINO runner would apply its runtime options: no longer the defaults
        log.info("%s: no baseline row (%s beside the plain ONNX export carries options)", manifest["model"], sidecar_path(onnx_file).name)
        return None
    try:
        dims = onnx_input_dims(onnx_file)
    except Exception as err:  # missing (OSError), corrupt (protobuf's DecodeError) or not one input (UsageError)
        log.warning("%s: no baseline row (cannot read the plain ONNX export: %s)", manifest["model"], err)
        return None
    if len(dims) != len(shape) or any(d > 0 and d != s for d, s in zip(dims, shape, strict=True)):
        log.info("%s: no baseline row (the plain ONNX input is %s, the rows run %s)", manifest["model"], dims, shape)
        return None
    return ("openvino", "fp32", onnx_file, target.device, [BASELINE_NOTE])


def compute_precision(precision: str, runtime_info: dict | None) -> str:
    """The precision the row's arithmetic ran in, for its roofline bound: an FP32 IR whose float
    layers ran in BF16 (its sidecar's runtime options) is bounded by the BF16 peak, not FP32's."""
    return "bf16" if precision == "fp32" and used_options(runtime_info).get("precision") == "bf16" else precision


def crosscheck_row(artifact: Path, threads: int, p50: float, target: Target, frames: list[np.ndarray]) -> dict:
    """The bench runner against OpenVINO's benchmark_app on the same file, threads, hint and shape,
    timed in alternation (bench.crosscheck.interleaved); the row's own p50 is kept beside it."""
    precision = target.load_options().get("precision")
    seconds = round_seconds(p50)
    try:
        with get_backend("openvino").load(artifact, device=target.device, options=target.load_options()) as runner, \
                tempfile.TemporaryDirectory(prefix="crosscheck-inputs-") as tmp:
            inputs = write_inputs(frames, Path(tmp))  # benchmark_app times the same frames
            runner(frames[0])
            record = interleaved(
                lambda: median_ms(runner, frames, seconds),
                lambda: benchmark_app_p50(artifact, threads, frames[0].shape, seconds=seconds,
                                          properties={"INFERENCE_PRECISION_HINT": precision} if precision else None,
                                          inputs=inputs),
            )
    except LowlightError as err:
        return {"error": str(err)}
    record["row_p50_ms"] = p50
    return record


# --------------------------------------------------------------------------------------------
# A remote device (--device ssh://...)


def bench_remote(device: SshDevice, names, target: Target, precisions, request: BenchRequest, work: Path) -> list[dict]:
    """Build and reference here, measure there: one bundle, one agent run, rows as a local run's.

    The device has no torch, so there is no PyTorch eager row (speedup_vs_torch is None) and no
    roofline (its limits are measured with torch). A TensorRT target is exported here up to the
    quantize stage and its engines are built on the device, which sends them back to out/engines/.
    """
    session = Session(device, echo=request.progress)
    session.hello()  # unreachable, refused, no Python or numpy: one line now, before any export
    job = RemoteJob(target=target_fields(target))
    pending: list[dict] = []
    for name in names:
        log.info("%s: building artifacts and references for %s", name, device.url)
        # TensorRT: the engines are built on the device, from the simplified, FP16 and QDQ ONNX made here
        prepared = prepare_model(name, target, request, work, for_device=target.runtime == "tensorrt")
        manifest, folder, base, tiling, spec = prepared
        frames = job.ship(base.pop("_frames"), f"data/{name}")
        refs = job.ship(base.pop("_refs"), f"data/{name}")
        base["roofline_ms"] = None
        for precision in precisions:
            shipped = ship_artifact(job, manifest, target, precision, folder, base["_shape"])
            if shipped is None:
                continue
            artifact, build, local = shipped
            job.rows.append({
                "spec": {
                    "backend": target.runtime,
                    "artifact": artifact,
                    "device": target.device,
                    "tegrastats_interval_ms": target.options.get("tegrastats_interval_ms"),
                    "warmup": request.warmup if request.warmup is not None else target.warmup,
                    "iterations": request.iterations or target.iterations,
                    "frames": frames,
                    "reference": refs,
                    "tile": [*tiling, spec.size_multiple] if tiling else None,
                },
                "build": build,
                "label": f"{name} {target.runtime} {precision}" + (" (engine built on the device)" if build else ""),
            })
            pending.append({**{k: v for k, v in base.items() if not k.startswith("_")},
                            "runtime": target.runtime, "precision": precision, "artifact": str(local)})
    if not job.rows:
        msg = f"no artifact to measure on {device.url} for {', '.join(names)} ({', '.join(precisions)})"
        raise UsageError(msg)
    timeout = sum(target.timeout_s for _ in job.rows) + 300 * (target.runtime == "tensorrt") * len(job.rows) + 120
    result = run_remote(device, job, request.out, timeout, session)
    rows = []
    for row, measured in zip(pending, result["rows"], strict=True):
        res = measured["result"]
        out = {**row, **res, "runtime": row["runtime"], "precision": row["precision"], "host": result["host"]}
        if measured.get("engine"):
            out["artifact"] = measured["engine"]
        out["runtime_info"] = res.get("runtime")
        out["notes"] = ["measured on " + device.url + " (no PyTorch eager row or roofline on a remote device)",
                        *(res.get("notes") or [])]
        out["roofline_fraction"] = None
        out["roofline_bound"] = None  # the bound is this host's; the device's peaks are not measured
        if out["runtime"] == "openvino":
            out["vs_baseline_paired"] = {"skipped": "measured on a remote device, which times each row on its own (no baseline row there)"}
        rows.append(out)
    return rows


def prepare_model(name, target: Target, request: BenchRequest, work: Path, for_device: bool = False):
    """Export (or reuse) the model's artifacts and write its eval frames and FP32 references.

    ``for_device``: a TensorRT target's sources for the device's engine builds instead of engines
    (export.pipeline: the FP16 ONNX is made here, so the device has an fp16 row too).
    """
    spec = zoo.get_spec(name)
    resolution = target.resolution_for(name, raw=spec.input_kind == "raw_bayer")
    tiling = target_tiling(target, spec, resolution)
    shape_hw = tiling[:2] if tiling else resolution
    manifest_path = export(
        ExportRequest(model=name, target=target.name, targets_file=request.targets_file, resolution=shape_hw,
                      out=request.artifacts, eval_dir=request.images),
        progress=False,
        for_device=for_device,
    )
    manifest = json.loads(manifest_path.read_text())
    module, frames, refs, frames_file, refs_file = eval_set(name, spec, resolution, request, work)
    base = {
        "model": name,
        "target": target.name,
        "resolution": f"{resolution[0]}x{resolution[1]}",
        "flops": count_flops(module, frames[0].shape),
        "build": build_cost(manifest),  # built here, as in a local run
        "_frames": frames_file,
        "_refs": refs_file,
        "_shape": [1, frames[0].shape[1], *shape_hw],
    }
    return manifest, manifest_path.parent, base, tiling, spec


def ship_artifact(job: RemoteJob, manifest: dict, target: Target, precision: str, folder: Path, shape):
    """(artifact relpath or None, engine build or None, local path) for one row, or None if not built."""
    files = {f["role"]: f for f in manifest["files"]}
    prefix = f"artifacts/{manifest['model']}/{precision}"
    if target.runtime == "tensorrt":
        role = {"int8": "qdq_onnx", "fp16": "fp16_onnx", "fp32": "simplified"}[precision]
        if role not in files:
            log.warning("%s: no %s ONNX to build a %s engine from on the device", manifest["model"], role, precision)
            return None
        onnx = folder / files[role]["path"]
        plan = files.get("plan")
        build = {
            "model": manifest["model"],
            "precision": precision,
            "onnx": job.ship(onnx, prefix),
            "input_shape": shape,
            "plan": job.ship(folder / plan["path"], prefix) if plan else None,
        }
        return None, build, onnx
    found = artifact_job(manifest, target, precision, folder)
    if found is None:
        return None
    artifact = Path(found[2])
    for extra in (artifact.with_suffix(".bin"), Path(f"{artifact}.json")):
        if extra.is_file():
            job.ship(extra, prefix)
    return job.ship(artifact, prefix), None, artifact
