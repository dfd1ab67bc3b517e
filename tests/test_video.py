"""Night video end to end: a real clip from an eval photo, a real TinyDCE ONNX, the real CLI, PyAV both ways."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from lowlight_edge import zoo
from lowlight_edge.console import run_main
from lowlight_edge.metrics import FlickerMeter, flicker_ratio, mean_frame_change
from runtimes import cli
from runtimes.video import probe

H, W = 64, 96
FRAMES = 12
RATE = Fraction(30000, 1001)  # NTSC: a rate a float round-trip would get wrong
PHOTO = "sice_101_3.png"
REPO = Path(__file__).resolve().parents[1]


def still(eval_dir: Path) -> np.ndarray:
    image = Image.open(eval_dir / PHOTO).convert("RGB").resize((W, H), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


def write_clip(path: Path, base: np.ndarray, frames: int, seed: int = 0) -> list[np.ndarray]:
    """A static camera on ``base``, darkened, with a slow exposure ramp and per-frame sensor noise."""
    rng = np.random.default_rng(seed)
    written = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE, options={"crf": "18"})
        stream.height, stream.width, stream.pix_fmt = H, W, "yuv420p"
        for i in range(frames):
            gain = 0.4 + 0.3 * i / max(frames - 1, 1)
            frame = np.clip(base * gain + rng.normal(0.0, 0.01, base.shape), 0.0, 1.0)
            pixels = np.round(frame * 255).astype(np.uint8)
            written.append(pixels)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return written


def decode(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, Fraction(stream.average_rate)


@pytest.fixture(scope="module")
def clip(eval_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "night.mp4"
    write_clip(path, still(eval_dir), FRAMES)
    return path


@pytest.fixture(scope="module")
def tinydce_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TinyDCE exported at the clip's static 64x96, with the manifest python -m export writes beside it."""
    folder = tmp_path_factory.mktemp("art")
    onnx_file = folder / "tinydce.onnx"
    torch.onnx.export(zoo.get_model("tinydce"), (torch.rand(1, 3, H, W),), str(onnx_file), dynamo=True, verbose=False)
    spec = zoo.get_spec("tinydce")
    manifest = {
        "model": "tinydce",
        "weights": zoo.weights_info("tinydce", "default"),
        "input": {"kind": spec.input_kind, "size_multiple": spec.size_multiple, "scale_factor": spec.scale_factor},
        "files": [{"path": onnx_file.name}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return onnx_file


def nan_past(threshold: float, path: Path) -> Path:
    """A real (dynamic-shape) ONNX model: x * sqrt(threshold - mean(x)), NaN once a frame is brighter than threshold."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])
    t = helper.make_tensor("t", TensorProto.FLOAT, [], [threshold])
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=1),
        helper.make_node("Sub", ["t", "m"], ["d"]),
        helper.make_node("Sqrt", ["d"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "nan_past", [x], [y], initializer=[t])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_flicker_metric_known_answers() -> None:
    rng = np.random.default_rng(1)
    base = np.full((8, 10, 3), 0.2)
    inputs = [base + rng.normal(0, 0.01, base.shape) for _ in range(6)]
    assert flicker_ratio(inputs, inputs) == pytest.approx(1.0)
    assert flicker_ratio(inputs, [2 * f for f in inputs]) == pytest.approx(2.0)  # a gain of 2 doubles the change
    assert flicker_ratio(inputs, [np.full_like(base, 0.5)] * 6) == 0.0  # a frozen output has none
    ramp = [np.full((4, 4), v) for v in (0.0, 0.1, 0.3)]
    assert mean_frame_change(ramp[0], ramp[1]) == pytest.approx(0.1)
    assert flicker_ratio(ramp, [np.full((4, 4), v) for v in (0.0, 0.3, 0.3)]) == pytest.approx(0.3 / 0.3)
    assert flicker_ratio(ramp, [np.full((4, 4), v) for v in (1.0, 2.0, 3.0)]) == 0.0  # clipped to [0, 1]
    static = [base] * 3
    assert flicker_ratio(static, static) == 1.0
    assert flicker_ratio(static, inputs[:3]) == math.inf
    assert flicker_ratio(inputs[:1], inputs[:1]) is None
    meter = FlickerMeter()
    for inp in inputs:
        meter.update(inp, 3 * inp)
    assert meter.pairs == 5 and meter.ratio() == pytest.approx(flicker_ratio(inputs, [3 * f for f in inputs]))
    with pytest.raises(ValueError):
        mean_frame_change(np.zeros((2, 2)), np.zeros((2, 3)))


def test_enhance_video_keeps_frames_rate_and_size(clip: Path, tinydce_onnx: Path, tmp_path: Path, capsys) -> None:
    assert probe(clip).rate == RATE
    out = tmp_path / "out"
    rc = run_main(cli.main, ["enhance", str(tinydce_onnx), str(clip), "--out", str(out), "--threads", "2"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    written = out / "night.mp4"
    assert sorted(p.name for p in out.iterdir()) == ["night.mp4"]
    frames, rate = decode(written)
    assert len(frames) == FRAMES and rate == RATE
    assert all(f.shape == (H, W, 3) for f in frames)
    source, _ = decode(clip)
    assert np.mean(frames[0]) > 2 * np.mean(source[0])  # enhanced: brighter
    line = next(line for line in printed.splitlines() if line.startswith(f"wrote {written}"))
    assert f"({H}x{W}, {FRAMES} frames at 29.970 fps)" in line
    ratio = float(re.search(r"flicker ratio ([0-9.]+)", line).group(1))
    assert math.isfinite(ratio) and ratio > 0


def test_failed_video_leaves_no_output(clip: Path, tmp_path: Path, capsys) -> None:
    source, _ = decode(clip)
    means = [float(np.mean(f)) / 255.0 for f in source]
    assert means == sorted(means)  # the exposure ramp
    model = nan_past((means[5] + means[6]) / 2, tmp_path / "nan_past.onnx")  # frames 0-5 fine, frame 6 NaN
    out = tmp_path / "out"
    rc = run_main(cli.main, ["enhance", str(model), str(clip), "--out", str(out), "--threads", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "non-finite values" in err
    assert not out.exists() or list(out.iterdir()) == []  # neither night.mp4 nor its temporary file


def test_ctrl_c_leaves_no_output(eval_dir: Path, tinydce_onnx: Path, tmp_path: Path) -> None:
    long_clip = tmp_path / "long.mp4"
    write_clip(long_clip, still(eval_dir), 600, seed=2)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtimes", "enhance", str(tinydce_onnx), str(long_clip), "--out", str(out), "--threads", "1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.name.startswith(".tmp-long.mp4") for p in out.iterdir()):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be interrupted"
    time.sleep(0.2)  # mid-stream: frames are being encoded into the temporary file
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(out.iterdir()) == []


def test_video_frames_take_the_photo_path_tiles_and_seam_check(clip: Path, tmp_path: Path, capsys) -> None:
    """A static 32x48 TinyDCE on the 64x96 clip: tiled like a photo (6 px overlap), seam-checked once, exact size."""
    folder = tmp_path / "art"
    folder.mkdir()
    onnx_file = folder / "tinydce.onnx"
    torch.onnx.export(zoo.get_model("tinydce"), (torch.rand(1, 3, 32, 48),), str(onnx_file), dynamo=True, verbose=False)
    spec = zoo.get_spec("tinydce")
    (folder / "manifest.json").write_text(json.dumps({
        "model": "tinydce", "weights": zoo.weights_info("tinydce", "default"),
        "input": {"kind": spec.input_kind, "size_multiple": spec.size_multiple}, "files": [{"path": onnx_file.name}],
    }))
    rc = run_main(cli.main, ["enhance", str(onnx_file), str(clip), "--out", str(tmp_path / "out"), "--threads", "2"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert printed.count("tiling 64x96 into") == 1 and "with 6 px overlap (measured for tinydce)" in printed
    seams = [line for line in printed.splitlines() if "seam PSNR" in line]
    assert len(seams) == 1 and "seam PSNR 99.0 dB" in seams[0]  # TinyDCE tiles are exact
    frames, rate = decode(tmp_path / "out" / "night.mp4")
    assert len(frames) == FRAMES and rate == RATE and frames[0].shape == (H, W, 3)


def test_unreadable_video_is_one_line(tinydce_onnx: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    rc = run_main(cli.main, ["enhance", str(tinydce_onnx), str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is not a readable video" in err
    assert not (tmp_path / "out" / "broken.mp4").exists()
