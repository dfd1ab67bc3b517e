"""Calibrate INT8 ranges on crops, then apply them to the full frame: the stage's memory bound.

NNCF collects statistics by running the model with an extra output at every quantizer, which
keeps every activation of the frame alive: IAT at 1080x1920 peaked at 9.1 GB with 2 frames and
19 GB in the stage (the issue's limit is 4 GB). INT8 ranges are per tensor or per channel, not
per pixel, so they can be measured on crops of the full-size frames at their own scale (same
noise, same local contrast) through a dynamic-H/W export of the same model, whose quantized IR
is then reshaped to the deployment size. The result is checked like any other INT8 model: on the
eval frames, at full size, against the PyTorch FP32 output.
"""

from __future__ import annotations

import logging

import numpy as np

from export.core import Context
from lowlight_edge.plan import PrecisionPlan
from quantize import ptq
from quantize.inputs import export_at, full_size_calibration, ov_model
from runtimes.backend_openvino import BACKEND as openvino

log = logging.getLogger(__name__)

CROPS_PER_FRAME = 2


def crops(frames: list[np.ndarray], size: tuple[int, int], multiple: int, seed: int = 0) -> list[np.ndarray]:
    """CROPS_PER_FRAME crops of ``size`` from each NCHW frame, offsets on the size multiple.

    The first crop of a frame is centred on its brightest pixel (as far as the frame and the grid allow):
    a light-source scene's lamps cover a few percent of the frame, and random crops alone would
    leave the highlights that set the widest INT8 ranges out of the statistics (issue 17). The
    others are seeded random crops. Keeping offsets on the model's size multiple keeps a Bayer
    mosaic's colour phase.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for frame in frames:
        height, width = frame.shape[-2:]
        y, x = np.unravel_index(int(np.argmax(frame.max(axis=tuple(range(frame.ndim - 2))))), (height, width))
        top = min(max(0, int(y) - h // 2), height - h) // multiple * multiple
        left = min(max(0, int(x) - w // 2), width - w) // multiple * multiple
        out.append(np.ascontiguousarray(frame[..., top : top + h, left : left + w]))
        for _ in range(CROPS_PER_FRAME - 1):
            top = int(rng.integers(0, height - h + 1)) // multiple * multiple
            left = int(rng.integers(0, width - w + 1)) // multiple * multiple
            out.append(np.ascontiguousarray(frame[..., top : top + h, left : left + w]))
    return out


def align_names(static: list[tuple[str, str]], dynamic: list[tuple[str, str]]) -> dict[str, str] | None:
    """Static-graph compute node name -> the same node's name in the dynamic graph, or None.

    Both exports trace the same ops in the same order, but the exporter numbers some nodes
    differently when shapes are symbolic, so nodes are matched by position and op type.
    """
    if len(static) != len(dynamic) or any(a[1] != b[1] for a, b in zip(static, dynamic, strict=True)):
        return None
    return {a[0]: b[0] for a, b in zip(static, dynamic, strict=True)}


def graph_mapping(ctx: Context, dctx: Context) -> dict[str, str] | None:
    """Compute node names of ctx's simplified graph -> dctx's, or None if they do not align.

    Matched by position in the simplified graphs (which hold onnxsim's fused nodes too), and
    cross-checked against the exporter's trace order, which onnxsim cannot have reordered.
    """
    def files(c: Context):
        return c.model_dir / c.records["onnx"].path, c.model_dir / c.records["simplified"].path

    def compute(c: Context):
        return [(n.name, n.op) for n in ptq.graph_nodes(*files(c)) if n.op in ptq.COMPUTE_OPS]

    mapping = align_names(compute(ctx), compute(dctx))
    traced = align_names(ptq.execution_order(*files(ctx)), ptq.execution_order(*files(dctx)))
    if mapping is None or traced is None or any(mapping.get(k) != v for k, v in traced.items()):
        return None
    return mapping


def quantize_from_crops(ctx: Context, float_names: list[str], plan: PrecisionPlan, size: tuple[int, int]):
    """(the full-size INT8 OpenVINO model, what calibrated it), ranges from crops of ``size``; or None.

    None when the model's graph cannot take dynamic H/W or the two graphs do not align; the
    caller then calibrates at full size.
    """
    if not ctx.spec.dynamic_hw:
        log.info("%s: calibrating at full size (%s)", ctx.spec.name, ctx.spec.dynamic_hw_reason)
        return None
    dctx = export_at(ctx, size, dynamic=True, folder=".calibrate")
    mapping = graph_mapping(ctx, dctx)
    if mapping is None:
        log.warning("%s: static and dynamic graphs differ; calibrating at full size", ctx.spec.name)
        return None
    frames = full_size_calibration(ctx)
    info = {"full_size_images": len(frames), "ranges_from": f"{len(frames) * CROPS_PER_FRAME} crops of {size[0]}x{size[1]}"}
    calib = crops(frames, size, ctx.spec.size_multiple)
    del frames
    scope = ptq.ignored_scope([mapping[name] for name in float_names], plan.float_op_types)
    int8 = ptq.quantize_ov(ov_model(dctx), calib, scope, ctx.spec.preset)
    openvino.reshape(int8, ctx.input_shape)
    return int8, info
