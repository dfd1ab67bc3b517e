"""``python -m runtimes enhance``: real artifacts built here, a real eval image, PNGs checked by pixel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlight_edge import zoo
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
    return zoo.get_model("tinydce")


def write_manifest(folder: Path, model: str, files: list[Path]) -> None:
    """manifest.json as python -m export writes it (the parts enhance reads): model, weights, input, files."""
    spec = zoo.get_spec(model)
    manifest = {
        "model": model,
        "weights": zoo.weights_info(model, "default"),
        "input": {"kind": spec.input_kind, "size_multiple": spec.size_multiple, "scale_factor": spec.scale_factor},
        "files": [{"path": f.relative_to(folder).as_posix()} for f in files],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


def static_artifacts(model: torch.nn.Module, name: str, size: tuple[int, int], out: Path) -> dict[str, Path]:
    """``model`` at a static size: the ONNX file, its IR under openvino/fp32/ when OpenVINO is here, a manifest."""
    out.mkdir(parents=True, exist_ok=True)
    onnx_file = out / f"{name}.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, *size),), str(onnx_file), dynamo=True, verbose=False)
    found = {"onnx": onnx_file}
    openvino = get_backend("openvino")
    if openvino.is_available()[0]:
        found["xml"] = openvino.build(onnx_file, BuildConfig(), out / "openvino" / "fp32").path
    write_manifest(out, name, list(found.values()))
    return found


@pytest.fixture(scope="module")
def artifacts(tinydce: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TinyDCE at a static 48x72: the ONNX file and, when OpenVINO is here, its IR (laid out as exported)."""
    return static_artifacts(tinydce, "tinydce", (H, W), tmp_path_factory.mktemp("artifacts"))


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
    # the overlap measured for TinyDCE (ModelSpec.tiling), found through the manifest two folders up
    assert "tiling 512x512 into 104 tiles of 48x72 with 6 px overlap (measured for tinydce)" in printed
    seam = next(line for line in printed.splitlines() if "seam PSNR" in line)
    assert "PyTorch FP32 tinydce (default weights) with the same 104 tiles (6 px overlap) vs on the whole 512x512 frame" in seam
    assert seam_db(seam) == 99.0  # exact: the cap of lowlight_edge.metrics.psnr
    assert artifact_db(seam) >= 70.0  # the IR's own float drift
    written = tmp_path / "sice_101_0.png"
    result = read_rgb(written)
    image = read_rgb(image_path)
    assert result.shape == image.shape
    # TinyDCE is local (receptive field 3 px), so seams at the middle of 6 px overlaps are exact
    expected = quantize_8bit(eager(tinydce, image)).astype(np.float32) / 255.0
    assert psnr(result, expected) > 40.0
    assert np.abs(result - expected).max() <= 1 / 255 + 1e-6


def seam_db(line: str) -> float:
    return float(line.split("seam PSNR ")[1].split(" dB")[0])


def artifact_db(line: str) -> float:
    return float(line.split("output vs that whole frame: ")[1].split(" dB")[0])


@pytest.mark.openvino
def test_zero_dce_pp_tiles_of_a_1080p_photo_have_no_seam(eval_dir: Path, tmp_path: Path, capsys) -> None:
    """The issue's case: a 1920x1080 photo through a static 396x600 IR. Before: 12 tiles, 32 px overlap,
    offsets not on the 12 px grid of the curve net: 56 dB, a step of 8 levels (18 on other photos)."""
    if not get_backend("openvino").is_available()[0]:
        pytest.skip(f"openvino not available: {get_backend('openvino').is_available()[1]}")
    model = zoo.get_model("zero_dce_pp")
    xml = static_artifacts(model, "zero_dce_pp", (396, 600), tmp_path / "art")["xml"]
    photo = eval_dir / "sice_126_0.png"  # 1920x1080 (portrait)
    rc = cli.main(["enhance", str(xml), str(photo), "--out", str(tmp_path / "out"), "--threads", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "tiling 1920x1080 into 27 tiles of 396x600 with 192 px overlap (measured for zero_dce_pp), offsets multiples of 12" in printed
    seam = next(line for line in printed.splitlines() if "seam PSNR" in line)
    assert "with the same 27 tiles (192 px overlap) vs on the whole 1920x1080 frame" in seam
    assert seam_db(seam) >= 60.0 and artifact_db(seam) >= 60.0
    result = read_rgb(tmp_path / "out" / "sice_126_0.png")
    expected = quantize_8bit(eager(model, read_rgb(photo))).astype(np.float32) / 255.0
    assert psnr(result, expected) >= 60.0
    assert np.abs(result - expected).max() <= 3 / 255 + 1e-6  # no visible step

    # A 512x512 photo must be padded to 600 px wide: reflected content near its right edge moves
    # the curve map (47.8 dB, 19 levels off), so it is not written.
    small = eval_dir / "sice_101_0.png"
    rc = run_main(cli.main, ["enhance", str(xml), str(small), "--out", str(tmp_path / "out"), "--threads", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "after padding to 504x600 cost" in err and "below the 50 dB seam budget" in err and "--dynamic" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sice_126_0.png"]


def test_whole_image_statistics_models_are_not_tiled(image_path: Path, tmp_path: Path, capsys) -> None:
    """IAT's and the student's gamma/colour come from the whole image: tiles cannot be exact, so refuse."""
    onnx_file = tmp_path / "iat_student.onnx"
    model = zoo.get_model("iat_student")
    torch.onnx.export(model, (torch.rand(1, 3, H, W),), str(onnx_file), dynamo=True, verbose=False)
    out = tmp_path / "out"
    rc = run_main(cli.main, ["enhance", str(onnx_file), str(image_path), "--out", str(out), "--model", "iat_student"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "iat_student cannot run sice_101_0.png (512x512) as tiles of its 48x72 input exactly" in err
    assert "whole image" in err and "--dynamic" in err and "--resolution 512x512" in err
    assert not out.exists()


def test_tiles_for_an_unknown_model_are_refused(artifacts, image_path: Path, tmp_path: Path, capsys) -> None:
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(artifacts["onnx"].read_bytes())  # no manifest beside it: which model is it?
    data = artifacts["onnx"].with_name(artifacts["onnx"].name + ".data")
    if data.exists():
        (tmp_path / data.name).write_bytes(data.read_bytes())
    rc = run_main(cli.main, ["enhance", str(bare), str(image_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "no manifest.json says which model it is" in err and "--model" in err
    rc = run_main(cli.main, ["enhance", str(bare), str(image_path), "--out", str(tmp_path / "out"), "--model", "tinydce"])
    assert rc == 0 and "with 6 px overlap (measured for tinydce)" in capsys.readouterr().out


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
