"""Post-training INT8 with NNCF under an image-fidelity budget.

The search, in order, stopping at the first plan that meets the budget on held-out
calibration frames (never the eval images):
1. the model's preset (the QuantPreset of its registry entry): only convolutions INT8, known-fragile nodes float;
2. NNCF accuracy control from that preset, with a PSNR-vs-FP32 metric: it ranks the remaining
   INT8 layers by their effect on the metric and reverts them to float until the budget holds.
The result is then checked on the eval images and timed against FP32 on this host in paired rounds
(``paired_rounds``; the statistics and the ship rule are quantize.search's): an INT8 model that misses
the budget or is not shown faster is not shipped (the plan records why).
"""

from __future__ import annotations

import ast
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lowlight_edge.metrics import frame_psnr
from lowlight_edge.plan import FloatNode
from lowlight_edge.zoo._api import QuantPreset
from runtimes.backend_openvino import openvino_types
from runtimes.base import Runner

log = logging.getLogger(__name__)

PSNR_CAP_DB = 60.0  # FP32 vs itself scores this; accuracy control measures drops from it
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    op: str
    module: str


def graph_nodes(exported_onnx: Path, simplified_onnx: Path) -> list[NodeInfo]:
    """Nodes of the simplified graph with the PyTorch module each came from.

    The dynamo exporter stores each node's module scope in metadata_props; onnxsim drops the
    metadata but keeps node names, so the scope is looked up in the unsimplified export.
    """
    import onnx

    scopes: dict[str, str] = {}
    for node in onnx.load(str(exported_onnx), load_external_data=False).graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                try:
                    names = ast.literal_eval(prop.value)
                    scopes[node.name] = names[-2] if len(names) >= 2 else ""
                except (ValueError, SyntaxError):
                    pass
    graph = onnx.load(str(simplified_onnx), load_external_data=False).graph
    return [NodeInfo(n.name, n.op_type, scopes.get(n.name, "")) for n in graph.node]


def first_compute_node(simplified_onnx: Path) -> str | None:
    """The first Conv/MatMul fed (through non-compute ops) by the graph input."""
    import onnx

    graph = onnx.load(str(simplified_onnx), load_external_data=False).graph
    reached = {i.name for i in graph.input}
    for node in graph.node:
        if any(i in reached for i in node.input):
            if node.op_type in COMPUTE_OPS:
                return node.name
            reached.update(node.output)
    return None


def preset_float_nodes(nodes: list[NodeInfo], preset: QuantPreset, first: str | None) -> list[FloatNode]:
    """Compute nodes that the preset keeps in float, each with its reason."""
    chosen: list[FloatNode] = []
    for node in nodes:
        if node.op not in COMPUTE_OPS:
            continue
        reason = ""
        if node.op not in preset.quantize_ops:
            reason = f"preset: {node.op} ops stay float for this model"
        elif first and node.name == first and preset.float_first_conv:
            reason = f"preset: {preset.float_first_conv}"
        else:
            for prefix, why in preset.float_modules:
                if node.module == prefix or node.module.startswith(prefix + "."):
                    reason = f"preset: {why}"
                    break
        if reason:
            chosen.append(FloatNode(node.name, node.op, node.module, reason))
    return chosen


def execution_order(exported_onnx, simplified_onnx) -> list[tuple[str, str]]:
    """Compute nodes (name, op) of the simplified graph, in the exporter's trace order.

    onnxsim may reorder independent branches; the dynamo export keeps the order in which PyTorch
    ran the ops, which is the order NNCF's torch graph lists them in.
    """
    import onnx

    kept = {n.name for n in onnx.load(str(simplified_onnx), load_external_data=False).graph.node}
    graph = onnx.load(str(exported_onnx), load_external_data=False).graph
    return [(n.name, n.op_type) for n in graph.node if n.op_type in COMPUTE_OPS and n.name in kept]


def ignored_scope(float_names: list[str], float_op_types: list[str]):
    """NNCF IgnoredScope (OpenVINO names) for the plan's float nodes and float op types."""
    import nncf

    names = [n for name in float_names for n in (name, f"{name}/WithoutBiases")]
    return nncf.IgnoredScope(names=names, types=openvino_types(float_op_types), validate=False)


def score(psnrs: list[float], budget: dict) -> float:
    """One number for accuracy control: the mean PSNR, pulled down if the worst frame misses its floor."""
    gap = budget["psnr_mean_db"] - budget["psnr_min_db"]
    return float(min(np.mean(psnrs), np.min(psnrs) + gap, PSNR_CAP_DB))


def evaluate(runner: Runner, frames: list[np.ndarray], refs: list[np.ndarray]) -> list[float]:
    """PSNR of each frame's output against its FP32 reference (the one per-frame rule, metrics.frame_psnr)."""
    return [frame_psnr(runner(f), r) for f, r in zip(frames, refs, strict=True)]


def summary(psnrs: list[float]) -> dict:
    return {"images": len(psnrs), "psnr_db": {"mean": round(float(np.mean(psnrs)), 2), "min": round(float(np.min(psnrs)), 2)}}


def meets(psnrs: list[float], budget: dict) -> bool:
    return float(np.mean(psnrs)) >= budget["psnr_mean_db"] and float(np.min(psnrs)) >= budget["psnr_min_db"]


def warm_up(calls, runs: int = 2) -> None:
    """A few untimed runs of each timed call (runtimes.isolation.timers; first calls allocate and compile)."""
    for i in range(runs):
        for call in calls:
            call(i)


def paired_rounds(a, b, times_a: list[float], times_b: list[float], until: int, deadline: float | None = None) -> None:
    """Time rounds of one ``a`` run and one ``b`` run on the same frame, appending ms to the lists.

    ``a`` and ``b`` are timed calls (runtimes.isolation.timers: frame index -> ms). Round i runs
    frame i (cycling over the varied frames), ``a`` first in even rounds and ``b`` first in odd
    ones, so neither side always follows the other. Both runs of a round share the host's load of
    that moment, which is what makes the per-round ratio a fair comparison on a shared machine.
    Stops when the lists hold ``until`` rounds or, if given, at the ``time.perf_counter()``
    deadline (after a whole round).
    """
    while len(times_a) < until and (deadline is None or time.perf_counter() < deadline):
        i = len(times_a)
        pair = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for call, samples in pair:
            samples.append(call(i))


def quiet_nncf() -> None:
    """NNCF logs every quantizer it places at INFO; keep its warnings only."""
    import nncf

    nncf.set_log_level(logging.WARNING)


def quantize_ov(model, calib_arrays: list[np.ndarray], scope, preset: QuantPreset, for_timing: bool = False):
    """NNCF PTQ of an openvino.Model. ``for_timing``: only the graph matters (the speed probe), so bias
    correction, which changes bias values and not the graph, is not run."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    quiet_nncf()

    return nncf.quantize(
        model,
        nncf.Dataset(calib_arrays),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(calib_arrays),
        ignored_scope=scope,
        model_type=nncf.ModelType.TRANSFORMER if preset.model_type_transformer else None,
        advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=for_timing),
    )


def accuracy_control_ov(model, calib_arrays, val_frames, val_refs, scope, preset: QuantPreset, budget: dict,
                        max_iterations: int, validations: list[list[float]] | None = None):
    """NNCF accuracy control with our PSNR score; reverts ranked layers until the budget holds.

    NNCF quantizes ``model`` with the preset itself and returns that INT8 model at once when it
    meets the budget, so no separate preset quantization is needed first. ``validations``: the
    per-frame PSNRs of every validation on all of ``val_frames`` are appended: NNCF validates the
    FP32 model, then the preset's INT8 one, and only when that misses ranks and reverts layers
    (its one-frame call that finds out what ``validate`` returns is left out).
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    def validate(compiled, items) -> tuple[float, list[float]]:
        output = compiled.output(0)
        psnrs = [frame_psnr(compiled(frame)[output], ref) for frame, ref in items]
        if validations is not None and len(psnrs) == len(val_frames):
            validations.append(psnrs)
        return score(psnrs, budget), psnrs

    validation = nncf.Dataset(list(zip(val_frames, val_refs, strict=True)), lambda item: item[0])
    return nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(calib_arrays),
        validation,
        validate,
        max_drop=PSNR_CAP_DB - budget["psnr_mean_db"],
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(calib_arrays),
        ignored_scope=scope,
        model_type=nncf.ModelType.TRANSFORMER if preset.model_type_transformer else None,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=max_iterations, ranking_subset_size=len(val_frames)
        ),
    )
