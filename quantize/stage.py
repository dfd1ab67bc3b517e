"""Stage 3 of the pipeline: INT8 that keeps the image, and only where it pays.

For OpenVINO targets the output is an INT8 IR plus its precision plan; for TensorRT targets a
QDQ ONNX (symmetric, per-channel weights) made with the same plan. When no INT8 plan meets the
budget and beats FP32 on this host, the plan says so and the float artifact is what ships.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from export.core import Context, FileRecord, Stage
from export.verify import fidelity
from lowlight_edge.errors import UsageError
from quantize import ptq
from quantize.crops import quantize_from_crops
from quantize.plan import FloatNode, PrecisionPlan, save_plan
from quantize.presets import preset_for

log = logging.getLogger(__name__)

VALIDATION_IMAGES = 8  # held-out calibration frames that steer the search
SEARCH_MAX_PIXELS = 1_500_000  # above this, the plan is searched on a smaller export (see search_resolution)
SEARCH_PIXELS = 400_000  # about 512x768
SEARCH_MARGIN_DB = 2.0  # the search aims this far above the budget: eval images are not the calibration images
MIN_SPEEDUP = 1.05  # INT8 must be at least this much faster than FP32 to ship
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


class QuantizeStage(Stage):
    name = "quantize"

    def key(self, ctx: Context) -> dict:
        from export.manifest import source_digest, versions

        return {
            "stage": self.name,
            "input": ctx.records["simplified"].sha256,
            "runtime": ctx.target.runtime,
            "budget": budget_of(ctx),
            "method": ctx.request.method,
            "qat_seconds": ctx.request.qat_seconds if ctx.request.method == "qat" else None,
            "calib": str(Path(ctx.request.calib_folder).resolve()),
            "calib_size": ctx.request.calib_size,
            "calib_max_mean": ctx.request.calib_max_mean,
            "threads": ctx.target.threads,
            "source": source_digest(),
            "versions": {k: versions()[k] for k in ("nncf", "openvino", "onnxruntime", "torch")},
        }

    def run(self, ctx: Context) -> list[FileRecord]:
        if "int8" not in ctx.target.precisions:
            ctx.notes.append(f"target {ctx.target.name} lists no int8 precision; quantize stage skipped")
            return []
        if ctx.request.method == "qat":
            from quantize.qat import qat_stage

            return qat_stage(ctx, budget_of(ctx))
        plan, int8_model = search(ctx, budget_of(ctx))
        return write_outputs(ctx, plan, int8_model)


def load_split(ctx: Context, resolution: tuple[int, int] | None = None):
    """Calibration frames and held-out validation frames (with FP32 references), disjoint."""
    import torch

    from lowlight_edge.datasets import load_calibration

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
    with torch.inference_mode():
        refs = [ctx.module(torch.from_numpy(v)).numpy() for v in val]
    info = {
        "hash": calib.hash,
        "images": len(train),
        "validation_images": len(val),
        "folder": str(ctx.request.calib_folder),
        "max_mean": ctx.request.calib_max_mean,
        "notes": calib.notes,
    }
    return train, val, refs, info


def ov_model(ctx: Context):
    """FP32 OpenVINO model of ctx's simplified ONNX (the model NNCF quantizes)."""
    import openvino as ov

    return ov.convert_model(str(ctx.model_dir / ctx.records["simplified"].path))


def fp32_compiled_for_timing(ctx: Context):
    """The compiled FP32 model that INT8 must beat."""
    import openvino as ov

    try:
        return ptq.compile_cpu(ov_model(ctx), ctx.target.threads)
    except RuntimeError as err:  # OpenVINO 2026.4 CPU bug (tinydce >= 720x1280 on AVX2): the torch-frontend IR
        ctx.notes.append(f"FP32 timing used the PyTorch-frontend IR: {str(err).splitlines()[0]}")
        import torch

        torch_ir = ov.convert_model(ctx.module, example_input=torch.from_numpy(ctx.frames()[0]))
        return ptq.compile_cpu(torch_ir, ctx.target.threads)


def full_size_calibration(ctx: Context, size: int | None = None) -> list[np.ndarray]:
    """Calibration frames at the deployment size (no validation split: the plan is already chosen)."""
    from lowlight_edge.datasets import load_calibration

    calib = load_calibration(
        ctx.request.calib_folder,
        ctx.spec,
        ctx.resolution,
        size=size or calibration_size(ctx),
        seed=0,
        max_mean=ctx.request.calib_max_mean,
    )
    return calib.arrays


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


def find_float_nodes(ctx: Context, budget: dict, plan: PrecisionPlan):
    """Run the preset, then accuracy control if needed, at ctx's resolution.

    Returns (float nodes with reasons, all graph nodes, the INT8 model, validation PSNRs) and logs
    each step into plan.search.
    """
    preset = preset_for(ctx.spec.name)
    train, val, val_refs, calib_info = load_split(ctx)
    model = ov_model(ctx)
    simplified = ctx.model_dir / ctx.records["simplified"].path
    nodes = ptq.graph_nodes(ctx.model_dir / ctx.records["onnx"].path, simplified)
    floats = ptq.preset_float_nodes(nodes, preset, ptq.first_compute_node(simplified))
    at = f" at {ctx.resolution[0]}x{ctx.resolution[1]}"

    aim = {k: v + SEARCH_MARGIN_DB for k, v in budget.items()}
    scope = ptq.ignored_scope([f.name for f in floats], preset)
    int8 = ptq.quantize_ov(model, train, scope, preset)
    psnrs = ptq.evaluate(ptq.compile_cpu(int8, ctx.target.threads), val, val_refs)
    plan.search.append({"step": "preset" + at, "float_nodes": len(floats), "validation": ptq.summary(psnrs)})
    log.info("%s preset plan: %.1f dB mean on validation%s", ctx.spec.name, np.mean(psnrs), at)
    if not ptq.meets(psnrs, aim):
        int8 = ptq.accuracy_control_ov(model, train, val, val_refs, scope, preset, aim, max_iterations=12)
        psnrs = ptq.evaluate(ptq.compile_cpu(int8, ctx.target.threads), val, val_refs)
        plan.search.append({"step": "nncf accuracy control" + at, "validation": ptq.summary(psnrs)})

    # What actually stayed float, read off the INT8 model itself.
    by_name = {n.name: n for n in nodes}
    reasons = {f.name: f.reason for f in floats}
    chosen = [
        FloatNode(
            name,
            by_name[name].op if name in by_name else "?",
            by_name[name].module if name in by_name else "",
            reasons.get(name, "reverted to float by accuracy control"),
        )
        for name in ptq.float_compute_ops(int8)
    ]
    plan.calibration = calib_info
    return chosen, nodes, int8, psnrs


def export_at(ctx: Context, resolution: tuple[int, int], dynamic: bool, folder: str) -> Context:
    """A side export of ctx's model (ONNX and simplified ONNX) under model_dir/folder, as a Context."""
    import dataclasses

    from export.simplify import SimplifyOnnx
    from export.to_onnx import ExportOnnx

    request = dataclasses.replace(
        ctx.request, resolution=resolution, dynamic=dynamic, verify_images=2, out=ctx.model_dir / folder
    )
    side = Context(request, ctx.target)
    for stage in (ExportOnnx(), SimplifyOnnx()):
        for record in stage(side):
            side.records[record.role] = record
    return side


def search(ctx: Context, budget: dict) -> tuple[PrecisionPlan, object | None]:
    """Find the most-INT8 plan meeting the budget; returns the plan and the INT8 model (or None)."""
    plan = PrecisionPlan(ctx.spec.name, ctx.target.name, "fp32", "", budget)
    small = search_resolution(ctx)
    if small is None:
        floats, nodes, int8, psnrs = find_float_nodes(ctx, budget, plan)
        plan.fidelity["validation"] = ptq.summary(psnrs)
    else:  # search on a smaller export of the same model, then quantize the full frame with that plan
        full_size_calibration(ctx, size=1)  # images too small for the full frame: fail now, not after the search
        sctx = export_at(ctx, small, dynamic=False, folder=".search")
        floats, nodes, _, psnrs = find_float_nodes(sctx, budget, plan)
        plan.fidelity["validation"] = {**ptq.summary(psnrs), "resolution": f"{small[0]}x{small[1]}"}
        del sctx
        preset = preset_for(ctx.spec.name)
        from_crops = quantize_from_crops(ctx, [f.name for f in floats], preset, small)
        if from_crops is not None:
            int8, info = from_crops
            plan.calibration.update(info)
        else:
            calib = full_size_calibration(ctx)
            int8 = ptq.quantize_ov(ov_model(ctx), calib, ptq.ignored_scope([f.name for f in floats], preset), preset)
            plan.calibration["full_size_images"] = len(calib)
            plan.calibration["ranges_from"] = "full-size frames"
            del calib
        plan.search.append(
            {"step": f"plan applied at {ctx.resolution[0]}x{ctx.resolution[1]}", "float_nodes": len(floats)}
        )
    plan.float_nodes = floats
    float_names = {f.name for f in floats}
    plan.quantized_nodes = sorted(n.name for n in nodes if n.op in ptq.COMPUTE_OPS and n.name not in float_names)

    int8_compiled = ptq.compile_cpu(int8, ctx.target.threads)
    eval_result = fidelity(run_ov(int8_compiled, ctx.frames()), ctx.references())
    eval_result["runtime"] = "openvino"
    plan.fidelity["eval"] = eval_result
    if cpu_timed(ctx):
        fp32_compiled = fp32_compiled_for_timing(ctx)
        fp32_ms, int8_ms = ptq.paired_latency_ms(fp32_compiled, int8_compiled, ctx.frames())
        del fp32_compiled
        plan.latency_ms = {"fp32": round(fp32_ms, 2), "int8": round(int8_ms, 2), "int8_over_fp32": round(int8_ms / fp32_ms, 3)}
    else:
        plan.latency_ms = {"unmeasured": f"{ctx.target.runtime} on {ctx.target.device}: a CPU runtime's timing says nothing about it; the bench on the device measures it"}

    decide(plan, budget)
    log.info("%s: %s (%s)", ctx.spec.name, plan.decision, plan.reason)
    return plan, int8 if plan.decision == "int8" else None


def cpu_timed(ctx: Context) -> bool:
    """Whether this host can time the target's runtime: CPU targets yes; GPU targets never here."""
    return ctx.target.runtime in ("openvino", "onnxruntime")


def decide(plan: PrecisionPlan, budget: dict, method: str = "INT8") -> None:
    """The ship rule: INT8 only if it meets the budget on the eval images and is faster than FP32.

    For a GPU target (latency unmeasured here) the decision is on fidelity alone, and says so.
    """
    result, latency = plan.fidelity["eval"], plan.latency_ms
    psnr = result["psnr_db"]
    speedup = latency["fp32"] / latency["int8"] if "fp32" in latency else None
    plan.decision = "fp32"
    if not plan.quantized_nodes:
        plan.reason = "no layer could stay INT8 within the budget"
    elif result["nonfinite"] or psnr["mean"] < budget["psnr_mean_db"] or psnr["min"] < budget["psnr_min_db"]:
        plan.reason = f"{method} misses the budget on the eval images ({psnr['mean']}/{psnr['min']} dB)"
    elif speedup is None:
        plan.decision = "int8"
        plan.reason = f"{method} meets the budget; decided on fidelity alone (speed on the target is unmeasured here)"
    elif speedup < MIN_SPEEDUP:
        plan.reason = (
            f"{method} is not faster than FP32 on this host ({latency['int8']:.1f} vs {latency['fp32']:.1f} ms median)"
        )
    else:
        plan.decision = "int8"
        plan.reason = f"{method} meets the budget and runs {speedup:.2f}x faster than FP32"


def run_ov(compiled, frames: list[np.ndarray]) -> list[np.ndarray]:
    output = compiled.output(0)
    return [np.asarray(compiled(f)[output], dtype=np.float32) for f in frames]


def write_outputs(ctx: Context, plan: PrecisionPlan, int8_model) -> list[FileRecord]:
    records: list[FileRecord] = []
    plan_path = ctx.model_dir / "precision_plan.yaml"
    save_plan(plan, plan_path)
    records.append(FileRecord(plan_path.name, "quantize", plan.decision, "plan", notes=[plan.reason]))
    if plan.decision != "int8":
        ctx.notes.append(f"INT8 not shipped: {plan.reason} (see precision_plan.yaml)")
        return [r.fill_digest(ctx.model_dir) for r in records]
    if ctx.target.runtime == "openvino":
        records += save_int8_ir(ctx, int8_model, plan)
    elif ctx.target.runtime == "tensorrt":
        from lowlight_edge.errors import CheckFailed
        from quantize.qdq import write_qdq_onnx

        try:
            records += write_qdq_onnx(ctx, plan, budget_of(ctx))
        except CheckFailed as err:  # the QDQ ONNX itself decides: the float engine ships
            plan.decision, plan.reason = "fp32", str(err)
            save_plan(plan, plan_path)
            records = [FileRecord(plan_path.name, "quantize", plan.decision, "plan", notes=[plan.reason])]
            ctx.notes.append(f"INT8 not shipped: {plan.reason} (see precision_plan.yaml)")
    return [r.fill_digest(ctx.model_dir) if not r.sha256 else r for r in records]


def save_int8_ir(ctx: Context, int8_model, plan: PrecisionPlan) -> list[FileRecord]:
    import openvino as ov

    from lowlight_edge.atomic import atomic_dir

    folder = ctx.model_dir / "openvino" / "int8"
    with atomic_dir(folder) as tmp:
        ov.save_model(int8_model, str(tmp / f"{ctx.spec.name}.xml"), compress_to_fp16=False)
    xml = f"openvino/int8/{ctx.spec.name}.xml"
    fid = plan.fidelity["eval"]
    notes = [f"plan: precision_plan.yaml ({len(plan.float_nodes)} float nodes)", f"calibration {plan.calibration['hash'][:16]}"]
    return [
        FileRecord(xml, "quantize", "int8", "ir_int8", fidelity=fid, notes=notes).fill_digest(ctx.model_dir),
        FileRecord(xml[:-4] + ".bin", "quantize", "int8", "ir_int8_bin").fill_digest(ctx.model_dir),
    ]
