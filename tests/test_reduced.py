"""Calibrating on crops and applying the ranges to the full frame (the quantize stage's memory bound)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.config import ExportRequest
from export.core import Context
from export.simplify import SimplifyOnnx
from export.to_onnx import ExportOnnx
from lowlight_edge import zoo
from lowlight_edge.metrics import frame_psnr
from lowlight_edge.plan import PrecisionPlan
from lowlight_edge.targets import get_target
from quantize.crops import CROPS_PER_FRAME, align_names, crops


def test_crops_are_seeded_in_bounds_and_on_the_size_multiple() -> None:
    frames = [np.random.default_rng(i).random((1, 1, 96, 160), dtype=np.float32) for i in range(3)]
    out = crops(frames, (32, 48), multiple=16, seed=0)
    assert len(out) == 3 * CROPS_PER_FRAME and all(c.shape == (1, 1, 32, 48) for c in out)
    again = crops(frames, (32, 48), multiple=16, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))
    for i, crop in enumerate(out):  # each crop sits in its frame at offsets that are multiples of 16
        frame = frames[i // CROPS_PER_FRAME][0, 0]
        hits = [(t, x) for t in range(0, 96 - 32 + 1, 16) for x in range(0, 160 - 48 + 1, 16)
                if np.array_equal(frame[t : t + 32, x : x + 48], crop[0, 0])]
        assert hits


def test_names_align_by_position_and_op_only() -> None:
    static = [("a", "Conv"), ("b", "MatMul")]
    assert align_names(static, [("x", "Conv"), ("y", "MatMul")]) == {"a": "x", "b": "y"}
    assert align_names(static, [("x", "Conv"), ("y", "Conv")]) is None
    assert align_names(static, [("x", "Conv")]) is None


def test_ranges_from_crops_hold_on_the_full_frame(tmp_path: Path) -> None:
    import openvino as ov

    from quantize.crops import quantize_from_crops

    request = ExportRequest(model="tinydce", resolution=(96, 144), out=tmp_path, verify_images=2, calib_size=4)
    ctx = Context(request, get_target("x86-cpu", None))
    for stage in (ExportOnnx(), SimplifyOnnx()):
        for record in stage(ctx):
            ctx.records[record.role] = record
    plan = PrecisionPlan("tinydce", "x86-cpu", "fp32", "", {}, quantize_ops=list(zoo.get_spec("tinydce").preset.quantize_ops))
    int8, info = quantize_from_crops(ctx, [], plan, (48, 72))
    assert info["ranges_from"] == f"{4 * CROPS_PER_FRAME} crops of 48x72"
    assert list(int8.inputs[0].get_partial_shape().to_shape()) == [1, 3, 96, 144]
    assert any(op.get_type_name() == "FakeQuantize" for op in int8.get_ops())
    compiled = ov.Core().compile_model(int8, "CPU")
    psnrs = [frame_psnr(compiled(f)[0], r) for f, r in zip(ctx.frames(), ctx.references(), strict=True)]
    assert min(psnrs) > 40  # tinydce INT8 calibrated on full frames reaches about 65 dB
