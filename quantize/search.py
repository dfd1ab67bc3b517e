"""The PTQ precision search: the most-INT8 plan that keeps the image, and the ship rule.

Starts from the model's preset (its registry entry's QuantPreset), runs NNCF accuracy control when the preset
misses the budget, and decides whether INT8 ships: it must meet the budget on the eval images and,
on a CPU target, run faster than FP32 here. Large frames are searched on a smaller export and
calibrated on crops (quantize/crops.py).
"""

from __future__ import annotations

import logging

import numpy as np

from export.core import Context
from export.verify import measure, run_frames
from lowlight_edge.plan import FloatNode, PrecisionPlan
from quantize import ptq
from quantize.crops import quantize_from_crops
from quantize.inputs import (
    export_at,
    fp32_runner_for_timing,
    full_size_calibration,
    load_split,
    ov_model,
    search_resolution,
)
from runtimes.backend_openvino import BACKEND as openvino  # NNCF quantizes openvino.Models; this runs them
from runtimes.backend_openvino import float_compute_ops
from runtimes.base import Runner

log = logging.getLogger(__name__)

SEARCH_MARGIN_DB = 2.0  # the search aims this far above the budget: eval images are not the calibration images
MIN_SPEEDUP = 1.05  # INT8 must be at least this much faster than FP32 to ship


def find_float_nodes(ctx: Context, budget: dict, plan: PrecisionPlan):
    """Run the preset, then accuracy control if needed, at ctx's resolution.

    Returns (float nodes with reasons, all graph nodes, the INT8 model, validation PSNRs) and logs
    each step into plan.search.
    """
    preset = ctx.spec.preset
    train, val, val_refs, calib_info = load_split(ctx)
    model = ov_model(ctx)
    simplified = ctx.model_dir / ctx.records["simplified"].path
    nodes = ptq.graph_nodes(ctx.model_dir / ctx.records["onnx"].path, simplified)
    floats = ptq.preset_float_nodes(nodes, preset, ptq.first_compute_node(simplified))
    at = f" at {ctx.resolution[0]}x{ctx.resolution[1]}"

    aim = {k: v + SEARCH_MARGIN_DB for k, v in budget.items()}
    plan.quantize_ops = list(preset.quantize_ops)
    scope = ptq.ignored_scope([f.name for f in floats], plan.float_op_types)
    int8 = ptq.quantize_ov(model, train, scope, preset)
    psnrs = ptq.evaluate(openvino.runner(int8, ctx.target.threads), val, val_refs)
    plan.search.append({"step": "preset" + at, "float_nodes": len(floats), "validation": ptq.summary(psnrs)})
    log.info("%s preset plan: %.1f dB mean on validation%s", ctx.spec.name, np.mean(psnrs), at)
    if not ptq.meets(psnrs, aim):
        int8 = ptq.accuracy_control_ov(model, train, val, val_refs, scope, preset, aim, max_iterations=12)
        psnrs = ptq.evaluate(openvino.runner(int8, ctx.target.threads), val, val_refs)
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
        for name in float_compute_ops(int8)
    ]
    plan.calibration = calib_info
    return chosen, nodes, int8, psnrs


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
        from_crops = quantize_from_crops(ctx, [f.name for f in floats], plan, small)
        if from_crops is not None:
            int8, info = from_crops
            plan.calibration.update(info)
        else:
            calib = full_size_calibration(ctx)
            scope = ptq.ignored_scope([f.name for f in floats], plan.float_op_types)
            int8 = ptq.quantize_ov(ov_model(ctx), calib, scope, ctx.spec.preset)
            plan.calibration["full_size_images"] = len(calib)
            plan.calibration["ranges_from"] = "full-size frames"
            del calib
        plan.search.append(
            {"step": f"plan applied at {ctx.resolution[0]}x{ctx.resolution[1]}", "float_nodes": len(floats)}
        )
    plan.float_nodes = floats
    float_names = {f.name for f in floats}
    plan.quantized_nodes = sorted(n.name for n in nodes if n.op in ptq.COMPUTE_OPS and n.name not in float_names)

    with openvino.runner(int8, ctx.target.threads) as int8_runner:
        plan.fidelity["eval"] = {**measure(run_frames(int8_runner, ctx.frames()), ctx.references()), "runtime": "openvino"}
        plan.latency_ms = latency_vs_fp32(ctx, int8_runner)

    decide(plan, budget)
    log.info("%s: %s (%s)", ctx.spec.name, plan.decision, plan.reason)
    return plan, int8 if plan.decision == "int8" else None


def latency_vs_fp32(ctx: Context, int8_runner: Runner) -> dict:
    """Median FP32 and INT8 latency, interleaved on this host; unmeasured for a GPU target."""
    if not cpu_timed(ctx):
        why = f"{ctx.target.runtime} on {ctx.target.device}: a CPU runtime's timing says nothing about it; the bench on the device measures it"
        return {"unmeasured": why}
    with fp32_runner_for_timing(ctx) as fp32_runner:
        fp32_ms, int8_ms = ptq.paired_latency_ms(fp32_runner, int8_runner, ctx.frames())
    return {"fp32": round(fp32_ms, 2), "int8": round(int8_ms, 2), "int8_over_fp32": round(int8_ms / fp32_ms, 3)}


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
