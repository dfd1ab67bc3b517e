"""What a quantization run reads: the budget, calibration frames, side exports, the FP32 baseline.

Shared by the PTQ search, crop calibration and QAT, so none of them imports another's module.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

import runtimes
from export.core import Context
from export.simplify import SimplifyOnnx
from export.to_onnx import ExportOnnx
from lowlight_edge import refcache
from lowlight_edge.datasets import check_usable, list_inputs, load_calibration, scene_summary
from lowlight_edge.errors import UsageError
from runtimes.base import BuildConfig, Runner

log = logging.getLogger(__name__)

VALIDATION_IMAGES = 8  # held-out calibration frames that steer the search
SEARCH_MAX_PIXELS = 1_500_000  # above this, the plan is searched on a smaller export (see search_resolution)
SEARCH_PIXELS = 400_000  # about 512x768
FRAME_BUDGET_BYTES = 1.0e9  # calibration + validation frames held in memory at once (stage budget: 4 GB)
DEFAULT_CALIB_SIZE = 32


def budget_of(ctx: Context) -> dict:
    target_budget = ctx.target.budget
    budget = {"psnr_mean_db": target_budget.psnr_mean_db, "psnr_min_db": target_budget.psnr_min_db}
    if ctx.request.budget_db is not None:
        gap = budget["psnr_mean_db"] - budget["psnr_min_db"]
        budget = {"psnr_mean_db": ctx.request.budget_db, "psnr_min_db": ctx.request.budget_db - gap}
    return budget


def calibration_size(ctx: Context) -> int:
    """The requested size; by default 32 frames, or as many as fit the memory budget (said in the log).

    An explicit --calib-size that does not fit is an error rather than a silent cut.
    """
    frame_bytes = 4 * ctx.spec.channels * ctx.resolution[0] * ctx.resolution[1]
    fits = max(4, int(FRAME_BUDGET_BYTES // frame_bytes) - VALIDATION_IMAGES)
    requested = ctx.request.calib_size
    if requested is None:
        size = min(DEFAULT_CALIB_SIZE, fits)
        if size < DEFAULT_CALIB_SIZE:
            log.info("%s: %d calibration frames of %dx%d fit the %.1f GB frame budget", ctx.spec.name, size,
                     *ctx.resolution, FRAME_BUDGET_BYTES / 1e9)
        return size
    if requested > fits:
        msg = (
            f"--calib-size {requested} frames of {ctx.resolution[0]}x{ctx.resolution[1]} would need "
            f"{(requested + VALIDATION_IMAGES) * frame_bytes / 1e9:.1f} GB; use --calib-size {fits} or less"
        )
        raise UsageError(msg)
    return requested


def load_split(ctx: Context, resolution: tuple[int, int] | None = None):
    """Calibration frames and held-out validation frames (with FP32 references), disjoint.

    Both halves mix uniformly dark frames with light-source scenes (lowlight_edge.datasets,
    every second frame), so the search's accuracy control sees the highlights that saturate INT8
    ranges and keeps the layers they break in float. References come from lowlight_edge.refcache.
    """
    size = calibration_size(ctx)
    calib = load_calibration(
        ctx.request.calib_folder,
        ctx.spec,
        resolution or ctx.resolution,
        size=size + VALIDATION_IMAGES,
        seed=0,
        max_mean=ctx.request.calib_max_mean,
    )
    n_val = VALIDATION_IMAGES
    if len(calib.arrays) < size + VALIDATION_IMAGES:  # a small folder: keep 3/4 of it for calibration
        n_val = max(1, len(calib.arrays) // 4)
    train, val = calib.arrays[:-n_val], calib.arrays[-n_val:]
    refs, record = refcache.references(ctx.spec.name, ctx.module, val)
    info = {
        "hash": calib.hash,
        "images": len(train),
        "validation_images": len(val),
        "folder": str(ctx.request.calib_folder),
        "max_mean": ctx.request.calib_max_mean,
        "notes": calib.notes,
        # the recipe mixed into calibration and validation, and every frame's parameters and sha256
        "scenes": scene_summary(calib.scenes, calib.input_kind),
        "frames": [{**f, "role": "calibration" if i < len(train) else "validation"} for i, f in enumerate(calib.frames)],
        "validation_references": record,
    }
    return train, val, refs, info


def calibration_files(ctx: Context) -> list[Path]:
    """The calibration folder's images (DataError when it is missing or holds none): a cheap check
    made before any stage runs, so a bad --calib never leaves an ONNX export behind."""
    return list_inputs(Path(ctx.request.calib_folder), ctx.spec.input_kind, "calibration")


def full_size_calibration(ctx: Context, size: int | None = None) -> list[np.ndarray]:
    """Calibration frames at the deployment size (no validation split: the plan is already chosen)."""
    calib = load_calibration(
        ctx.request.calib_folder,
        ctx.spec,
        ctx.resolution,
        size=size or calibration_size(ctx),
        seed=0,
        max_mean=ctx.request.calib_max_mean,
    )
    return calib.arrays


def check_full_size_calibration(ctx: Context) -> None:
    """DataError now when the calibration images cannot make a full-size frame (too small, unreadable,
    too bright), rather than after a search at a smaller size; no frame is made."""
    check_usable(ctx.request.calib_folder, ctx.spec, ctx.resolution, max_mean=ctx.request.calib_max_mean)


def search_resolution(ctx: Context) -> tuple[int, int] | None:
    """A smaller size to search the plan at when full frames make the search too slow, else None.

    Used for frames above SEARCH_MAX_PIXELS (LLPackNet's 12 MP): accuracy control re-runs the
    validation frames once per candidate layer, minutes per round at full size. The plan's node
    names are the same at any static size of the same model (checked for LLPackNet: all 32 compute
    nodes identical at 512x768 and 2848x4256), so the plan found there applies to the full frame.
    """
    h, w = ctx.resolution
    if h * w <= SEARCH_MAX_PIXELS:
        return None
    m = ctx.spec.size_multiple
    scale = (SEARCH_PIXELS / (h * w)) ** 0.5
    return max(m, round(h * scale / m) * m), max(m, round(w * scale / m) * m)


def export_at(ctx: Context, resolution: tuple[int, int], dynamic: bool, folder: str) -> Context:
    """A side export of ctx's model (ONNX and simplified ONNX) under model_dir/folder, as a Context."""
    request = dataclasses.replace(
        ctx.request, resolution=resolution, dynamic=dynamic, verify_images=2, out=ctx.model_dir / folder
    )
    side = Context(request, ctx.target)
    try:
        for stage in (ExportOnnx(), SimplifyOnnx()):
            for record in stage(side):
                side.records[record.role] = record
    finally:
        side.release(failed=False)
    return side


def ov_model(ctx: Context):
    """FP32 openvino.Model of ctx's simplified ONNX (the model NNCF quantizes)."""
    return runtimes.get_backend("openvino").read_onnx(ctx.model_dir / ctx.records["simplified"].path)


def fp32_runner_for_timing(ctx: Context) -> Runner:
    """The FP32 model INT8 must beat, built as the engine stage builds it (torch fallback included),
    with OpenVINO's defaults: the runtime options are what the search decides.

    Built from a copy of the simplified ONNX in a temporary folder: an OpenVINO build applies the
    precision plan beside its ONNX when the plan was decided on that very file, and a rebuild in the
    same folder (a new budget, new code) has the previous run's plan there, for the same ONNX. Its
    f32 layers, baked into the timing IR, once made the "all-BF16" candidate the previous run's
    BF16 with 4 layers f32 (IAT: 51.73/41.61 dB instead of 42.06/34.59), adopted without them.
    """
    backend = runtimes.get_backend("openvino")
    config = BuildConfig(input_shape=ctx.input_shape, threads=ctx.target.threads, torch_fallback=lambda: ctx.module)
    with tempfile.TemporaryDirectory(prefix="lowlight-fp32-timing-") as tmp:
        source = Path(tmp) / "model.onnx"
        shutil.copyfile(ctx.model_dir / ctx.records["simplified"].path, source)
        artifact = backend.build(source, config, Path(tmp) / "ir")
        if "fallback" in artifact.meta:
            ctx.notes.append(f"FP32 timing used the PyTorch-frontend IR: {artifact.meta['fallback']}")
        return backend.load(artifact.path, device="cpu", options={"threads": ctx.target.threads, "hint": "LATENCY"})
