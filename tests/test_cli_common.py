"""What every command line shares: --version, one-line errors with exit code 2, and no guessed data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import export.config
from bench.cli import main as bench_main
from export.cli import main as export_main
from lowlight_edge import UNKNOWN_VERSION, version
from lowlight_edge.console import run_main
from lowlight_edge.zoo import list_models
from quantize.cli import main as quantize_main

REPO = Path(__file__).resolve().parents[1]
CLIS = ("export", "quantize", "runtimes", "bench", "export.collect")


def python_m(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_version_is_the_distributions() -> None:
    assert version() != UNKNOWN_VERSION  # the editable install's metadata
    assert version()[0].isdigit()


@pytest.mark.parametrize("module", CLIS)
def test_every_cli_answers_version(module: str) -> None:
    done = python_m(module, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"lowlight-edge {version()}\n"


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("export", ["tinydcee", "--out", "{tmp}/a", "--quiet"]),
        ("quantize", ["tinydcee", "--out", "{tmp}/a", "--quiet"]),
        ("bench", ["--models", "tinydcee", "--out", "{tmp}/r", "--artifacts", "{tmp}/a", "--quiet"]),
        ("runtimes", ["enhance", "tinydcee", "{image}", "--backend", "torch", "--out", "{tmp}/a"]),
    ],
)
def test_unknown_model_is_one_line_and_exit_2(module: str, args: list[str], tmp_path: Path, eval_dir: Path) -> None:
    image = next(p for p in sorted(eval_dir.iterdir()) if p.suffix.lower() == ".png")
    done = python_m(module, *(a.format(tmp=tmp_path, image=image) for a in args), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model 'tinydcee'"), done.stderr
    assert "did you mean 'tinydce'" in lines[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "r").exists()


def test_model_help_lists_the_registry() -> None:
    done = python_m("export", "--help")
    assert done.returncode == 0
    assert ", ".join(list_models()) in " ".join(done.stdout.split())


@pytest.mark.parametrize(
    ("main", "args", "fix"),
    [
        (export_main, ["tinydce", "--until", "simplify"], "--eval"),
        (export_main, ["tinydce", "--eval", "{eval}"], "--calib"),
        (quantize_main, ["tinydce", "--calib", "{calib}"], "--eval"),
        (bench_main, ["--models", "tinydce", "--images", "{eval}", "--artifacts", "{tmp}/a"], "LOWLIGHT_EDGE_DATA"),
    ],
)
def test_no_data_folder_is_one_line_before_anything_is_written(
    main, args: list[str], fix: str, tmp_path: Path, eval_dir: Path, calib_dir: Path, monkeypatch, capsys
) -> None:
    """An installed wheel without LOWLIGHT_EDGE_DATA has no default folder: say so, write nothing."""
    monkeypatch.delenv("LOWLIGHT_EDGE_DATA", raising=False)
    monkeypatch.setattr(export.config, "default_data_dir", lambda: None)
    monkeypatch.chdir(tmp_path)
    argv = [a.format(eval=eval_dir, calib=calib_dir, tmp=tmp_path) for a in args]
    code = run_main(main, [*argv, "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: no folder of "), err
    assert "set LOWLIGHT_EDGE_DATA" in err and fix in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_source_checkout_default_is_beside_the_repository(monkeypatch) -> None:
    monkeypatch.delenv("LOWLIGHT_EDGE_DATA", raising=False)
    assert export.config.default_data_dir() == REPO.parent / "shared" / "data"
    monkeypatch.setenv("LOWLIGHT_EDGE_DATA", "/some/where")
    assert export.config.default_data_dir() == Path("/some/where")


@pytest.mark.parametrize(
    ("main", "args"),
    [
        (export_main, ["tinydce"]),
        (quantize_main, ["tinydce"]),
        (bench_main, ["--models", "tinydce", "--artifacts", "{tmp}/a"]),
    ],
)
def test_targets_option_is_read(main, args: list[str], tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-such-targets.yaml"
    argv = [a.format(tmp=tmp_path) for a in args]
    code = run_main(main, [*argv, "--targets", str(missing), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot read targets file {missing}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
