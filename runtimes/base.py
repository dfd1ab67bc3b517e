"""The one interface every inference backend implements: Backend, BuildConfig, Artifact, Runner.

Modelled on MMDeploy's backend managers (``is_available`` / ``to_backend`` / ``build_wrapper``)
and Polygraphy's runners (context managers that own their session). A backend *builds* an
artifact from an ONNX file when it has something to build (an OpenVINO IR, a TensorRT engine),
and *loads* an artifact into a Runner: a callable on NCHW float32 numpy arrays that describes
itself and releases its resources on ``close()``.

This module imports no runtime package; the backend modules import theirs inside functions.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Tuple

import numpy as np

from lowlight_edge.atomic import write_json
from lowlight_edge.console import suggest
from lowlight_edge.errors import ConfigError, DataError, MissingRequirement, UsageError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
PROFILE_KEYS = ("min", "opt", "max")
Shape = Tuple[int, int, int, int]  # typing.Tuple: evaluated at import, on the device's Python 3.8 too


def _shape(value: Any, what: str) -> Shape:
    """A positive NCHW 4-tuple of ints, or UsageError naming ``what``."""
    try:
        dims = tuple(int(d) for d in value)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 4 or any(d <= 0 for d in dims) or any(int(d) != d for d in value):
        msg = f"{what} must be 4 positive integers N,C,H,W, got {value!r}; e.g. (1, 3, 400, 600)"
        raise UsageError(msg)
    return dims  # type: ignore[return-value]


@dataclass(frozen=True)
class BuildConfig:
    """What to build: precision, shapes and the knobs a backend's builder takes.

    Args:
        precision: fp32 | fp16 | int8 (int8 needs a quantized model: QDQ ONNX or an NNCF IR).
        input_shape: static NCHW; None keeps the model's own input shape.
        profile: dynamic shapes as {"min": NCHW, "opt": NCHW, "max": NCHW} (TensorRT profile,
            OpenVINO dimension bounds). Exclusive with input_shape.
        plan: precision plan JSON from the quantize stage; its "float_nodes" (ONNX node names)
            stay in floating point in TensorRT.
        threads: CPU threads for the build-time compile check (OpenVINO).
        workspace_mb: TensorRT builder workspace.
        dla_core: build for this DLA core (Jetson), with GPU fallback.
        flavour: TensorRT flavour, rtx | tensorrt (None: rtx).
        torch_fallback: returns the torch module, for OpenVINO when its ONNX frontend fails.
    """

    precision: str = "fp32"
    input_shape: Shape | None = None
    profile: dict | None = None
    plan: Path | None = None
    threads: int | None = None
    workspace_mb: int = 2048
    dla_core: int | None = None
    flavour: str | None = None  # TensorRT: rtx (TensorRT for RTX, builds without a GPU) | tensorrt
    torch_fallback: Callable[[], torch.nn.Module] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            msg = f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}"
            raise UsageError(msg)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", _shape(self.input_shape, "input_shape"))
        if self.profile is not None:
            object.__setattr__(self, "profile", check_profile(self.profile))
        if self.input_shape is not None and self.profile is not None:
            msg = "give either input_shape (static) or profile (dynamic min/opt/max), not both"
            raise UsageError(msg)
        for name in ("threads", "workspace_mb"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                msg = f"{name} must be a positive integer, got {value!r}"
                raise UsageError(msg)
        if self.dla_core is not None and (not isinstance(self.dla_core, int) or self.dla_core < 0):
            msg = f"dla_core must be a DLA core index (0 or 1 on Jetson Orin), got {self.dla_core!r}"
            raise UsageError(msg)
        if self.flavour not in (None, "rtx", "tensorrt"):
            msg = f"unknown TensorRT flavour {self.flavour!r}; choose rtx or tensorrt"
            raise UsageError(msg)
        for name in ("plan",):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    def shapes(self) -> dict[str, Any]:
        """The shape request as plain JSON (part of cache keys and sidecars)."""
        profile = {k: list(v) for k, v in self.profile.items()} if self.profile else None
        return {"input_shape": list(self.input_shape) if self.input_shape else None, "profile": profile}


def check_profile(profile: Mapping[str, Any]) -> dict[str, Shape]:
    """Validate {"min","opt","max"} NCHW shapes with min <= opt <= max in every dim."""
    if not isinstance(profile, Mapping) or set(profile) != set(PROFILE_KEYS):
        got = sorted(profile) if isinstance(profile, Mapping) else type(profile).__name__
        msg = f"profile must have exactly the keys min, opt, max (NCHW each), got {got}"
        raise UsageError(msg)
    shapes = {k: _shape(profile[k], f"profile[{k!r}]") for k in PROFILE_KEYS}
    lo, opt, hi = shapes["min"], shapes["opt"], shapes["max"]
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        msg = f"profile needs min <= opt <= max in every dimension, got min={lo} opt={opt} max={hi}"
        raise UsageError(msg)
    if not (lo[:2] == opt[:2] == hi[:2]):
        msg = f"profile may vary only H and W; N and C differ in min={lo} opt={opt} max={hi}"
        raise UsageError(msg)
    return shapes


def onnx_input_dims(path: str | Path) -> tuple[int, ...]:
    """Input dims of a single-input ONNX, -1 where dynamic (read without its external weights)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        msg = f"{path} has {len(inputs)} inputs; runtimes builds single-image models with one NCHW input"
        raise UsageError(msg)
    dims = inputs[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in dims)


def sidecar_path(path: str | Path) -> Path:
    """``model.xml`` -> ``model.xml.json``; ``abc.engine`` -> ``abc.engine.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: str | Path) -> dict | None:
    """The artifact's sidecar JSON, None when there is none; ConfigError when it is unreadable."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as err:
        msg = f"sidecar {side} is not valid JSON ({err}); delete it and rebuild the artifact"
        raise ConfigError(msg) from err
    if not isinstance(data, dict):
        msg = f"sidecar {side} must hold a JSON object; delete it and rebuild the artifact"
        raise ConfigError(msg)
    return data


@dataclass
class Artifact:
    """A built file a backend can load, with what it was built as."""

    path: Path
    backend: str
    precision: str
    meta: dict = field(default_factory=dict)  # e.g. {"fallback": "..."}, cache key, input shape

    def to_json(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def write_sidecar(self) -> Path:
        side = sidecar_path(self.path)
        write_json(side, {"backend": self.backend, "precision": self.precision, **self.meta})
        return side


def artifact_path(artifact: Any, backend: str) -> Path:
    """The file behind ``artifact`` (a path or an Artifact); UsageError if it does not exist."""
    path = Path(artifact.path if isinstance(artifact, Artifact) else artifact)
    if not path.is_file():
        msg = f"{backend} artifact {path} does not exist; build it first (python -m export) or pass an existing file"
        raise UsageError(msg)
    return path


def check_options(
    options: Mapping[str, Any] | None, allowed: tuple[str, ...], backend: str
) -> dict[str, Any]:
    """Options as a dict; UsageError for a key this backend does not know (never ignored)."""

    options = dict(options or {})
    for key in options:
        if key not in allowed:
            msg = f"{backend} does not take option {key!r}{suggest(key, allowed)}; its options are {', '.join(allowed)}"
            raise UsageError(msg)
    threads = options.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads <= 0):
        msg = f"threads must be a positive integer, got {threads!r}"
        raise UsageError(msg)
    return options


def onnx_precision(path: str | Path) -> str:
    """fp32 | fp16 | int8, read from an ONNX graph (Q/DQ nodes mean int8)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and friends: a truncated or foreign file
        msg = f"{path} is not a readable ONNX model ({type(err).__name__}); re-export it (python -m export)"
        raise DataError(msg) from err
    ops = {node.op_type for node in model.graph.node}
    if ops & {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
    }:
        return "int8"
    half = onnx.TensorProto.FLOAT16
    inputs = model.graph.input
    if inputs and inputs[0].type.tensor_type.elem_type == half:
        return "fp16"
    if any(t.data_type == half for t in model.graph.initializer):  # FP16 weights behind FP32 I/O
        return "fp16"
    return "fp32"


def format_shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "dynamic"
    return "x".join("?" if d < 0 else str(d) for d in shape)


class Runner(ABC):
    """A loaded model: call it on NCHW float32 arrays; close it (or use ``with``) to free it.

    Subclasses implement ``_infer`` and ``_release`` and fill ``_describe``; the base class checks
    inputs (dtype, rank, static dims) and refuses calls after ``close()``, so every backend gives
    the same errors.
    """

    backend: ClassVar[str] = ""

    def __init__(self, *, device: str, precision: str, source: str, threads: int | None = None) -> None:
        self.device = device
        self.precision = precision
        self.source = source
        self.threads = threads
        self._closed = False

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...] | None:
        """NCHW with -1 for dynamic dims, or None when nothing is known."""

    @abstractmethod
    def _infer(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _release(self) -> None: ...

    def _describe(self) -> dict[str, Any]:
        """Backend-specific entries for describe()."""
        return {}

    def check_input(self, x: Any) -> np.ndarray:
        """The input as a C-contiguous array, or UsageError saying what was expected."""
        expected = self.input_shape
        want = format_shape(expected) if expected else "N x C x H x W"
        if not isinstance(x, np.ndarray):
            msg = f"{self.backend} runner takes a numpy array ({want}, float32), got {type(x).__name__}"
            raise UsageError(msg)
        if x.dtype != np.float32:
            msg = (
                f"{self.backend} runner takes float32 input, got {x.dtype}; convert with x.astype(np.float32)"
            )
            raise UsageError(msg)
        if x.ndim != 4:
            msg = f"{self.backend} runner takes a 4-D NCHW array ({want}), got shape {x.shape}"
            raise UsageError(msg)
        if expected is not None and any(e > 0 and e != g for e, g in zip(expected, x.shape)):
            got = "x".join(map(str, x.shape))
            msg = f"{self.backend} artifact expects input {want}, got {got}; resize or tile the image to {want} (python -m runtimes enhance does this)"
            raise UsageError(msg)
        return np.ascontiguousarray(x)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._closed:
            msg = f"this {self.backend} runner was closed; load the artifact again to run it"
            raise UsageError(msg)
        return self._infer(self.check_input(x))

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name, float32; "output" (the image) first.

        For graphs that expose more than the image, e.g. IAT's per-frame gamma and colour matrix
        (zoo.GlobalParams) that a video runner smooths over time.
        """
        if self._closed:
            msg = f"this {self.backend} runner was closed; load the artifact again to run it"
            raise UsageError(msg)
        return self._infer_outputs(self.check_input(x))

    def _infer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        msg = f"the {self.backend} runner returns only the image; use the openvino, onnxruntime or tensorrt backend for named outputs"
        raise UsageError(msg)

    @property
    def closed(self) -> bool:
        return self._closed

    def thread_state(self) -> Any:
        """What running this runner sets on the threads it runs on that another runner of the same
        process would then run with (None: nothing). OpenVINO: its denormal mode (runtimes.isolation)."""
        return None

    def portable(self, folder: Path) -> dict[str, Any]:
        """How another process loads this runner: {"backend", "path", "device", "options"}, writing
        what it needs into ``folder`` (runtimes.isolation)."""
        msg = f"the {self.backend} runner cannot be loaded in another process"
        raise UsageError(msg)

    def describe(self) -> dict[str, Any]:
        """Backend, versions, device, precision, threads and backend-specific settings."""
        info: dict[str, Any] = {
            "backend": self.backend,
            "source": self.source,
            "device": self.device,
            "precision": self.precision,
            "threads": self.threads,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "closed": self._closed,
        }
        info.update(self._describe())
        return info

    def close(self) -> None:
        """Release the session/engine; calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(ABC):
    """One inference runtime: whether it is here, what it builds, how it loads."""

    name: ClassVar[str] = ""
    can_build: ClassVar[bool] = False  # False: load() runs the model file itself
    default_device: ClassVar[str] = "cpu"
    suffixes: ClassVar[tuple[str, ...]] = ()  # artifact suffixes this backend loads
    options: ClassVar[tuple[str, ...]] = ()  # the keys load() accepts in ``options``

    @abstractmethod
    def is_available(self) -> tuple[bool, str]:
        """(True, versions) or (False, what is missing and how to get it); never raises."""

    def require(self) -> None:
        """MissingRequirement with the is_available() reason unless the backend is usable."""
        ok, reason = self.is_available()
        if not ok:
            msg = f"backend {self.name} is not available: {reason}"
            raise MissingRequirement(msg)

    def build(self, model_file: Path, config: BuildConfig, out_dir: Path) -> Artifact:
        """Build an artifact from ``model_file`` (ONNX) into ``out_dir``."""
        msg = f"backend {self.name} has nothing to build: it runs {model_file} itself; call load() on it"
        raise UsageError(msg)

    @abstractmethod
    def load(self, artifact: Any, device: str | None = None, options: dict | None = None) -> Runner:
        """A Runner for ``artifact`` on ``device`` (None: the backend's default device)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
