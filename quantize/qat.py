"""Quantization-aware training by self-distillation: no ground truth needed.

NNCF (torch backend) inserts fake-quantizers where the PTQ precision plan put INT8; the
quantized copy is then fine-tuned to reproduce the FP32 model's own outputs on unlabeled,
re-exposed calibration images (L1 loss), and converted to an OpenVINO INT8 IR. The PTQ IR of the
same plan is measured on the same eval images, so the plan reports drift before and after QAT.

Why the PTQ plan and not a more aggressive one: on the IAT student, QAT of the preset plan (only
the fragile nodes float, 6 more INT8 convs) went from 27.9 to 33.2 dB at 200x300, still far
under the 40 dB budget (2026-11-22); QAT of the searched plan took the INT8 IR from 44.5/38.9 to
48.6/43.7 dB mean/min (400x600, all 48 eval images, 2026-11-30).
"""

from __future__ import annotations

import copy
import logging
import os
import time

import numpy as np

from export.core import Context, FileRecord
from export.verify import measure, run_frames
from lowlight_edge.denormals import run_flushed
from lowlight_edge.plan import PrecisionPlan
from quantize import exposure, ptq
from quantize.inputs import load_split, search_resolution
from quantize.outputs import write_outputs
from quantize.search import decide, latency_vs_fp32, search
from runtimes.backend_openvino import BACKEND as openvino

log = logging.getLogger(__name__)

# NNCF's torch backend compiles a C++ extension on first use; on 2 cores that can outlast its
# 60 s default wait. Keep a limit (a stale build lock must not hang CI) but a realistic one.
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")

TRAIN_VIEWS = 2  # re-exposed versions of each calibration frame in the training set
# NNCF's torch range initialisation holds about 100 MB per 400x600 frame until it ends (64 frames:
# 6.9 GB peak, 16 frames: 2.5 GB); the ranges are trained afterwards anyway, so fewer frames do.
RANGE_INIT_PIXELS = 4_000_000
QAT_LR = 1e-5  # NNCF's QAT guide: a few epochs at about 1e-5; 1e-4 wrecked the student's global head
CHECK_EVERY = 20
# NNCF torch op types of each ONNX op type of the plan (lowlight_edge.plan.QUANTIZABLE_OPS).
TORCH_TYPES = {
    "Conv": ("conv2d",),
    "ConvTranspose": ("conv_transpose2d",),
    "MatMul": ("matmul", "bmm", "linear"),
    "Gemm": ("linear",),
    "Mul": ("mul",),
    "Add": ("add",),
    "Sub": ("sub",),
    "Div": ("div",),
    "Pow": ("pow",),
    "Tanh": ("tanh",),
    "Sigmoid": ("sigmoid",),
    "Clip": ("clamp",),
    "Resize": ("interpolate",),
    "CumSum": ("cumsum",),
    "ReduceMean": ("mean",),
    "AveragePool": ("avg_pool2d",),
    "GlobalAveragePool": ("adaptive_avg_pool2d",),
    "LayerNormalization": ("layer_norm",),
}
TORCH_COMPUTE = {"Conv": ("conv2d", "conv_transpose2d"), "Gemm": ("linear",), "MatMul": ("matmul", "bmm", "linear")}


def torch_types(onnx_ops: list[str]) -> list[str]:
    """The NNCF torch op types of ONNX op types (the plan's float op types)."""
    return sorted({t for op in onnx_ops for t in TORCH_TYPES[op]})


def torch_float_names(plan: PrecisionPlan, onnx_compute: list[tuple[str, str]], model, example) -> list[str]:
    """NNCF torch node names of the plan's float nodes.

    The ONNX and NNCF graphs both list compute ops in execution order, so the k-th ONNX
    Conv/Gemm/MatMul is the k-th torch conv2d/linear/matmul (checked op by op). Module paths alone
    cannot be used: ONNX names a BatchNorm-folded conv after the BatchNorm.
    """
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    allowed = {t for kinds in TORCH_COMPUTE.values() for t in kinds}
    graph = build_nncf_graph(model, example)
    torch_compute = [(n.node_name, n.node_type) for n in graph.get_all_nodes() if n.node_type in allowed]
    aligned = len(torch_compute) == len(onnx_compute) and all(
        t_type in TORCH_COMPUTE.get(o_type, ()) for (_, o_type), (_, t_type) in zip(onnx_compute, torch_compute, strict=False)
    )
    floats = set(plan.float_names)
    if aligned:
        return [t_name for (o_name, _), (t_name, _) in zip(onnx_compute, torch_compute, strict=True) if o_name in floats]
    log.warning("ONNX and torch compute graphs differ; float nodes matched by module path instead")
    prefixes = {n.module.replace(".", "/") + "/" for n in plan.float_nodes if n.module}
    return [name for name, _ in torch_compute if any(name.startswith(p) for p in prefixes)]


def fold_batchnorm(model):
    """A copy with every Conv2d -> BatchNorm2d pair fused, as the ONNX/OpenVINO graph has it.

    Quantizing conv weights before BatchNorm rescales them costs fidelity (measured on the
    student: 29.5 -> 32.3 dB for the same float nodes). Pairs are found as adjacent children of a
    Sequential, or sibling attributes named convN / bnN.
    """
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:], strict=False):
            paired = isinstance(parent, torch.nn.Sequential) or name_b == name_a.replace("conv", "bn")
            if paired and isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                setattr(parent, name_a, fuse_conv_bn_eval(a, b))
                setattr(parent, name_b, torch.nn.Identity())
    return model


def quantized_parameters(student) -> list:
    """The quantizer scales and the weights of the INT8 layers; everything kept float stays frozen.

    Fine-tuning then adapts only what quantization changed: the float global branch (the
    student's gamma and colour heads) cannot drift. NNCF stores a weight quantizer as the pre-hook
    'pre_hooks.<module/path>/<op>/<n>__1.0' of the quantized op.
    """
    prefix = "__nncf_hooks.pre_hooks."
    modules = set()
    for name, _ in student.named_parameters():
        if name.startswith(prefix) and "__1." in name:
            node = name[len(prefix):].split("__1.")[0]
            modules.add(node.rsplit("/", 2)[0].replace("/", "."))
    chosen = []
    for name, param in student.named_parameters():
        scale = name.startswith("__nncf_hooks.") and name.endswith("_scale_param_storage")
        layer = any(name.startswith(m + ".") for m in modules)
        param.requires_grad_(scale or layer)
        if scale or layer:
            chosen.append(param)
    return chosen


def finetune(
    student, teacher, frames: list[np.ndarray], val_frames: list[np.ndarray] | None = None,
    seconds: float = 240.0, lr: float = QAT_LR, params: list | None = None, max_steps: int | None = None,
) -> dict:
    """Adam on L1(student(x), teacher(x)) until the time budget (or max_steps) is spent; keeps the best state.

    The validation L1 is measured before the first step and every CHECK_EVERY steps; the state
    with the lowest one is restored at the end, so fine-tuning never returns a model worse than
    the one it was given.
    """
    import torch

    def l1(model, inputs, targets) -> float:
        with torch.no_grad():
            return float(np.mean([torch.nn.functional.l1_loss(model(x), t).item() for x, t in zip(inputs, targets, strict=True)]))

    inputs = [torch.from_numpy(f) for f in frames]
    checks = [torch.from_numpy(f) for f in (val_frames or frames[:2])]
    with torch.no_grad():
        targets = [teacher(x) for x in inputs]
        check_targets = [teacher(x) for x in checks]
    student.eval()
    best_l1 = start_l1 = l1(student, checks, check_targets)
    best_state = copy.deepcopy(student.state_dict())
    params = params if params is not None else [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    steps, deadline = 0, time.monotonic() + seconds
    order = np.random.default_rng(0)
    while time.monotonic() < deadline and (max_steps is None or steps < max_steps):
        student.train()
        for module in student.modules():  # BatchNorm statistics stay frozen: too few images to re-estimate
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
        i = int(order.integers(len(inputs)))
        loss = torch.nn.functional.l1_loss(student(inputs[i]), targets[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
        if steps % CHECK_EVERY == 0:
            student.eval()
            current = l1(student, checks, check_targets)
            if current < best_l1:
                best_l1, best_state = current, copy.deepcopy(student.state_dict())
    student.load_state_dict(best_state)
    student.eval()
    return {"steps": steps, "seconds": seconds, "lr": lr, "val_l1_before": start_l1, "val_l1_after": best_l1,
            "improved": best_l1 < start_l1}


def range_init_frames(frames: list[np.ndarray], resolution: tuple[int, int]) -> list[np.ndarray]:
    """An evenly spread subset of the training frames within RANGE_INIT_PIXELS (at least 4)."""
    count = min(len(frames), max(4, RANGE_INIT_PIXELS // (resolution[0] * resolution[1])))
    step = len(frames) / count
    return [frames[int(i * step)] for i in range(count)]


def train_qat(ctx: Context, plan: PrecisionPlan, resolution: tuple[int, int]) -> tuple[object, dict]:
    """The NNCF torch model of ``plan``, fine-tuned by self-distillation; returns it and a report.

    RGB models train on re-exposed calibration frames (quantize.exposure); the fake-quantizer
    ranges are initialised on the same frames. RAW models train on their calibration frames as
    they are: synthetic RAW is already a short, noisy exposure.
    """
    import nncf
    import torch

    train, val, _, _ = load_split(ctx, resolution)
    report: dict = {"resolution": f"{resolution[0]}x{resolution[1]}"}
    if ctx.spec.input_kind == "rgb":
        train = exposure.low_light_views(train, seed=0, per_frame=TRAIN_VIEWS)
        val = exposure.low_light_views(val, seed=1)
        report["frames"] = {"re_exposed": exposure.describe(seed=0, per_frame=TRAIN_VIEWS)}
    report["train_frames"], report["validation_frames"] = len(train), len(val)
    exported = ctx.model_dir / ctx.records["onnx"].path
    simplified = ctx.model_dir / ctx.records["simplified"].path
    teacher = ctx.module
    folded = fold_batchnorm(teacher)
    float_names = torch_float_names(plan, ptq.execution_order(exported, simplified), folded, torch.from_numpy(train[0]))
    init = range_init_frames(train, resolution)
    report["range_init_frames"] = len(init)
    student = nncf.quantize(
        folded,
        nncf.Dataset([torch.from_numpy(a) for a in init]),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(init),
        ignored_scope=nncf.IgnoredScope(names=float_names, types=torch_types(plan.float_op_types), validate=False),
    )
    trainable = quantized_parameters(student)
    # denormals flushed on every thread (lowlight_edge.denormals): more steps in the same time budget where they are slow
    report.update(run_flushed(lambda: finetune(student, teacher, train, val, seconds=ctx.request.qat_seconds, params=trainable)))
    report["trained_tensors"] = len(trainable)
    return student, report


def qat_stage(ctx: Context, budget: dict) -> list[FileRecord]:
    """PTQ search first; then QAT of the PTQ plan; the better INT8 of the two ships.

    QAT keeps the layers the PTQ search chose (the plan is known to be close to the budget) and
    trains them to reproduce the FP32 model. Drift before (the PTQ INT8 IR) and after (the QAT
    INT8 IR) is measured on the same eval images. QAT ships when it meets the budget, is shown
    faster than FP32 (quantize.search.decide, the same rule and the same --ship pin as PTQ) and is
    no worse than PTQ; otherwise the PTQ decision stands, with the QAT figures.
    """
    ptq_plan, ptq_int8 = search(ctx, budget)
    if "eval" not in ptq_plan.fidelity:  # the speed probe decided: training changes ranges, not the graph's speed
        ptq_plan.reason += "; QAT not run: no INT8 plan of this graph can ship on this host"
        return write_outputs(ctx, ptq_plan, ptq_int8)
    if not ptq_plan.quantized_nodes:
        ptq_plan.reason += "; QAT not run: the PTQ search left no INT8 layer to train"
        return write_outputs(ctx, ptq_plan, ptq_int8)
    ptq.quiet_nncf()
    plan = PrecisionPlan(ctx.spec.name, ctx.target.name, "fp32", "", budget, quantize_ops=list(ptq_plan.quantize_ops),
                         calibration=ptq_plan.calibration)
    plan.float_nodes, plan.quantized_nodes = list(ptq_plan.float_nodes), list(ptq_plan.quantized_nodes)
    plan.search = list(ptq_plan.search)
    plan.runtime = ptq_plan.runtime  # the runtime options decided on this host travel with the QAT IR too

    student, training = train_qat(ctx, plan, search_resolution(ctx) or ctx.resolution)
    int8 = openvino.from_torch(student, ctx.frames()[0])
    del student
    int8_runner = openvino.runner(int8, ctx.target.threads)
    wide_frames, wide_refs = ctx.wide_eval()  # the same frames the PTQ plan's eval figures are on
    after = {**measure(run_frames(int8_runner, wide_frames), wide_refs), "runtime": "openvino"}

    before = ptq_plan.fidelity["eval"]["psnr_db"]
    gain = {k: round(after["psnr_db"][k] - before[k], 2) for k in ("mean", "min")}
    plan.search.append({"step": "qat (self-distillation) of the PTQ plan", **training, "eval_ptq": before,
                        "eval_qat": after["psnr_db"], "gain_db": gain})
    plan.fidelity = {**ptq_plan.fidelity, "eval_ptq": ptq_plan.fidelity["eval"], "eval": after}
    plan.latency_ms = latency_vs_fp32(ctx, int8_runner)
    int8_runner.close()
    decide(plan, budget, method="QAT INT8", ship=ctx.request.ship)
    gain_text = f"QAT {gain['mean']:+} dB mean, {gain['min']:+} dB min vs PTQ on the eval images"
    if plan.decision == "int8" and ptq_plan.decision == "int8" and gain["mean"] < 0:
        plan.decision, plan.reason = "fp32", f"QAT INT8 is worse than PTQ INT8 ({gain_text})"
    log.info("%s QAT: %s (%s; %s)", ctx.spec.name, plan.decision, plan.reason, gain_text)
    if plan.decision == "int8":
        plan.reason += f" ({gain_text})"
        return write_outputs(ctx, plan, int8)
    ptq_plan.search = plan.search
    ptq_plan.fidelity["qat"] = {"eval": after, "reason": plan.reason, "gain_db": gain}
    ptq_plan.reason = f"{ptq_plan.reason}; QAT not shipped: {plan.reason}"
    return write_outputs(ctx, ptq_plan, ptq_int8)
