"""The staged pipeline: checkpoint -> ONNX -> simplified ONNX -> INT8 -> engine, per target.

``export(request)`` is the Python API behind `python -m export`; it runs the stages in order up
to ``request.until`` and writes ``<out>/<target>/<model>/manifest.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from export.config import STAGES, ExportRequest
from export.core import Context, FileRecord, Stage
from export.engine import BuildEngine
from export.manifest import write_manifest
from export.simplify import SimplifyOnnx
from export.to_onnx import ExportOnnx
from lowlight_edge.targets import get_target
from quantize.inputs import calibration_files
from quantize.stage import QuantizeStage

log = logging.getLogger(__name__)


def stages_for(until: str) -> list[Stage]:
    """The stage objects from the first up to ``until``, in order."""

    chain: list[Stage] = [ExportOnnx(), SimplifyOnnx(), QuantizeStage(), BuildEngine()]
    return chain[: STAGES.index(until) + 1]


def export(request: ExportRequest, progress: bool = True) -> Path:
    """Run the pipeline; returns the manifest path. Raises lowlight_edge.errors.* on user errors.

    Every input is checked before the first write (options, folders, the weights, the eval
    frames and their FP32 references); a run that fails leaves no folder it created empty behind,
    and the manifest exists only when the run completed (see Context.prepare_folder).
    """
    request.validate()
    target = get_target(request.target, request.targets_file)
    ctx = Context(request, target)
    stages = stages_for(request.until)
    preflight(ctx, stages)
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
        bar.close()
        path = ctx.model_dir / "manifest.json"
        if not (all(run.get("reused") for run in ctx.stage_runs.values()) and _describes(path, all_records)):
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
