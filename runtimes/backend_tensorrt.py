"""TensorRT 10: engines from ONNX, cached by content, with a sidecar JSON beside a plain .engine.

Written against the TensorRT 10 Python API; no machine this project runs on has TensorRT, so the
GPU parts are skipped in tests and the cache logic is kept in plain functions that are tested
without it.

- Precision: fp32, fp16 (BuilderFlag.FP16, with the precision plan's "float_nodes" pinned to
  FP32 under OBEY_PRECISION_CONSTRAINTS), int8 only from a Q/DQ ONNX (the quantize stage's
  output), built as a STRONGLY_TYPED network as TensorRT 10 recommends for explicit
  quantization: the Q/DQ placement is the plan, so no layer precisions are set. There is no
  implicit (calibrator) INT8: calibration belongs to the quantize stage.
- Shapes: a static ONNX builds as is; a dynamic one needs ``BuildConfig.profile`` (min/opt/max)
  or ``input_shape`` (min = opt = max).
- Cache (pain points 4-6 in docs/users.md): the engine is ``<key>.engine`` where key hashes the
  ONNX sha256, the plan sha256, precision, shapes, workspace, DLA core, the TensorRT version and
  the GPU name and compute capability. ``<key>.engine.json`` beside it records all of that plus
  the engine's own sha256. Nothing is prepended to the engine, so trtexec loads it. A build with
  a cached engine whose sidecar does not match (or whose bytes changed) rebuilds it; ``load``
  refuses an engine whose sidecar names another TensorRT version or GPU.
- Running: no torch (JetPack has none). Device buffers, copies and the stream come from the CUDA
  runtime through ctypes (runtimes/cuda.py, every cudaError_t checked); execution is
  ``execute_async_v3`` with TensorRT 10's name-based I/O. Every output of the engine is allocated:
  ``__call__`` returns output 0 (the image), ``_infer_outputs`` all of them by name.
- Shipped to a remote device (bench.remote): kept Python 3.8.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.atomic import atomic_path
from lowlight_edge.errors import ConfigError, DataError, LowlightError, MissingRequirement, UsageError
from lowlight_edge.hashing import hash_dict, sha256_bytes, sha256_file
from lowlight_edge.plan import PrecisionPlan, load_plan
from runtimes.base import (
    Artifact,
    Backend,
    BuildConfig,
    Runner,
    artifact_path,
    check_options,
    format_shape,
    onnx_precision,
    read_sidecar,
    sidecar_path,
)
from runtimes.cuda import cuda_runtime, cuda_status, device_index

log = logging.getLogger(__name__)

ENGINE_FORMAT = "lowlight-edge/tensorrt-engine/1"
RUNTIME_FIELDS = ("tensorrt", "gpu_name", "compute_capability")  # what load() checks against this machine
OPTIONS = ()  # the engine fixes everything; there is nothing to choose at load time


# --- plain functions: precision plan, cache key, sidecar (tested without TensorRT) -------------


def plan_tensors(plan: PrecisionPlan, onnx_file: Path) -> dict[str, list[str]]:
    """{float node: its output tensor names}; ConfigError naming nodes that are not in the ONNX.

    TensorRT's ONNX parser keeps ONNX tensor names, so a node's outputs identify its layers even
    when the layer names differ; a plan written for another export is caught here, not ignored.
    """
    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    outputs = {node.name: list(node.output) for node in graph.node if node.name}
    missing = [n for n in plan.float_names if n not in outputs]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        msg = f"precision plan names {len(missing)} node(s) not in {onnx_file.name} ({shown}); the plan was made for another export: rerun python -m quantize"
        raise ConfigError(msg)
    return {n: outputs[n] for n in plan.float_names}


def engine_fields(onnx_file: Path, config: BuildConfig, identity: dict[str, Any]) -> dict[str, Any]:
    """Everything an engine depends on, as JSON: the inputs of the cache key.

    ``identity`` is the TensorRT version and GPU ({"tensorrt", "gpu_name", "compute_capability"}).
    """

    missing = [k for k in RUNTIME_FIELDS if k not in identity]
    if missing:
        msg = f"engine identity lacks {missing}"  # internal: runtime_identity() always fills them
        raise ValueError(msg)
    return {
        "onnx_sha256": sha256_file(onnx_file),
        "plan_sha256": sha256_file(config.plan) if config.plan else None,
        "precision": config.precision,
        "shapes": config.shapes(),
        "workspace_mb": config.workspace_mb,
        "dla_core": config.dla_core,
        **{k: identity[k] for k in RUNTIME_FIELDS},
    }


def engine_key(fields: dict[str, Any]) -> str:
    """24 hex digits of the sha256 of ``fields`` (sorted JSON): the engine's file name."""

    return hash_dict(fields, length=24)


def sidecar_mismatches(
    sidecar: dict | None,
    expected: dict[str, Any],
    engine_sha256: str | None = None,
    keys: tuple[str, ...] | None = None,
) -> list[str]:
    """Why an engine may not be used, one phrase per reason; [] when its sidecar matches.

    Args:
        sidecar: the engine's sidecar JSON (None when there is none).
        expected: the fields required now (engine_fields(), or runtime_identity() at load).
        engine_sha256: the engine file's current sha256, checked against the recorded one.
        keys: which fields to compare (default: all of ``expected``).
    """
    if sidecar is None:
        return ["no sidecar JSON beside the engine"]
    if sidecar.get("format") != ENGINE_FORMAT:
        return [f"sidecar format is {sidecar.get('format')!r}, not {ENGINE_FORMAT!r}"]
    built = sidecar.get("fields")
    if not isinstance(built, dict):
        return ["sidecar has no 'fields' record"]
    problems = [
        f"{k} was {built.get(k)!r} at build time, now {expected[k]!r}"
        for k in (keys or tuple(expected))
        if built.get(k) != expected.get(k)
    ]
    if engine_sha256 is not None and sidecar.get("engine_sha256") != engine_sha256:
        problems.append("the engine file changed since it was built (sha256 differs from its sidecar)")
    return problems


def cached_engine(out_dir: Path, fields: dict[str, Any]) -> tuple[Path, list[str]]:
    """(engine path for ``fields``, reasons it cannot be reused); no reasons = a usable cache hit."""

    path = Path(out_dir) / f"{engine_key(fields)}.engine"
    if not path.is_file():
        return path, ["not built yet"]
    try:
        side = read_sidecar(path)
    except ConfigError as err:
        return path, [str(err)]
    return path, sidecar_mismatches(side, fields, sha256_file(path))


def write_engine(path: Path, data: bytes, meta: dict[str, Any], precision: str) -> Artifact:
    """Write the engine bytes (plain, loadable by trtexec) and then its sidecar, atomically each."""

    path = Path(path)
    sidecar_path(path).unlink(missing_ok=True)  # a crash in between leaves no sidecar, never a wrong one
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    artifact = Artifact(
        path=path,
        backend="tensorrt",
        precision=precision,
        meta={"format": ENGINE_FORMAT, **meta, "engine_sha256": sha256_bytes(data)},
    )
    artifact.write_sidecar()
    return artifact


def dynamic_profile(network_dims: tuple[int, ...], config: BuildConfig) -> tuple[tuple[int, ...], ...] | None:
    """(min, opt, max) for the network input, or None for a static one; UsageError on a clash."""
    dynamic = any(d < 0 for d in network_dims)
    if not dynamic:
        if config.profile is not None:
            msg = f"the ONNX input is static ({format_shape(network_dims)}); drop the profile or re-export with dynamic H/W"
            raise UsageError(msg)
        if config.input_shape is not None and tuple(config.input_shape) != tuple(network_dims):
            msg = f"the ONNX input is {format_shape(network_dims)} but input_shape asks for {format_shape(config.input_shape)}; re-export at that size"
            raise UsageError(msg)
        return None
    if config.profile is not None:
        shapes = tuple(tuple(config.profile[k]) for k in ("min", "opt", "max"))
    elif config.input_shape is not None:
        shapes = (tuple(config.input_shape),) * 3
    else:
        msg = f"the ONNX input is dynamic ({format_shape(network_dims)}); give BuildConfig.profile (min/opt/max) or input_shape"
        raise UsageError(msg)
    for shape in shapes:
        if len(shape) != len(network_dims) or any(
            n > 0 and n != s for n, s in zip(network_dims, shape)
        ):
            msg = f"shape {format_shape(shape)} does not fit the ONNX input {format_shape(network_dims)}"
            raise UsageError(msg)
    return shapes


# --- TensorRT and CUDA ----------------------------------------------------------------------

# The flavours this backend was written for: module name -> supported major versions.
# TensorRT 10 (JetPack 6 ships 10.3) and 11, and TensorRT for RTX 1.x; all strongly typed.
FLAVOURS: dict[str, tuple[int, ...]] = {"tensorrt_rtx": (1,), "tensorrt": (10, 11)}
FLAVOUR_NAMES = {"rtx": "tensorrt_rtx", "tensorrt": "tensorrt"}
DEFAULT_FLAVOUR = "rtx"  # what runs on a desktop RTX card, and the one that builds without a GPU
RTX_DEFAULT_CCS = "8.0, 8.6, 8.9, 12.0 and later (TensorRT-RTX default)"


def import_trt(flavour: str = DEFAULT_FLAVOUR) -> Any:
    """The TensorRT module of ``flavour`` (rtx | tensorrt); MissingRequirement naming the fix.

    A version this backend was not written for is refused rather than half-used.
    """
    import importlib

    if flavour not in FLAVOUR_NAMES:
        msg = f"unknown TensorRT flavour {flavour!r}; choose rtx (TensorRT for RTX) or tensorrt"
        raise UsageError(msg)
    module = FLAVOUR_NAMES[flavour]
    install = "pip install tensorrt-rtx-cu12" if flavour == "rtx" else "JetPack 6 on a Jetson, or NVIDIA's TensorRT 10/11 wheels"
    try:
        trt = importlib.import_module(module)
    except ImportError as err:
        msg = f"{module} is not importable ({err}); install it: {install}"
        raise MissingRequirement(msg) from err
    except Exception as err:  # e.g. OSError: one of its shared libraries is missing
        msg = f"{module} fails to import ({type(err).__name__}: {err}); reinstall it: {install}"
        raise MissingRequirement(msg) from err
    version = str(getattr(trt, "__version__", "?"))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) not in FLAVOURS[module]:
        msg = f"{module} {version} is not a version this backend was written for ({module} {' or '.join(map(str, FLAVOURS[module]))}.x)"
        raise MissingRequirement(msg)
    if not hasattr(trt, "Builder"):
        msg = f"{module} {version} is a lean/dispatch runtime without a builder; install the full package: {install}"
        raise MissingRequirement(msg)
    return trt


_LOGGERS: dict[str, Any] = {}


def _trt_logger(trt: Any) -> Any:
    """One logger per TensorRT module that forwards to logging and keeps the last errors."""
    if trt.__name__ not in _LOGGERS:

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors = [*self.errors[-9:], msg]
                    log.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    log.warning("TensorRT: %s", msg)
                else:
                    log.debug("TensorRT: %s", msg)

        _LOGGERS[trt.__name__] = _Logger()
    return _LOGGERS[trt.__name__]


def _last_errors(trt: Any) -> str:
    errors = _trt_logger(trt).errors
    return errors[-1] if errors else "no error message (run with logging at DEBUG for the TensorRT log)"


def builder_version(flavour: str = DEFAULT_FLAVOUR) -> str:
    """'tensorrt_rtx 1.7.1.116', or why that flavour is absent (part of the engine stage's key)."""
    try:
        trt = import_trt(flavour)
    except LowlightError as err:
        return f"{flavour} absent ({err})"
    return f"{trt.__name__} {trt.__version__}"


def gpu_present(device: str = "cuda") -> bool:
    """Whether the CUDA runtime sees ``device`` (running an engine needs one; building RTX does not)."""
    return cuda_status(device)[0]


def runtime_identity(device: str = "cuda", flavour: str = DEFAULT_FLAVOUR) -> dict[str, Any]:
    """Builder module and version, and the GPU the engine is for.

    TensorRT-RTX builds ahead of time for a set of compute capabilities, without a GPU, so its
    identity names that set; TensorRT builds for the GPU it runs on (name and capability).
    """
    trt = import_trt(flavour)
    ident = {"tensorrt": f"{trt.__name__} {trt.__version__}"}
    if trt.__name__ == "tensorrt_rtx":
        return {**ident, "gpu_name": "any supported (ahead-of-time build)", "compute_capability": RTX_DEFAULT_CCS}
    ok, why = cuda_status(device)
    if not ok:
        msg = f"{trt.__name__} {trt.__version__} builds for the GPU it runs on and there is none here ({why}); build on the device, or use the rtx flavour"
        raise MissingRequirement(msg)
    cuda, index = cuda_runtime(), device_index(device)
    major, minor = cuda.compute_capability(index)
    return {**ident, "gpu_name": cuda.device_name(index), "compute_capability": f"{major}.{minor}"}


def _build_engine(onnx_file: Path, config: BuildConfig, flavour: str) -> tuple[bytes, dict[str, Any]]:
    """Parse a strongly typed network, configure and build; the engine bytes and sidecar notes.

    Precision lives in the ONNX (FP32, FP16 tensors, or Q/DQ pairs): no weak-typing API is used,
    so the same code builds on TensorRT 10.3, TensorRT 11 and TensorRT-RTX.
    """
    trt = import_trt(flavour)
    logger = _trt_logger(trt)
    logger.errors = []  # report this build's errors, not an earlier one's
    found = onnx_precision(onnx_file)
    if found != config.precision:
        fix = {"int8": "the QDQ ONNX of the quantize stage", "fp16": "the FP16 ONNX (export stage engine)", "fp32": "the simplified ONNX"}[config.precision]
        msg = f"{onnx_file.name} is a {found} ONNX and a strongly typed engine takes its precision from the ONNX; build precision {config.precision} from {fix}"
        raise UsageError(msg)
    notes: dict[str, Any] = {"builder": f"{trt.__name__} {trt.__version__}", "typing": "strongly typed: precision from the ONNX tensors"}

    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or _last_errors(trt)
        msg = f"{trt.__name__} {trt.__version__} cannot parse {onnx_file.name}: {errors}; simplify or re-export the ONNX (python -m export)"
        raise DataError(msg)
    if network.num_inputs != 1:
        msg = f"{onnx_file.name} has {network.num_inputs} inputs; runtimes builds single-image models with one NCHW input"
        raise UsageError(msg)
    tensor = network.get_input(0)

    bconf = builder.create_builder_config()
    bconf.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mb << 20)
    if hasattr(trt.BuilderFlag, "TF32"):
        bconf.clear_flag(trt.BuilderFlag.TF32)  # on by default: "fp32" layers would run TF32 on Ampere+
        notes["tf32"] = "off"
    shapes = dynamic_profile(tuple(tensor.shape), config)
    if shapes is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, *shapes)
        bconf.add_optimization_profile(profile)
        notes["profile"] = {k: list(s) for k, s in zip(("min", "opt", "max"), shapes)}

    if config.dla_core is not None:
        if trt.__name__ == "tensorrt_rtx" or builder.num_DLA_cores == 0:
            msg = "dla_core was given but this builder/device has no DLA cores (DLA exists on Jetson Xavier/Orin with TensorRT); drop dla_core"
            raise MissingRequirement(msg)
        if config.dla_core >= builder.num_DLA_cores:
            msg = f"dla_core {config.dla_core} does not exist; this device has {builder.num_DLA_cores} DLA core(s)"
            raise UsageError(msg)
        if config.precision == "fp32":
            msg = "DLA runs FP16 or INT8 only; build with precision fp16 or int8 for dla_core"
            raise UsageError(msg)
        bconf.default_device_type = trt.DeviceType.DLA
        bconf.DLA_core = config.dla_core
        bconf.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        notes["dla"] = {"core": config.dla_core, "gpu_fallback": True}

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, bconf)
    if serialized is None:
        msg = f"{trt.__name__} {trt.__version__} could not build {onnx_file.name}: {_last_errors(trt)}"
        raise MissingRequirement(msg)
    notes["build_s"] = round(time.perf_counter() - start, 3)
    return bytes(serialized), notes


_NUMPY_DTYPES = {  # TensorRT DataType name -> numpy dtype of the host copy
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def _numpy_dtype(trt_dtype: Any) -> Any:
    dtype = _NUMPY_DTYPES.get(getattr(trt_dtype, "name", ""))
    if dtype is None:
        msg = f"engine I/O type {trt_dtype} is not supported here; export with float32 I/O"
        raise UsageError(msg)
    return np.dtype(dtype)


class TensorRTRunner(Runner):
    """One engine on one GPU: buffers for the input and every output, one CUDA stream, no torch."""

    backend = "tensorrt"

    def __init__(self, path: Path, device: str, sidecar: dict | None, flavour: str = DEFAULT_FLAVOUR) -> None:
        trt = import_trt(flavour)
        self._trt = trt
        self._side = sidecar or {}
        super().__init__(device=device, precision=self._side.get("precision", "unknown"), source=str(path))
        self._cuda = cuda_runtime()
        self._index = device_index(device)
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._stream = 0
        self._context = self._engine = self._runtime = None
        self._cuda.set_device(self._index)  # the runtime, engine and buffers live on this GPU
        _trt_logger(trt).errors = []
        self._runtime = trt.Runtime(_trt_logger(trt))
        dla = (self._side.get("fields") or {}).get("dla_core")
        if dla is not None:
            self._runtime.DLA_core = int(dla)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            msg = f"{trt.__name__} {trt.__version__} cannot deserialize {path}: {_last_errors(trt)}; rebuild the engine"
            raise UsageError(msg)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not self._outputs:
            msg = f"{path} has inputs {inputs} and outputs {self._outputs}; runtimes runs single-image models (one input; the image is output 0)"
            raise UsageError(msg)
        self._input = inputs[0]
        self._dtypes = {n: _numpy_dtype(self._engine.get_tensor_dtype(n)) for n in names}
        self._shape = tuple(int(d) for d in self._engine.get_tensor_shape(self._input))
        self._bounds = None
        if any(d < 0 for d in self._shape):
            lo, _, hi = self._engine.get_tensor_profile_shape(self._input, 0)
            self._bounds = (tuple(int(d) for d in lo), tuple(int(d) for d in hi))
        self._context = self._engine.create_execution_context()
        self._stream = self._cuda.stream_create()

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._shape if len(self._shape) == 4 else None

    @property
    def output_names(self) -> list[str]:
        """The engine's outputs in order; the first is the image."""
        return list(self._outputs)

    def check_input(self, x: Any) -> np.ndarray:
        x = super().check_input(x)
        if self._bounds is not None:
            lo, hi = self._bounds
            if any(not a <= g <= b for a, g, b in zip(lo, x.shape, hi)):
                got = "x".join(map(str, x.shape))
                msg = f"engine profile takes {format_shape(lo)} to {format_shape(hi)}, got {got}; tile or resize the input, or rebuild with a larger profile"
                raise UsageError(msg)
        return x

    def _buffer(self, name: str, nbytes: int) -> int:
        """The device buffer of ``name``, grown (never shrunk) to ``nbytes``."""
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            self._buffers.pop(name, None)
            self._cuda.free(ptr)
            ptr = self._cuda.malloc(nbytes)
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def _infer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the engine by name (floating outputs as float32), output 0 first."""
        cuda, stream = self._cuda, self._stream
        cuda.set_device(self._index)
        host_in = np.ascontiguousarray(x, dtype=self._dtypes[self._input])
        if not self._context.set_input_shape(self._input, tuple(host_in.shape)):
            msg = f"engine input {self._input!r} does not take shape {format_shape(host_in.shape)}: {_last_errors(self._trt)}"
            raise UsageError(msg)
        dev_in = self._buffer(self._input, host_in.nbytes)
        cuda.copy_to_device(dev_in, host_in, stream)
        self._context.set_tensor_address(self._input, dev_in)
        hosts = {}
        for name in self._outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                msg = f"engine output {name!r} has an unresolved shape {shape} for input {format_shape(host_in.shape)}; rebuild the engine"
                raise UsageError(msg)
            hosts[name] = np.empty(shape, dtype=self._dtypes[name])
            self._context.set_tensor_address(name, self._buffer(name, hosts[name].nbytes))
        if not self._context.execute_async_v3(stream):
            msg = f"TensorRT execution failed: {_last_errors(self._trt)}"
            raise MissingRequirement(msg)
        for name, host in hosts.items():
            cuda.copy_to_host(host, self._buffers[name][0], stream)
        cuda.synchronize(stream)  # host_in and every host output stay referenced until here
        return {n: a.astype(np.float32, copy=False) if a.dtype.kind == "f" else a for n, a in hosts.items()}

    def _infer(self, x: np.ndarray) -> np.ndarray:
        return self._infer_outputs(x)[self._outputs[0]]

    def _release(self) -> None:
        self._context = None  # context before engine before runtime, as TensorRT requires
        self._engine = None
        self._runtime = None
        buffers, self._buffers = self._buffers, {}
        for ptr, _ in buffers.values():  # after the context: nothing can still use them
            self._cuda.free(ptr)
        stream, self._stream = self._stream, 0
        self._cuda.stream_destroy(stream)

    def _describe(self) -> dict[str, Any]:
        trt = self._trt
        fields = self._side.get("fields") or {}
        return {
            "versions": {trt.__name__: trt.__version__, **self._cuda.versions()},
            "gpu": self._cuda.device_name(self._index),
            "compute_capability": "{}.{}".format(*self._cuda.compute_capability(self._index)),
            "libcudart": self._cuda.path,
            "outputs": list(self._outputs),
            "engine_key": self._side.get("key"),
            "dla_core": fields.get("dla_core"),
            "profile": [list(b) for b in self._bounds] if self._bounds else None,
            "sidecar": bool(self._side),
        }


class TensorRTBackend(Backend):
    name = "tensorrt"
    can_build = True
    default_device = "cuda"
    suffixes = (".engine", ".plan", ".trt")
    options = OPTIONS

    def is_available(self, flavour: str = DEFAULT_FLAVOUR) -> tuple[bool, str]:
        """Whether engines can be built here (the builder imports); running also needs a GPU."""
        try:
            trt = import_trt(flavour)
        except MissingRequirement as err:
            return False, str(err)
        gpu, why = cuda_status()
        run = f"run: yes ({why})" if gpu else f"run: no (needs a CUDA GPU: {why})"
        if trt.__name__ == "tensorrt" and not gpu:
            return False, f"tensorrt {trt.__version__}: build needs the target GPU and none is here; {run}"
        return True, f"{trt.__name__} {trt.__version__}: build: yes; {run}"

    def flavours(self) -> dict[str, tuple[bool, str]]:
        """is_available() of each flavour, for `python -m runtimes list`."""
        return {name: self.is_available(name) for name in FLAVOUR_NAMES}

    def build(self, model_file: Path, config: BuildConfig, out_dir: Path) -> Artifact:
        """``out_dir/<key>.engine`` (+ ``.engine.json``), reused when its sidecar matches."""
        model_file = Path(model_file)
        if not model_file.is_file() or model_file.suffix.lower() != ".onnx":
            msg = f"ONNX file {model_file} does not exist or is not .onnx; export the model first (python -m export)"
            raise UsageError(msg)
        if config.threads is not None:
            msg = "threads sets OpenVINO's build-time compile check; a TensorRT build cannot use it: drop it"
            raise UsageError(msg)
        if config.plan is not None:  # a malformed plan, or one made for another export, fails here
            plan_tensors(load_plan(config.plan), model_file)
        flavour = config.flavour or DEFAULT_FLAVOUR
        fields = engine_fields(model_file, config, runtime_identity(flavour=flavour))
        path, problems = cached_engine(Path(out_dir), fields)
        if not problems:
            side = read_sidecar(path) or {}
            meta = {k: v for k, v in side.items() if k not in ("backend", "precision")}
            return Artifact(
                path=path, backend=self.name, precision=config.precision, meta={**meta, "cache": "hit"}
            )
        if path.is_file():
            log.warning("rebuilding %s: %s", path.name, "; ".join(problems))
        data, notes = _build_engine(model_file, config, flavour)
        meta = {
            "key": path.stem,
            "fields": fields,
            "onnx": str(model_file),
            "plan": str(config.plan) if config.plan else None,
            "flavour": flavour,
            "compute_capabilities": fields["compute_capability"],
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **notes,
        }
        artifact = write_engine(path, data, meta, config.precision)
        artifact.meta["cache"] = "miss"
        return artifact

    def load(self, artifact: Any, device: str | None = None, options: dict | None = None) -> TensorRTRunner:
        """Runner for an engine; refuses one whose sidecar names another TensorRT version or GPU.

        An engine without a sidecar (e.g. from trtexec) loads with a warning, unchecked.
        """

        check_options(options, OPTIONS, self.name)
        path = artifact_path(artifact, self.name)
        device = device or self.default_device
        if not device.startswith("cuda"):
            msg = f"TensorRT runs on a CUDA GPU: pass device 'cuda' or 'cuda:N', got {device!r}"
            raise UsageError(msg)
        side = read_sidecar(path)
        flavour = (side or {}).get("flavour") or DEFAULT_FLAVOUR
        ok, why = cuda_status(device)
        if not ok:
            msg = f"engine {path.name} needs a CUDA GPU to run: {why}; run it on the target (python -m bench --target desktop-gpu, or --device ssh://...)"
            raise MissingRequirement(msg)
        if side is None:
            log.warning("%s has no sidecar JSON: cannot check its TensorRT version and GPU", path)
        else:
            problems = sidecar_mismatches(
                side, runtime_identity(device, flavour), sha256_file(path), keys=RUNTIME_FIELDS
            )
            if problems:
                msg = f"engine {path.name} cannot run here: {'; '.join(problems)}; rebuild it on this machine (python -m export)"
                raise UsageError(msg)
        return TensorRTRunner(path, device, side, flavour)


BACKEND = TensorRTBackend()
