"""INT8 QDQ ONNX for TensorRT targets, quantized by NNCF's ONNX backend with the precision plan.

The plan's float nodes and the preset's non-quantized op types become the ignored scope, so the
QuantizeLinear/DequantizeLinear pairs sit exactly where the OpenVINO INT8 IR has FakeQuantize.
Activations and weights are symmetric (PERFORMANCE preset), weights per channel, as TensorRT
expects for explicit quantization.
"""

from __future__ import annotations

from common.atomic import atomic_path
from export.stages import Context, FileRecord
from export.verify import verify_onnx
from quantize.plan import PrecisionPlan
from quantize.presets import preset_for


def write_qdq_onnx(ctx: Context, plan: PrecisionPlan) -> list[FileRecord]:
    import nncf
    import onnx

    from quantize.calibration import load_calibration
    from quantize.ptq import quiet_nncf

    quiet_nncf()
    preset = preset_for(ctx.spec.name)
    calib = load_calibration(
        ctx.request.calib_folder,
        ctx.spec,
        ctx.resolution,
        size=plan.calibration["images"],
        seed=0,
        max_mean=ctx.request.calib_max_mean,
    )
    types = sorted({op for op in ("Mul", "Add", "Sub", "Div", "Pow", "MatMul", "Gemm") if op not in preset.quantize_ops})
    scope = nncf.IgnoredScope(names=plan.float_names, types=types, validate=False)
    model = onnx.load(str(ctx.model_dir / ctx.records["simplified"].path))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(calib.arrays),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(calib.arrays),
        ignored_scope=scope,
    )
    name = f"{ctx.spec.name}.int8.qdq.onnx"
    with atomic_path(ctx.model_dir / name) as tmp:
        onnx.save(quantized, str(tmp))
        fid = verify_onnx(tmp, ctx.frames(), ctx.references())
    notes = [
        "QDQ for TensorRT explicit quantization; ONNX Runtime fidelity shown, TensorRT's may differ slightly",
        f"plan: precision_plan.yaml ({len(plan.float_nodes)} float nodes)",
    ]
    return [FileRecord(name, "quantize", "int8", "qdq_onnx", fidelity=fid, notes=notes).fill_digest(ctx.model_dir)]
