"""The wheel, installed into a fresh virtual environment, works without the source checkout.

The new environment sees the current one's third-party packages through a .pth file that lists
the current site-packages directory. Python adds such a path line to sys.path, but it does not
process the .pth files inside that directory (site.addpackage only appends the path; only
site-packages directories themselves get addsitedir), so our editable install's finder there
stays inactive: every import of our packages must come from the wheel. The commands run from a
folder with its own ``models`` and ``common`` packages first on PYTHONPATH, the names of the old
layout, so any leftover import of them would pick up the user's packages and show here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from lowlight_edge import version

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = {"lowlight_edge", "export", "quantize", "runtimes", "bench"}
IMAGE = "sice_101_0.png"  # 512x512, under-exposed (as in test_enhance)
NOT_SOURCES = (".git", ".venv", "artifacts", "bench-results", "build", "dist", "*.egg-info", "__pycache__",
               ".pytest_cache", ".ruff_cache", ".cache", "tests")


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{done.args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the working tree, built from a copy so the checkout gets no build/ or egg-info."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work),
              str(src)], dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"), work))
    (found,) = work.glob("lowlight_edge-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (--no-deps) and the current venv's third-party packages visible."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", str(root)], dict(os.environ), root.parent))
    python = root / "bin" / "python"
    purelib = _ok(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       dict(os.environ), root.parent)).strip()
    (Path(purelib) / "outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _ok(_run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
              str(wheel)], dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"), root.parent))
    return root


@pytest.fixture()
def user_folder(tmp_path: Path) -> Path:
    """A user's project folder with its own ``models`` and ``common`` packages, which write a marker if imported."""
    for name in ("models", "common"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f'"""The user\'s own {name} package, unrelated to lowlight-edge."""\n'
            "import pathlib\n\n"
            f"pathlib.Path(__file__).parent.with_name('{name}-was-imported').touch()\n"
            "UNRELATED = True\n"
        )
    return tmp_path


def test_wheel_holds_our_packages_and_the_targets_file(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {n.split("/")[0] for n in names} - dist_info == TOP_LEVEL
    assert "lowlight_edge/targets.yaml" in names
    (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
    recorded = {line.split(",")[0] for line in zipfile.ZipFile(wheel).read(record).decode().splitlines()}
    assert "lowlight_edge/targets.yaml" in recorded and "export/cli.py" in recorded
    entry_points = zipfile.ZipFile(wheel).read(record.replace("RECORD", "entry_points.txt")).decode()
    for script in ("lowlight-export", "lowlight-quantize", "lowlight-runtimes", "lowlight-bench", "lowlight-collect"):
        assert f"{script} = " in entry_points


TINY_TARGET = """
version: 1
targets:
  tiny-cpu:
    description: a tiny x86 target of a user's own targets file
    runtime: openvino
    device: CPU
    precisions: [fp32]
    threads: 1
    budget: {psnr_mean_db: 40.0, psnr_min_db: 38.0}
    warmup: 1
    iterations: 2
    timeout_s: 300
    resolutions:
      default: 48x72
    requires: [openvino]
"""


def test_installed_commands_work_from_a_user_folder(venv: Path, user_folder: Path, shared: Path) -> None:
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOWLIGHT_EDGE_DATA", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(user_folder),
               LOWLIGHT_EDGE_WEIGHTS=str(shared / "weights"))

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return _run(list(args), {**env, **(extra or {})}, user_folder)

    # every import of ours comes from the wheel; the editable finder in the outer site-packages is inert
    where = _ok(run(str(bin_dir / "python"), "-c",
                    "import sys, export, lowlight_edge, lowlight_edge.targets as t; "
                    "print(export.__file__); print(t.DEFAULT_PATH); "
                    "print(any('editable' in m for m in sys.modules)); print(t.DEFAULT_PATH.is_file())"))
    export_file, targets_file, editable, targets_exist = where.splitlines()
    for file in (export_file, targets_file):
        assert Path(file).resolve().is_relative_to(venv.resolve()), where
    assert editable == "False" and targets_exist == "True"

    assert _ok(run("lowlight-bench", "--version")) == f"lowlight-edge {version()}\n"
    assert _ok(run("lowlight-bench", "--help")).startswith("usage: lowlight-bench")
    runtimes = _ok(run("lowlight-runtimes", "list"))
    assert runtimes.split()[0] == "torch" and "onnxruntime" in runtimes

    # no LOWLIGHT_EDGE_DATA and no source checkout: one line naming the fix, nothing written
    out = user_folder / "artifacts"
    refused = run("lowlight-export", "tinydce", "--resolution", "64x96", "--until", "simplify", "--out", str(out))
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "set LOWLIGHT_EDGE_DATA" in lines[0] and "--eval" in lines[0], refused.stderr
    assert not out.exists()

    data = {"LOWLIGHT_EDGE_DATA": str(shared / "data")}
    _ok(run("lowlight-export", "tinydce", "--resolution", "64x96", "--until", "simplify", "--out", str(out),
            "--verify-images", "2", "--quiet", extra=data))
    manifest = json.loads((out / "x86-cpu" / "tinydce" / "manifest.json").read_text())
    assert manifest["model"] == "tinydce" and manifest["input_shape"] == {"static": [1, 3, 64, 96]}
    assert [f["stage"] for f in manifest["files"]] == ["onnx", "simplify"]
    assert all((out / "x86-cpu" / "tinydce" / f["path"]).is_file() for f in manifest["files"])
    _ok(run("lowlight-collect", str(out)))
    assert (out / "MANIFEST.json").is_file()

    onnx_file = out / "x86-cpu" / "tinydce" / manifest["files"][-1]["path"]
    pngs = user_folder / "enhanced"
    _ok(run("lowlight-runtimes", "enhance", str(onnx_file), str(shared / "data" / "eval" / IMAGE),
            "--out", str(pngs)))
    assert (pngs / IMAGE).is_file()

    # a real bench run from the wheel: FP32 rows of tinydce on a tiny target of the user's own file
    targets = user_folder / "my-targets.yaml"
    targets.write_text(TINY_TARGET)
    results = user_folder / "bench"
    _ok(run("lowlight-bench", "--targets", str(targets), "--target", "tiny-cpu", "--models", "tinydce",
            "--precision", "fp32", "--out", str(results), "--artifacts", str(user_folder / "bench-artifacts"),
            "--quiet", extra=data))
    rows = {(r["runtime"], r["precision"]): r for r in json.loads((results / "results.json").read_text())}
    assert {("openvino", "fp32"), ("torch", "fp32")} <= set(rows)
    assert rows[("openvino", "fp32")]["psnr_db"]["min"] >= 60 and rows[("openvino", "fp32")]["latency_ms"]["p50"] > 0
    assert not list(user_folder.glob("*-was-imported"))  # the user's models/ and common/ were left alone
