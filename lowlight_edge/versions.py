"""Versions of Python and the tools every artifact and bench row records, read from package metadata.

One list for the manifest, the stage cache keys and the bench's host record. Nothing is imported:
a version is what pip installed, None when a tool is absent.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

TOOLS = ("torch", "onnx", "onnxscript", "onnxsim", "onnxruntime", "openvino", "nncf", "numpy", "onnxconverter-common")
# Each TensorRT flavour ships under several distribution names (CUDA major, lean runtime).
TENSORRT_DISTRIBUTIONS = {
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-lean", "tensorrt_lean"),
    "tensorrt_rtx": ("tensorrt-rtx-cu12", "tensorrt-rtx-cu13", "tensorrt-rtx", "tensorrt_rtx"),
}


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    """{"python": ..., tool: version or None} for TOOLS and both TensorRT flavours."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    found.update({name: _version(name) for name in TOOLS})
    found.update({flavour: _version(*names) for flavour, names in TENSORRT_DISTRIBUTIONS.items()})
    return found
