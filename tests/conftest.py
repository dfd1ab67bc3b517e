"""Shared test setup: checkpoints and images come from ../shared beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOWLIGHT_EDGE_SHARED", REPO.parent / "shared"))
os.environ.setdefault("LOWLIGHT_EDGE_WEIGHTS", str(SHARED / "weights"))


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED}; set LOWLIGHT_EDGE_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def eval_dir(shared: Path) -> Path:
    return shared / "data" / "eval"


@pytest.fixture(scope="session")
def calib_dir(shared: Path) -> Path:
    return shared / "data" / "calib"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--artifacts", default=None, help="artifacts folder whose MANIFEST.json to verify")
