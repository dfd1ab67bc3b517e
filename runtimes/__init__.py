"""Inference backends behind one interface: torch, onnxruntime, openvino, tensorrt.

``get_backend(name)`` imports ``runtimes.backend_<name>`` only when asked for, so importing this
package pulls in no runtime (no onnxruntime, openvino or tensorrt): a machine without them can
still list what is missing, and the export and bench stages pay only for what they use.

    from runtimes import get_backend, BuildConfig
    ov = get_backend("openvino")
    artifact = ov.build(Path("model.onnx"), BuildConfig(input_shape=(1, 3, 400, 600)), Path("out"))
    with ov.load(artifact, options={"threads": 2}) as run:
        y = run(x)                       # x: 1x3x400x600 float32
"""

from __future__ import annotations

import importlib
from pathlib import Path

from lowlight_edge.console import suggest
from lowlight_edge.errors import UsageError
from runtimes.base import Artifact, Backend, BuildConfig, Runner

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")

__all__ = [
    "BACKENDS",
    "Artifact",
    "Backend",
    "BuildConfig",
    "Runner",
    "availability",
    "backend_for",
    "get_backend",
]

_CACHE: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; UsageError with a suggestion for an unknown name."""
    if name not in BACKENDS:

        msg = f"unknown backend {name!r}{suggest(name, BACKENDS)}; choose one of {', '.join(BACKENDS)}"
        raise UsageError(msg)
    if name not in _CACHE:
        module = importlib.import_module(f"runtimes.backend_{name}")
        _CACHE[name] = module.BACKEND
    return _CACHE[name]


def availability() -> dict[str, tuple[bool, str]]:
    """Every backend's ``is_available()``, in BACKENDS order."""
    return {name: get_backend(name).is_available() for name in BACKENDS}


def backend_for(artifact: str | Path) -> str:
    """The backend that loads a file, from its suffix (.onnx, .xml, .engine)."""
    suffix = Path(artifact).suffix.lower()
    for name in BACKENDS:
        if suffix and suffix in get_backend(name).suffixes:
            return name
    msg = f"cannot tell the backend of {artifact} from its suffix {suffix!r}; pass --backend (one of {', '.join(BACKENDS)})"
    raise UsageError(msg)
