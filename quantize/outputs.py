"""What the quantize stage writes: the precision plan, and the INT8 artifact when INT8 ships.

OpenVINO targets get the INT8 IR (same layout and sidecar as every IR); TensorRT targets get a
QDQ ONNX made with the same plan, which itself must meet the budget or the float engine ships.
"""

from __future__ import annotations

from export.core import Context, FileRecord
from lowlight_edge.errors import CheckFailed
from lowlight_edge.plan import PrecisionPlan, save_plan
from quantize.inputs import budget_of
from quantize.qdq import write_qdq_onnx
from runtimes.backend_openvino import BACKEND as openvino


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
        try:
            records += write_qdq_onnx(ctx, plan, budget_of(ctx))
        except CheckFailed as err:  # the QDQ ONNX itself decides: the float engine ships
            plan.decision, plan.reason = "fp32", str(err)
            save_plan(plan, plan_path)
            records = [FileRecord(plan_path.name, "quantize", plan.decision, "plan", notes=[plan.reason])]
            ctx.notes.append(f"INT8 not shipped: {plan.reason} (see precision_plan.yaml)")
    return [r.fill_digest(ctx.model_dir) if not r.sha256 else r for r in records]


def save_int8_ir(ctx: Context, int8_model, plan: PrecisionPlan) -> list[FileRecord]:
    """openvino/int8/model.xml + .bin + sidecar: the layout of the FP32 IR in openvino/fp32/."""
    meta = {
        "source": ctx.records["simplified"].path,
        "source_sha256": ctx.records["simplified"].sha256,
        "plan": "precision_plan.yaml",
        "quantizer": "nncf",
    }
    options = plan.runtime.get("options", {}).get("int8")
    if options is not None:  # decided by the search on this host; every OpenVINO runner applies them
        meta["runtime_options"] = options
        meta["runtime_options_decided"] = {"by": "quantize stage (precision_plan.yaml)", "host": plan.runtime.get("host", {})}
    artifact = openvino.save(int8_model, ctx.model_dir / "openvino" / "int8", "int8", meta)
    xml = artifact.path.relative_to(ctx.model_dir).as_posix()
    fid = plan.fidelity["eval"]
    notes = [f"plan: precision_plan.yaml ({len(plan.float_nodes)} float nodes)", f"calibration {plan.calibration['hash'][:16]}"]
    return [
        FileRecord(xml, "quantize", "int8", "ir_int8", fidelity=fid, notes=notes).fill_digest(ctx.model_dir),
        FileRecord(xml[:-4] + ".bin", "quantize", "int8", "ir_int8_bin").fill_digest(ctx.model_dir),
        FileRecord(xml + ".json", "quantize", "int8", "ir_int8_json").fill_digest(ctx.model_dir),
    ]
