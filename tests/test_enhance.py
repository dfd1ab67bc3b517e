"""``python -m runtimes enhance``: real artifacts built here, a real eval image, PNGs checked by pixel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlight_edge.console import run_main
from lowlight_edge.images import quantize_8bit, read_rgb
from runtimes import BuildConfig, cli, get_backend
from runtimes.enhance import _owned, run_tiled, tile_starts

H, W = 48, 72
IMAGE = "sice_101_0.png"  # 512x512, under-exposed


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def tinydce() -> torch.nn.Module:
    from lowlight_edge import zoo

    return zoo.get_model("tinydce")


@pytest.fixture(scope="module")
def artifacts(tinydce: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TinyDCE at a static 48x72: the ONNX file and, when OpenVINO is here, its IR."""
    out = tmp_path_factory.mktemp("artifacts")
    onnx_file = out / "tinydce.onnx"
    torch.onnx.export(tinydce, (torch.rand(1, 3, H, W),), str(onnx_file), dynamo=True, verbose=False)
    found = {"onnx": onnx_file}
    openvino = get_backend("openvino")
    if openvino.is_available()[0]:
        found["xml"] = openvino.build(onnx_file, BuildConfig(), out / "ir").path
    return found


@pytest.fixture(scope="module")
def image_path(eval_dir: Path) -> Path:
    return eval_dir / IMAGE


def eager(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None])))
    return out[0].numpy().transpose(1, 2, 0)


def test_tiles_cover_the_image_and_stitch_exactly() -> None:
    for length, tile, overlap in ((512, 48, 12), (512, 72, 12), (73, 72, 12), (72, 72, 0), (1000, 100, 32)):
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(
            b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False)
        )  # at least `overlap` shared
        owned = _owned(starts, tile, length)
        assert owned[0][0] == 0 and owned[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(owned, owned[1:], strict=False))
        assert all(s <= a and b <= s + tile for s, (a, b) in zip(starts, owned, strict=False))
    x = np.random.default_rng(0).random((1, 2, 100, 130), dtype=np.float32)
    np.testing.assert_array_equal(run_tiled(lambda t: t * 2, x, (48, 72), 12), x * 2)


@pytest.mark.openvino
def test_enhance_tiles_an_ir(artifacts, image_path: Path, tinydce, tmp_path: Path, capsys) -> None:
    if "xml" not in artifacts:
        pytest.skip(f"openvino not available: {get_backend('openvino').is_available()[1]}")
    rc = cli.main(
        ["enhance", str(artifacts["xml"]), str(image_path), "--out", str(tmp_path), "--threads", "2"]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "tiling 512x512 into 126 tiles of 48x72 with 12 px overlap" in printed
    written = tmp_path / "sice_101_0.png"
    result = read_rgb(written)
    image = read_rgb(image_path)
    assert result.shape == image.shape
    # TinyDCE is local (receptive field 3 px), so seams at the middle of 12 px overlaps are exact
    expected = quantize_8bit(eager(tinydce, image)).astype(np.float32) / 255.0
    assert psnr(result, expected) > 40.0
    assert np.abs(result - expected).max() <= 1 / 255 + 1e-6


def test_enhance_resize_mode_with_onnxruntime(artifacts, image_path: Path, tmp_path: Path, capsys) -> None:
    rc = cli.main(
        ["enhance", str(artifacts["onnx"]), str(image_path), "--out", str(tmp_path), "--mode", "resize"]
    )
    assert rc == 0
    assert (
        "resizing 512x512 to 48x72 (the artifact's static input) and the result back to 512x512"
        in capsys.readouterr().out
    )
    assert read_rgb(tmp_path / "sice_101_0.png").shape == (512, 512, 3)


def test_enhance_dynamic_artifact_crops_to_the_manifest_multiple(
    image_path: Path, tmp_path: Path, capsys
) -> None:
    from lowlight_edge import zoo

    model = zoo.get_model("zero_dce_pp")
    art = tmp_path / "artifact"
    art.mkdir()
    onnx_file = art / "model.onnx"
    dims = ({2: torch.export.Dim("H"), 3: torch.export.Dim("W")},)
    torch.onnx.export(
        model, (torch.rand(1, 3, H, W),), str(onnx_file), dynamo=True, dynamic_shapes=dims, verbose=False
    )
    (art / "manifest.json").write_text(json.dumps({"input": {"size_multiple": 12}}))
    rc = cli.main(["enhance", str(onnx_file), str(image_path), "--out", str(tmp_path / "out")])
    assert rc == 0
    assert "cropping 512x512 to 504x504 (H and W must be multiples of 12)" in capsys.readouterr().out
    result = read_rgb(tmp_path / "out" / "sice_101_0.png")
    expected = quantize_8bit(eager(model, read_rgb(image_path)[:504, :504])).astype(np.float32) / 255.0
    assert result.shape == (504, 504, 3) and psnr(result, expected) > 40.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["enhance", "/no/such/model.xml", "IMAGE", "--out", "OUT"],
            "artifact /no/such/model.xml does not exist",
        ),
        (
            ["enhance", "ONNX", "/no/such/image.png", "--out", "OUT"],
            "input /no/such/image.png does not exist",
        ),
        (["enhance", "ONNX", "IMAGE", "--out", "OUT", "--amp", "100"], "--amp applies to RAW inputs only"),
        (
            ["enhance", "ONNX", "IMAGE", "--out", "OUT", "--backend", "torch"],
            "torch backend loads an nn.Module or a zoo name",
        ),
    ],
)
def test_bad_requests_exit_2_with_one_line(
    args, message, artifacts, image_path: Path, tmp_path: Path, capsys
) -> None:
    subs = {"ONNX": str(artifacts["onnx"]), "IMAGE": str(image_path), "OUT": str(tmp_path)}
    rc = run_main(cli.main, [subs.get(a, a) for a in args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not list(tmp_path.glob("*.png"))


def test_list_prints_every_backend(capsys) -> None:
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["torch", "onnxruntime", "openvino", "tensorrt[rtx]", "tensorrt[tensorrt]"]
    assert lines[0].split()[1] == "yes"
    rtx = lines[3]  # both TensorRT flavours, each with what it can do here
    assert rtx.split()[1] == "yes" and "build: yes" in rtx and "run:" in rtx
