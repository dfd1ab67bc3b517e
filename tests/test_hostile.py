"""Hostile inputs and kills against `python -m export` (issue 15): one line, the right exit code,
nothing left behind, never a manifest describing other files, and caches keyed by content.

Every case runs the real CLI in a subprocess on tinydce at 64x96, so what a user sees (stderr,
exit code, the folder afterwards) is what is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from export.collect import collect, manifest_problems
from lowlight_edge.errors import CheckFailed

REPO = Path(__file__).resolve().parents[1]
SMALL = ["tinydce", "--resolution", "64x96", "--verify-images", "2", "--quiet"]


def export_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "export", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )


def our_lines(stderr: str) -> list[str]:
    """stderr without torch's own import-time chatter (W-prefixed glog lines, FutureWarnings)."""
    noise = ("W1", "I1", "  return cls", "/")
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(noise) and "Warning" not in ln]


def refused(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = our_lines(result.stderr)
    assert result.returncode == code, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def work(tmp_path: Path, shared: Path) -> Path:
    os.environ["LOWLIGHT_EDGE_DATA"] = str(shared / "data")
    return tmp_path


def test_bad_inputs_give_one_line_and_leave_nothing(work: Path, shared: Path) -> None:
    text = work / "weights.txt"
    text.write_text("hello, not a checkpoint\n")
    state = torch.load(shared / "weights" / "tinydce.pth", map_location="cpu", weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone().flatten().index_fill(0, torch.tensor([0]), float("inf")).view_as(state[name])
    torch.save(state, work / "inf.pth")
    a_file = work / "a_file"
    a_file.write_text("x")
    out = work / "out"
    cases = [
        (["--weights", str(text), "--until", "onnx"], 2, ("not a PyTorch checkpoint",)),
        (["--weights", str(work / "inf.pth"), "--until", "onnx"], 2, ("NaN/Inf", "original weights")),
        (["--until", "onnx", "--opset", "7"], 2, ("--opset 7", "wrote opset 18")),
        (["--until", "quantize", "--budget-db", "nan"], 2, ("--budget-db nan",)),
        (["--until", "quantize", "--budget-db", "-5"], 2, ("--budget-db -5",)),
        (["--until", "quantize", "--budget-db", "1e9"], 2, ("is not a PSNR budget",)),
        (["--until", "quantize", "--calib", str(shared / "data" / "eval")], 2, ("overlap",)),
        (["--until", "quantize", "--calib", str(work / "none")], 2, ("does not exist",)),
        (["--until", "quantize", "--calib", str(work)], 2, ("no images",)),  # exists, holds no image
    ]
    for args, code, words in cases:
        refused(export_cli(*SMALL, "--out", str(out), *args, cwd=work), code, *words)
        assert not out.exists(), args  # not even an empty folder
    refused(export_cli(*SMALL, "--out", str(a_file), "--until", "onnx", cwd=work), 2, "is a file")
    assert a_file.read_text() == "x"


def test_a_killed_rebuild_never_leaves_a_stale_manifest(work: Path) -> None:
    out = work / "out"
    assert export_cli(*SMALL, "--out", str(out), "--until", "simplify", cwd=work).returncode == 0
    folder = out / "x86-cpu" / "tinydce"
    manifest = folder / "manifest.json"
    assert manifest.is_file() and not manifest_problems(manifest)
    (folder / ".tmp-tinydce.onnx-leftover").write_bytes(b"")  # what a kill during a write leaves

    # a rebuild (another opset rewrites every file), killed as soon as it starts rewriting
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "export", *SMALL, "--out", str(out), "--until", "simplify",
                             "--opset", "18"], cwd=work, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not manifest.exists() or not manifest_problems(manifest)  # never a manifest of other files
    assert not (folder / ".tmp-tinydce.onnx-leftover").exists()  # cleaned before the rewrite began
    with pytest.raises(CheckFailed, match="did not finish|differ from their manifest"):
        collect(out)  # collect refuses, instead of copying stale digests into MANIFEST.json
    assert not (out / "MANIFEST.json").exists()

    done = export_cli(*SMALL, "--out", str(out), "--until", "simplify", "--opset", "18", cwd=work)
    assert done.returncode == 0 and not manifest_problems(manifest)
    assert not list(folder.rglob(".tmp-*"))  # whatever this kill left is gone after the next run
    collect(out)


def test_a_tampered_file_is_refused_by_collect(work: Path) -> None:
    out = work / "out"
    assert export_cli(*SMALL, "--out", str(out), "--until", "onnx", cwd=work).returncode == 0
    onnx_file = out / "x86-cpu" / "tinydce" / "tinydce.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    with pytest.raises(CheckFailed, match="not the file its manifest describes"):
        collect(out)


def _copy_images(source: Path, dest: Path, count: int, offset: int = 0) -> Path:
    dest.mkdir(parents=True)
    for path in sorted(source.iterdir())[offset : offset + count]:
        shutil.copy(path, dest / path.name)
    return dest


def test_caches_follow_the_images_not_the_paths(work: Path, shared: Path) -> None:
    out = work / "out"
    evals = _copy_images(shared / "data" / "eval", work / "eval", 2)
    first = export_cli(*SMALL, "--out", str(out), "--until", "simplify", "--eval", str(evals), cwd=work)
    assert first.returncode == 0, first.stderr[-2000:]
    manifest = json.loads((out / "x86-cpu" / "tinydce" / "manifest.json").read_text())
    assert manifest["eval"]["sha256"] and manifest["eval"]["folder"] == str(evals)

    same = export_cli(*SMALL, "--out", str(out), "--until", "simplify", "--eval", str(evals), cwd=work)
    assert same.returncode == 0 and same.stderr.count("reusing outputs") == 2  # onnx and simplify

    shutil.rmtree(evals)  # the same path, other images: every stage's fidelity must be measured again
    _copy_images(shared / "data" / "eval", evals, 2, offset=10)
    again = export_cli(*SMALL, "--out", str(out), "--until", "simplify", "--eval", str(evals), cwd=work)
    after = json.loads((out / "x86-cpu" / "tinydce" / "manifest.json").read_text())
    assert again.returncode == 0 and not any(run.get("reused") for run in after["stages"].values())
    assert after["eval"]["sha256"] != manifest["eval"]["sha256"]


@pytest.mark.slow
def test_replaced_calibration_images_rerun_the_quantize_stage(work: Path, shared: Path) -> None:
    out = work / "out"
    calib = _copy_images(shared / "data" / "calib", work / "calib", 6)
    args = [*SMALL, "--out", str(out), "--until", "quantize", "--calib", str(calib), "--calib-size", "4",
            "--calib-max-mean", "1.0"]
    assert export_cli(*args, cwd=work).returncode == 0
    plan = (out / "x86-cpu" / "tinydce" / "precision_plan.yaml").read_text()
    shutil.rmtree(calib)
    _copy_images(shared / "data" / "calib", calib, 6, offset=50)
    assert export_cli(*args, cwd=work).returncode == 0
    stages = json.loads((out / "x86-cpu" / "tinydce" / "manifest.json").read_text())["stages"]
    assert not stages["quantize"].get("reused") and stages["onnx"].get("reused")
    assert (out / "x86-cpu" / "tinydce" / "precision_plan.yaml").read_text() != plan  # new calibration hash


def test_a_second_export_into_the_same_folder_is_refused(work: Path) -> None:
    out = work / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, "-m", "export", *SMALL, "--out", str(out), "--until", "simplify"],
                             cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    folder = out / "x86-cpu" / "tinydce"
    deadline = time.monotonic() + 120
    while not folder.is_dir() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = export_cli(*SMALL, "--out", str(out), "--until", "simplify", cwd=work)
    first.wait(timeout=300)
    if second.returncode == 0:  # the first finished before the second began: nothing to check
        pytest.skip("the first export ended before the second one started")
    refused(second, 2, "another export is writing")
    assert first.returncode == 0


def _unshare_mount() -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not shutil.which("unshare") or not _unshare_mount(), reason="needs unshare -m and mount (root with CAP_SYS_ADMIN)"
)


def _in_mount(work: Path, options: str, args: list[str], setup: str = "") -> subprocess.CompletedProcess:
    """Run the export CLI in a private mount namespace with a tmpfs at work/mnt (real ENOSPC / EROFS)."""
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    cli = " ".join([sys.executable, "-m", "export", *SMALL, *args])
    # after the CLI: list what is left in the mount (it vanishes with the namespace), keep the CLI's exit code
    script = f"mount -t tmpfs -o {options} tmpfs {mnt} && {setup} {cli}; rc=$?; echo LEFT; find {mnt} -name '.tmp-*'; exit $rc"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)


@needs_mounts
def test_a_full_disk_gives_one_line_and_no_partial_file(work: Path) -> None:
    mnt = work / "mnt"
    result = _in_mount(work, "size=16k", ["--out", str(mnt / "out"), "--until", "onnx"],
                       setup=f"dd if=/dev/zero of={mnt}/filler bs=1k count=12 2>/dev/null;")
    refused(result, 2, "No space left on device")
    assert result.stdout.split("LEFT", 1)[1].strip() == ""  # no temporary file survives


@needs_mounts
def test_a_read_only_output_folder_gives_one_line(work: Path) -> None:
    mnt = work / "mnt"
    result = _in_mount(work, "size=1m", ["--out", str(mnt / "out"), "--until", "onnx"],
                       setup=f"mount -o remount,ro {mnt} &&")
    refused(result, 2, "choose another --out")


@needs_mounts
def test_complete_artifacts_on_a_read_only_copy_are_reused_without_a_write(work: Path) -> None:
    mnt = work / "mnt"
    first = " ".join([sys.executable, "-m", "export", *SMALL, "--out", str(mnt / "out"), "--until", "simplify"])
    result = _in_mount(work, "size=4m", ["--out", str(mnt / "out"), "--until", "simplify"],
                       setup=f"{first} >/dev/null 2>&1 && mount -o remount,ro {mnt} &&")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("reusing outputs") == 2


def test_a_truncated_onnx_is_one_line_in_every_backend_that_reads_it(tmp_path: Path, shared: Path) -> None:
    from lowlight_edge.errors import DataError
    from runtimes import get_backend

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\x08\x07\x12\x04torch" + b"\xff" * 64)  # a protobuf cut off mid-field
    with pytest.raises(DataError, match="not a readable ONNX model"):
        get_backend("onnxruntime").load(broken)


def test_a_whole_image_statistics_model_is_never_tiled_by_a_target() -> None:
    from lowlight_edge import zoo
    from lowlight_edge.errors import ConfigError
    from lowlight_edge.targets import Target
    from runtimes.tiling import target_tiling

    target = Target(name="tiled-cpu", runtime="openvino", device="CPU", precisions=("fp32",), resolutions={}, options={"tile": "200x300"})
    with pytest.raises(ConfigError, match="whole-image statistics"):
        target_tiling(target, zoo.get_spec("iat_student"), (400, 600))


TARGET = """
version: 1
targets:
  tiny-cpu:
    runtime: openvino
    device: CPU
    precisions: [fp32]
    threads: 1
    resolutions:
      default: 64x96
    options:
      hint: {hint}
"""


def test_a_changed_target_option_rebuilds_the_engine(work: Path) -> None:
    out, targets = work / "out", work / "targets.yaml"
    args = [*SMALL, "--out", str(out), "--targets", str(targets), "--target", "tiny-cpu"]
    targets.write_text(TARGET.format(hint="LATENCY"))
    assert export_cli(*args, cwd=work).returncode == 0
    same = export_cli(*args, cwd=work)
    assert same.returncode == 0 and "engine: reusing outputs" in same.stderr
    targets.write_text(TARGET.format(hint="THROUGHPUT"))
    changed = export_cli(*args, cwd=work)
    assert changed.returncode == 0 and "engine: reusing outputs" not in changed.stderr
    assert "onnx: reusing outputs" in changed.stderr  # only what the option reaches is rebuilt
