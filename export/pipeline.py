"""The staged pipeline: checkpoint -> ONNX -> simplified ONNX -> INT8 -> engine, per target.

``export(request)`` is the Python API behind `python -m export`; it runs the stages in order up
to ``request.until`` and writes ``<out>/<target>/<model>/manifest.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from export.config import STAGES, ExportRequest
from export.core import Context, FileRecord, Stage
from export.engine import BuildEngine
from export.manifest import write_manifest
from export.simplify import SimplifyOnnx
from export.to_onnx import ExportOnnx
from lowlight_edge.targets import get_target
from quantize.stage import QuantizeStage

log = logging.getLogger(__name__)


def stages_for(until: str) -> list[Stage]:
    """The stage objects from the first up to ``until``, in order."""

    chain: list[Stage] = [ExportOnnx(), SimplifyOnnx(), QuantizeStage(), BuildEngine()]
    return chain[: STAGES.index(until) + 1]


def export(request: ExportRequest, progress: bool = True) -> Path:
    """Run the pipeline; returns the manifest path. Raises lowlight_edge.errors.* on user errors."""

    request.validate()
    target = get_target(request.target, request.targets_file)
    ctx = Context(request, target)
    stages = stages_for(request.until)
    all_records: list[FileRecord] = []
    bar = _progress(len(stages), progress)
    for stage in stages:
        bar.set_description(f"{request.model}: {stage.name}")
        records = stage(ctx)
        for record in records:
            ctx.records[record.role] = record
        all_records.extend(records)
        bar.update(1)
    bar.close()

    return write_manifest(ctx, all_records)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="stage", disable=not enabled, leave=False)
