"""``runtimes enhance`` and ``read_rgb`` on hostile input: NaN outputs, 16-bit and odd PNGs, broken
artifacts, unwritable --out. Real checkpoints, a real eval photo, real ONNX Runtime / OpenVINO."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowlight_edge import zoo
from lowlight_edge.console import run_main
from lowlight_edge.errors import DataError
from lowlight_edge.images import read_rgb, to_nchw
from runtimes import BuildConfig, cli, get_backend

IMAGE = "sice_101_0.png"  # 512x512, under-exposed
REPO = Path(__file__).resolve().parents[1]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def photo(eval_dir: Path) -> Path:
    return eval_dir / IMAGE


@pytest.fixture(scope="module")
def photo16(photo: Path) -> np.ndarray:
    """The real photo as 16-bit samples: the 8-bit value in the high byte, a fixed pattern in the low byte."""
    rgb8 = np.asarray(Image.open(photo).convert("RGB"))[:64, :96].astype(np.uint16)
    low = np.random.default_rng(0).integers(0, 256, rgb8.shape, dtype=np.uint16)
    return rgb8 << 8 | low


# --- A minimal PNG writer (every filter type, so that the reader's unfiltering is exercised) ---------


def _filter_rows(data: np.ndarray, bpp: int) -> bytes:
    """PNG scanlines of ``data`` (rows of bytes), cycling the filters None, Sub, Up, Average, Paeth."""
    rows = data.astype(np.int32)
    out = []
    for y, row in enumerate(rows):
        kind = y % 5
        up = rows[y - 1] if y else np.zeros_like(row)
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        if kind == 0:
            pred = np.zeros_like(row)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = up
        elif kind == 3:
            pred = (left + up) // 2
        else:
            p = left + up - up_left
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        out.append(bytes([kind]) + ((row - pred) % 256).astype(np.uint8).tobytes())
    return b"".join(out)


def write_png16(path: Path, samples: np.ndarray) -> None:
    """A 16-bit PNG of HxW (grey), HxWx2 (grey+alpha), HxWx3 (RGB) or HxWx4 (RGBA) uint16 samples."""
    planes = 1 if samples.ndim == 2 else samples.shape[2]
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[planes]
    height, width = samples.shape[:2]
    data = np.ascontiguousarray(samples.astype(">u2")).view(np.uint8).reshape(height, width * planes * 2)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(_filter_rows(data, planes * 2)))
        + chunk(b"IEND", b"")
    )


# --- 3. read_rgb: 16-bit, RGBA, palette; a one-line error for what it cannot read faithfully ---------


def test_16bit_pngs_keep_every_bit(photo16: np.ndarray, tmp_path: Path) -> None:
    alpha = np.full(photo16.shape[:2], 65535, np.uint16)
    grey = photo16[..., 1]
    cases = {
        "rgb16": (photo16, photo16),
        "rgba16": (np.dstack([photo16, alpha]), photo16),
        "grey16": (grey, np.dstack([grey] * 3)),
        "grey_alpha16": (np.dstack([grey, alpha]), np.dstack([grey] * 3)),
    }
    for name, (samples, expected) in cases.items():
        path = tmp_path / f"{name}.png"
        write_png16(path, samples)
        got = read_rgb(path)
        assert got.dtype == np.float32 and got.shape == (64, 96, 3), name
        np.testing.assert_allclose(got, expected / 65535.0, rtol=0, atol=1e-7, err_msg=name)


def test_8bit_palette_and_rgba_read_like_rgb(photo: Path, tmp_path: Path) -> None:
    rgb = Image.open(photo).convert("RGB").crop((0, 0, 96, 64))
    palette = rgb.quantize(colors=200)  # mode P: colours from the palette
    palette.save(tmp_path / "palette.png")
    rgba = rgb.copy()
    rgba.putalpha(255)
    rgba.save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "palette.png"), np.asarray(palette.convert("RGB")) / np.float32(255))
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgba.png"), np.asarray(rgb) / np.float32(255))


def test_images_read_unfaithfully_are_one_line_errors(photo: Path, tmp_path: Path) -> None:
    rgb = Image.open(photo).convert("RGB").crop((0, 0, 96, 64))
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.asarray(rgb, dtype=np.float32)[..., 0] / 255).save(tmp_path / "float.tif")
    (tmp_path / "broken.png").write_bytes((photo.read_bytes())[:2000])
    for name in ("cmyk.jpg", "float.tif", "broken.png"):
        with pytest.raises(DataError) as info:
            read_rgb(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)


def test_enhance_reads_a_16bit_grey_png_instead_of_white(photo16: np.ndarray, tmp_path: Path, capsys) -> None:
    """Before: convert('RGB') clipped every 16-bit grey value above 255 to white."""
    grey = photo16[..., 1]
    src = tmp_path / "grey16.png"
    write_png16(src, grey)
    rc = run_main(cli.main, ["enhance", "tinydce", str(src), "--backend", "torch", "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    got = read_rgb(tmp_path / "out" / "grey16.png")
    x = np.repeat((grey / 65535.0).astype(np.float32)[..., None], 3, axis=2)
    with torch.inference_mode():
        ref = zoo.get_model("tinydce")(torch.from_numpy(to_nchw(x)))[0].numpy().transpose(1, 2, 0)
    assert np.abs(got - np.clip(ref, 0, 1)).max() <= 1 / 255 + 1e-6


# --- 2. NaN/Inf outputs are never written -----------------------------------------------------------


@pytest.fixture(scope="module")
def nan_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real TinyDCE with one NaN bias, exported with dynamic H/W: an artifact whose output is NaN.

    The bias is the last conv's (before tanh): OpenVINO's ReLU turns NaN into 0, so one in the first
    conv would be wiped out there, and not in ONNX Runtime.
    """
    model = zoo.get_model("tinydce")
    with torch.no_grad():
        model.e_conv3.point_conv.bias[0] = float("nan")
    path = tmp_path_factory.mktemp("nan") / "tinydce_nan.onnx"
    dims = ({2: torch.export.Dim("H"), 3: torch.export.Dim("W")},)
    torch.onnx.export(model, (torch.rand(1, 3, 48, 72),), str(path), dynamo=True, dynamic_shapes=dims, verbose=False)
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_non_finite_output_is_refused_and_nothing_written(
    backend: str, nan_onnx: Path, photo: Path, tmp_path: Path, capsys
) -> None:
    if not get_backend(backend).is_available()[0]:
        pytest.skip(f"{backend} not available")
    artifact = nan_onnx
    if backend == "openvino":
        artifact = get_backend("openvino").build(nan_onnx, BuildConfig(), tmp_path / "ir").path
    out = tmp_path / "out"
    rc = run_main(cli.main, ["enhance", str(artifact), str(photo), "--out", str(out), "--backend", backend])
    err = one_line_error(capsys)
    assert rc == 1
    assert "non-finite values" in err and str(artifact) in err and str(photo) in err and "rebuild" in err
    assert left_in(out) == []  # no PNG, no temporary file


# --- 4. broken artifacts: one line, exit 2 ----------------------------------------------------------


@pytest.fixture(scope="module")
def good_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("good") / "tinydce.onnx"
    torch.onnx.export(
        zoo.get_model("tinydce"), (torch.rand(1, 3, 48, 72),), str(path), dynamo=True, external_data=False, verbose=False
    )
    return path


@pytest.mark.parametrize("damage", ["truncated", "text", "empty", "png"])
def test_broken_onnx_is_one_line_exit_2(damage: str, good_onnx: Path, photo: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "model.onnx"
    body = good_onnx.read_bytes()
    bad.write_bytes(
        {"truncated": body[: len(body) // 3], "text": b"not an onnx file\n", "empty": b"", "png": photo.read_bytes()}[damage]
    )
    rc = run_main(cli.main, ["enhance", str(bad), str(photo), "--out", str(tmp_path / "out")])
    err = one_line_error(capsys)
    assert rc == 2 and str(bad) in err and "re-export" in err
    assert left_in(tmp_path / "out") == []


@pytest.mark.openvino
def test_truncated_openvino_xml_is_one_line_exit_2(good_onnx: Path, photo: Path, tmp_path: Path, capsys) -> None:
    if not get_backend("openvino").is_available()[0]:
        pytest.skip("openvino not available")
    xml = get_backend("openvino").build(good_onnx, BuildConfig(), tmp_path / "ir").path
    xml.write_bytes(xml.read_bytes()[:1500])
    rc = run_main(cli.main, ["enhance", str(xml), str(photo), "--out", str(tmp_path / "out")])
    err = one_line_error(capsys)
    assert rc == 2 and str(xml) in err and "rebuild" in err


# --- 5. --out that cannot be written: checked before any model runs --------------------------------


def test_out_naming_a_file_is_refused_before_the_model_runs(nan_onnx: Path, photo: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "taken.png"
    target.write_bytes(b"keep me")
    # the NaN artifact would exit 1 if it ran: exit 2 shows the check came first
    rc = run_main(cli.main, ["enhance", str(nan_onnx), str(photo), "--out", str(target)])
    err = one_line_error(capsys)
    assert rc == 2 and "is an existing file" in err and str(target) in err
    assert target.read_bytes() == b"keep me" and left_in(tmp_path) == ["taken.png"]


def test_read_only_out_folder_is_refused(photo: Path, capsys) -> None:
    """A folder its owner may not write to. Root writes anywhere, so as root the command runs without
    the capabilities that override file permissions (setpriv), as a plain user would."""
    base = Path(tempfile.mkdtemp(prefix="enhance-ro-"))
    try:
        out = base / "out"
        out.mkdir()
        os.chmod(out, 0o555)
        args = ["enhance", "tinydce", str(photo), "--backend", "torch", "--out", str(out)]
        if os.geteuid() != 0:
            rc, err = run_main(cli.main, args), one_line_error(capsys)
        else:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv: cannot make a folder read-only for root")
            drop = "--bounding-set=-dac_override,-dac_read_search"
            done = subprocess.run(
                [setpriv, drop, sys.executable, "-m", "runtimes", *args],
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            rc, err = done.returncode, done.stderr
            assert err.count("\n") == 1 and err.startswith("error: "), err
        assert rc == 2 and "is not writable" in err and str(out) in err
        assert left_in(out) == []
    finally:
        os.chmod(out, 0o755)
        shutil.rmtree(base, ignore_errors=True)
