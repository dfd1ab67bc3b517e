"""The export pipeline at small resolutions: manifest, caching, atomic writes and each model's hazard."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from export.cli import main as export_main
from export.config import ExportRequest
from export.pipeline import export
from lowlight_edge.errors import CheckFailed, UsageError


def run(tmp_path: Path, model: str, resolution, until: str = "simplify", **kw) -> dict:
    request = ExportRequest(model=model, resolution=resolution, until=until, out=tmp_path, verify_images=2, **kw)
    return json.loads(export(request, progress=False).read_text())


def test_manifest_records_every_file_with_fidelity(tmp_path: Path) -> None:
    manifest = run(tmp_path, "tinydce", (48, 72))
    assert manifest["model"] == "tinydce" and manifest["target"] == "x86-cpu"
    assert manifest["input_shape"] == {"static": [1, 3, 48, 72]}
    assert manifest["weights"]["sha256"].startswith("1f6f6976")
    assert {"torch", "onnx", "onnxsim", "onnxruntime", "openvino", "nncf", "python"} <= set(manifest["versions"])
    stages = [f["stage"] for f in manifest["files"]]
    assert stages == ["onnx", "simplify"]
    for f in manifest["files"]:
        assert (tmp_path / "x86-cpu" / "tinydce" / f["path"]).stat().st_size == f["bytes"]
        assert f["fidelity"]["psnr_db"]["min"] >= 60 and f["fidelity"]["nonfinite"] == 0
    # two independent ONNX implementations: the raw export in OpenVINO, the simplified file (what ORT
    # and TensorRT consume) in ONNX Runtime (export.verify.ONNX_CHECKERS)
    assert [f["fidelity"]["runtime"] for f in manifest["files"]] == ["openvino", "onnxruntime"]
    assert set(manifest["stages"]) == {"onnx", "simplify"}
    assert manifest["preflight"]["seconds"] >= manifest["preflight"]["references_seconds"] >= 0
    for run_info in manifest["stages"].values():
        assert run_info["peak_rss_mb"] > 50 and run_info["seconds"] >= run_info["references_seconds"] >= 0


def test_stage_peak_is_the_stages_own() -> None:
    import numpy as np

    from lowlight_edge.memory import peak_rss_mb, reset_peak_rss

    ballast = np.ones(64 * 2**20, np.float32)  # 256 MB, then freed
    del ballast
    before = peak_rss_mb()
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow resetting the peak RSS (/proc/self/clear_refs)")
    assert peak_rss_mb() < before - 200


def test_rerun_reuses_outputs_and_a_changed_input_rebuilds(tmp_path: Path) -> None:
    run(tmp_path, "tinydce", (48, 72))
    onnx_file = tmp_path / "x86-cpu" / "tinydce" / "tinydce.onnx"
    first = onnx_file.stat().st_mtime_ns
    manifest_file = tmp_path / "x86-cpu" / "tinydce" / "manifest.json"
    before = manifest_file.read_bytes()
    again = run(tmp_path, "tinydce", (48, 72))
    assert onnx_file.stat().st_mtime_ns == first  # identical inputs: reused
    assert manifest_file.read_bytes() == before  # nothing rewritten: a read-only copy of it works too
    assert again["stages"]["onnx"]["peak_rss_mb"] > 50  # the figures of the run that built it
    manifest = run(tmp_path, "tinydce", (48, 96))
    assert onnx_file.stat().st_mtime_ns != first  # resolution changed: rebuilt
    assert manifest["input_shape"] == {"static": [1, 3, 48, 96]}


def test_failed_verification_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import export.verify

    monkeypatch.setattr(export.verify, "FP32_MIN_PSNR_DB", 200.0)
    with pytest.raises(CheckFailed, match="stage 'onnx'"):
        run(tmp_path, "tinydce", (48, 72), until="onnx")
    assert not (tmp_path / "x86-cpu").exists()  # not a file, not even the empty folders it made


def test_zero_dce_pp_dynamic_is_verified_at_other_sizes(tmp_path: Path) -> None:
    manifest = run(tmp_path, "zero_dce_pp", (48, 72), dynamic=True)
    fid = manifest["files"][-1]["fidelity"]
    assert len(fid["other_resolutions"]) == 2
    assert all(v["min"] >= 60 for v in fid["other_resolutions"].values())
    graph = onnx.load(str(tmp_path / "x86-cpu" / "zero_dce_pp" / "zero_dce_pp.sim.onnx")).graph
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    modes = {a.s.decode() for n in resizes for a in n.attribute if a.name == "coordinate_transformation_mode"}
    assert {"align_corners"} <= modes  # the curve-map upsample keeps align_corners=True


def test_size_multiple_is_refused_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lowlight_edge.console import run_main

    code = run_main(export_main, ["zero_dce_pp", "--resolution", "50x70", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "multiples of 12" in err and "--resolution 48x60" in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_model_suggests(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lowlight_edge.console import run_main

    assert run_main(export_main, ["iat_studnet", "--out", str(tmp_path)]) == 2
    assert "iat_student" in capsys.readouterr().err


def test_iat_student_onnx_stays_small(tmp_path: Path) -> None:
    run(tmp_path, "iat_student", (64, 96), until="onnx")
    path = tmp_path / "x86-cpu" / "iat_student" / "iat_student.onnx"
    graph = onnx.load(str(path)).graph
    assert path.stat().st_size < 1_000_000
    assert sum(n.op_type in ("Gather", "GatherND") for n in graph.node) < 10  # not the 84-Gather unrolling


def test_llpacknet_exports_without_6d_tensors(tmp_path: Path) -> None:
    run(tmp_path, "llpacknet", (64, 96))
    model = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "x86-cpu" / "llpacknet" / "llpacknet.sim.onnx")))
    ranks = [len(v.type.tensor_type.shape.dim) for v in model.graph.value_info]
    assert max(ranks) <= 5
    ops = {n.op_type for n in model.graph.node}
    assert "DepthToSpace" in ops and not ({"ReduceL2"} & ops)  # unpacking as DepthToSpace, weight norm folded


def test_iat_dynamic_batch_is_correct() -> None:
    import numpy as np
    import torch

    from lowlight_edge import zoo

    model = zoo.get_model("iat")
    a, b = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48) * 0.2
    with torch.inference_mode():
        both = model(torch.cat([a, b]))
        assert np.allclose(both[0:1].numpy(), model(a).numpy(), atol=1e-5)
        assert np.allclose(both[1:2].numpy(), model(b).numpy(), atol=1e-5)


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--until"):
        ExportRequest(model="tinydce", until="deploy").validate()
    with pytest.raises(UsageError, match="opset"):
        ExportRequest(model="tinydce", opset=3).validate()
