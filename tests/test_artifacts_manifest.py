"""MANIFEST.json of a built artifacts folder is complete: files exist, sha256 match, all models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from export.collect import collect, verify
from lowlight_edge.errors import CheckFailed


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = request.config.getoption("--artifacts")
    if not folder:
        pytest.skip("no --artifacts folder given (the CI artifacts step passes one)")
    return Path(folder)


def test_manifest_complete(artifacts: Path) -> None:
    from lowlight_edge import zoo

    everything = zoo.list_models()
    manifest = verify(artifacts, expected_models={"x86-cpu": everything, "desktop-gpu": everything})
    stages = {f["stage"] for f in manifest["files"]}
    assert {"onnx", "simplify", "engine"} <= stages
    for f in manifest["files"]:
        if f["stage"] in ("onnx", "simplify", "engine") and f["precision"] == "fp32" and f["path"].endswith((".onnx", ".xml")):
            assert f["fidelity"]["psnr_db"]["min"] >= 60, f["path"]  # the float graph, in f32
            if "as_shipped" in f["fidelity"]:  # float layers in BF16 by the quantize stage's decision: the budget
                assert f["fidelity"]["as_shipped"]["psnr_db"]["min"] >= 38, f["path"]
    engines = {(f["model"], f["precision"]) for f in manifest["files"] if f["path"].endswith(".engine")}
    for model in everything:  # a real TensorRT-RTX engine for every model, built without a GPU
        assert (model, "fp16") in engines, model


def test_verify_catches_tampering(tmp_path: Path) -> None:
    folder = tmp_path / "x86-cpu" / "m"
    folder.mkdir(parents=True)
    (folder / "m.onnx").write_bytes(b"model")
    digest = hashlib.sha256(b"model").hexdigest()
    (folder / "manifest.json").write_text(
        '{"model": "m", "target": "x86-cpu", "versions": {}, "files": '
        f'[{{"path": "m.onnx", "stage": "onnx", "precision": "fp32", "sha256": "{digest}", "bytes": 5}}]}}'
    )
    collect(tmp_path)
    verify(tmp_path, expected_models=["m"])
    (folder / "m.onnx").write_bytes(b"tampered")
    with pytest.raises(CheckFailed, match="sha256 mismatch"):
        verify(tmp_path)
    with pytest.raises(CheckFailed, match="no artifacts for other"):
        (folder / "m.onnx").write_bytes(b"model")
        verify(tmp_path, expected_models=["m", "other"])
