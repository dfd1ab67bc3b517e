"""The staged pipeline: checkpoint -> ONNX -> simplified ONNX -> INT8 -> engine, per target.

``export(request)`` is the Python API behind `python -m export`; it runs the stages in order up
to ``request.until`` and writes ``<out>/<target>/<model>/manifest.json``.

For a TensorRT target whose engines are built on the device, the engine stage is replaced by
what the device builds from (export.remote.Fp16Onnx: the FP16 ONNX, beside the simplified and
QDQ ONNX): ``for_device=True`` stops there (the bench ships them), and ``device=`` (``python -m
export --device ssh://...``) also builds the engines there and lists them in the manifest.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from export.config import STAGES, ExportRequest
from export.core import Context, FileRecord, Stage
from export.engine import BuildEngine
from export.manifest import write_manifest
from export.remote import Fp16Onnx, Session, SshDevice, build_on_device
from export.simplify import SimplifyOnnx
from export.to_onnx import ExportOnnx
from lowlight_edge.errors import UsageError
from lowlight_edge.targets import get_target
from quantize.inputs import calibration_files
from quantize.stage import QuantizeStage

log = logging.getLogger(__name__)


def stages_for(until: str, for_device: bool = False) -> list[Stage]:
    """The stage objects from the first up to ``until``, in order; ``for_device``: the engine
    stage becomes the device's sources (the FP16 ONNX), since the engines are built there."""

    chain: list[Stage] = [ExportOnnx(), SimplifyOnnx(), QuantizeStage(), Fp16Onnx() if for_device else BuildEngine()]
    return chain[: STAGES.index(until) + 1]


def check_device(request: ExportRequest, target, device: SshDevice | None) -> None:
    """--device builds TensorRT engines on the device; for other runtimes it is refused (exit 2)."""
    if device is None:
        return
    if target.runtime != "tensorrt":
        msg = (f"--device builds TensorRT engines on the device, and target {target.name} runs {target.runtime}, whose "
               "artifact (the IR / ONNX) is portable and built here: drop --device, then measure it there with "
               f"python -m bench --target {target.name} --device {device.url}")
        raise UsageError(msg)
    if request.until != "engine":
        msg = f"--device builds the engine stage on the device and --until {request.until} stops before it; drop one of them"
        raise UsageError(msg)
    if request.dynamic:
        msg = "--device builds static-shape engines on the device; drop --dynamic (export at the size you deploy)"
        raise UsageError(msg)


def export(request: ExportRequest, progress: bool = True, for_device: bool = False,
           device: SshDevice | None = None, session: Session | None = None) -> Path:
    """Run the pipeline; returns the manifest path. Raises lowlight_edge.errors.* on user errors.

    Every input is checked before the first write (options, folders, the weights, the eval
    frames and their FP32 references); a run that fails leaves no folder it created empty behind,
    and the manifest exists only when the run completed (see Context.prepare_folder).
    """
    request.validate()
    target = get_target(request.target, request.targets_file)
    check_device(request, target, device)
    ctx = Context(request, target)
    stages = stages_for(request.until, for_device=(for_device or device is not None) and target.runtime == "tensorrt")
    start = time.monotonic()
    preflight(ctx, stages)
    # part of the build's cost: a 12 MP RAW model's eval frames take seconds to make
    ctx.preflight_run = {"seconds": round(time.monotonic() - start, 1), "references_seconds": round(ctx.reference_seconds, 1)}
    if device is not None:
        session = Session(device, echo=progress) if session is None else session
        session.hello()  # unreachable, refused, no Python or numpy: one line now, before any write
    all_records: list[FileRecord] = []
    bar = _progress(len(stages), progress)
    failed = True
    try:
        for stage in stages:
            bar.set_description(f"{request.model}: {stage.name}")
            records = stage(ctx)
            for record in records:
                ctx.records[record.role] = record
            all_records.extend(records)
            bar.update(1)
        if device is not None:
            bar.set_description(f"{request.model}: engines on {device.where}")
            all_records.extend(build_on_device(ctx, device, session))
        bar.close()
        path = ctx.model_dir / "manifest.json"
        if not (all(run.get("reused") for run in ctx.stage_runs.values()) and _describes(path, all_records)):
            # a device build always writes: it replaces the engines, so the manifest is rewritten after it
            ctx.prepare_folder()  # nothing was rewritten, yet the manifest is missing or stale
            write_manifest(ctx, all_records)
        failed = False
        return path
    finally:
        ctx.release(failed)


def preflight(ctx: Context, stages: list[Stage]) -> None:
    """What can fail on the user's input, checked before any stage writes a file.

    Loads the weights (a broken checkpoint fails here), the eval frames and the FP32 references
    (a NaN reference fails here), and lists the calibration images when the quantize stage runs.
    """
    ctx.references()
    if any(isinstance(stage, QuantizeStage) for stage in stages) and "int8" in ctx.target.precisions:
        calibration_files(ctx)


def _describes(manifest: Path, records: list[FileRecord]) -> bool:
    """Whether an existing manifest.json lists exactly these records (a fully reused run keeps it)."""
    try:
        listed = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return listed == [asdict(r) for r in records]


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="stage", disable=not enabled, leave=False)
