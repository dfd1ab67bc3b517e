"""The desktop-gpu export end to end, with TensorRT-RTX's real builder on a CPU-only machine.

The plan round-trips from the quantize stage into the engine stage, the QDQ ONNX is checked node
by node (signed INT8 only, what TensorRT's parser takes without saturating), the FP16 ONNX keeps
FP32 I/O, and no CPU runtime is timed to decide for the GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from export.config import ExportRequest
from export.pipeline import export


@pytest.fixture(scope="module")
def gpu_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gpu")
    request = ExportRequest(model="tinydce", resolution=(64, 96), target="desktop-gpu", out=out, verify_images=2)
    manifest = json.loads(export(request, progress=False).read_text())
    return out / "desktop-gpu" / "tinydce", manifest


def test_desktop_gpu_writes_real_engines_with_sidecars(gpu_export: tuple[Path, dict]) -> None:
    folder, manifest = gpu_export
    files = {f["role"]: f for f in manifest["files"]}
    assert {"plan", "qdq_onnx", "fp16_onnx", "engine_int8", "engine_fp16", "engine_int8_json", "engine_fp16_json"} <= set(files)
    for precision, source in (("int8", "qdq_onnx"), ("fp16", "fp16_onnx")):
        engine = files[f"engine_{precision}"]
        assert (folder / engine["path"]).stat().st_size == engine["bytes"] > 10_000
        side = json.loads((folder / files[f"engine_{precision}_json"]["path"]).read_text())
        assert side["builder"].startswith("tensorrt_rtx") and side["precision"] == precision
        assert side["fields"]["onnx_sha256"] == files[source]["sha256"]
        assert side["fields"]["plan_sha256"] == files["plan"]["sha256"]
        assert side["fields"]["workspace_mb"] == 4096  # targets.yaml's workspace_mb reaches the builder
        fid = engine["fidelity"]
        assert fid["psnr_db"]["min"] >= 38 and "not run" in fid["numerics"]


def test_gpu_ship_rule_is_fidelity_only(gpu_export: tuple[Path, dict]) -> None:
    import yaml

    folder, _ = gpu_export
    plan = yaml.safe_load((folder / "precision_plan.yaml").read_text())
    assert plan["decision"] == "int8" and "fidelity alone" in plan["reason"]
    assert "fp32" not in plan["latency_ms"] and "unmeasured" in plan["latency_ms"]


def test_qdq_onnx_is_signed_symmetric_int8_node_by_node(gpu_export: tuple[Path, dict]) -> None:
    folder, manifest = gpu_export
    path = next(f["path"] for f in manifest["files"] if f["role"] == "qdq_onnx")
    model = onnx.load(str(folder / path))
    inits = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zp = inits[node.input[2]]
        assert zp.data_type == TensorProto.INT8, node.name  # NNCF wrote UINT8 here before
        assert not np.any(numpy_helper.to_array(zp))
    weight_dq = [n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weight_dq and all(numpy_helper.to_array(inits[n.input[1]]).ndim == 1 for n in weight_dq)  # per channel
    for node in model.graph.node:  # bias stays float: an int32 bias DequantizeLinear is refused
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            assert inits[node.input[0]].data_type == TensorProto.INT8


def test_qdq_onnx_is_judged_in_openvino_which_agrees_with_onnx_runtime(gpu_export: tuple[Path, dict], eval_dir: Path) -> None:
    """The QDQ ONNX's figures come from OpenVINO (quantize.qdq.QDQ_CHECKER, 8x faster on IAT); ONNX
    Runtime running the same file on the same real eval frames gives the same image."""
    import runtimes
    from export.verify import ONNX_CHECKERS
    from lowlight_edge import zoo
    from lowlight_edge.datasets import eval_frames
    from lowlight_edge.metrics import psnr

    folder, manifest = gpu_export
    record = next(f for f in manifest["files"] if f["role"] == "qdq_onnx")
    assert record["fidelity"]["runtime"] == "openvino" and "OpenVINO on this CPU" in record["fidelity"]["numerics"]
    engine = next(f for f in manifest["files"] if f["role"] == "engine_int8")
    assert "in OpenVINO on this CPU" in engine["fidelity"]["numerics"]
    frames = eval_frames(eval_dir, zoo.get_spec("tinydce"), (64, 96), size=4)
    outputs = {}
    for runtime in ("openvino", "onnxruntime"):
        with runtimes.get_backend(runtime).load(folder / record["path"], device="cpu", options=ONNX_CHECKERS[runtime]) as run:
            outputs[runtime] = [np.asarray(run(f), dtype=np.float32) for f in frames]
    for ov_out, ort_out in zip(outputs["openvino"], outputs["onnxruntime"], strict=True):
        assert psnr(ov_out, ort_out) >= 50.0


def test_signed_rewrite_keeps_values_above_half_range() -> None:
    """A UINT8 quantizer read as INT8 with the same scale saturates at 127*s; the rewrite does not."""
    import onnxruntime as ort
    from onnx import helper

    from quantize.qdq import to_signed_int8

    scale = numpy_helper.from_array(np.array(1 / 255, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.uint8), "z")
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [scale, zp],
        value_info=[helper.make_tensor_value_info("q", TensorProto.UINT8, [4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    assert to_signed_int8(model) == 1
    x = np.array([0.0, 0.25, 0.75, 1.0], np.float32)
    y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert np.abs(y - x).max() < 1 / 127  # 0.75 and 1.0 would come back as 0.498 with the same scale


def test_fp16_onnx_has_fp32_io_and_fp16_weights(gpu_export: tuple[Path, dict]) -> None:
    folder, manifest = gpu_export
    path = next(f["path"] for f in manifest["files"] if f["role"] == "fp16_onnx")
    model = onnx.load(str(folder / path))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)


def test_int8_not_shipped_builds_no_int8_engine(tmp_path: Path) -> None:
    request = ExportRequest(model="tinydce", resolution=(64, 96), target="desktop-gpu", out=tmp_path, verify_images=2, budget_db=98.0)
    manifest = json.loads(export(request, progress=False).read_text())
    roles = {f["role"] for f in manifest["files"]}
    assert "engine_int8" not in roles and "qdq_onnx" not in roles
    assert "engine_fp16" in roles  # fp16 is still built (the simplified ONNX is never built as int8)


def test_dynamic_gpu_export_builds_with_a_profile(tmp_path: Path) -> None:
    request = ExportRequest(model="tinydce", resolution=(64, 96), target="desktop-gpu", out=tmp_path, verify_images=1, dynamic=True, until="engine")
    manifest = json.loads(export(request, progress=False).read_text())
    folder = tmp_path / "desktop-gpu" / "tinydce"
    side = next(f for f in manifest["files"] if f["role"] == "engine_fp16_json")
    profile = json.loads((folder / side["path"]).read_text())["profile"]
    assert profile["opt"] == [1, 3, 64, 96] and profile["max"] == [1, 3, 128, 192]
