"""OpenVINO on CPU: builds an IR (model.xml + model.bin) from ONNX and runs it.

``build`` converts the ONNX file, sets the requested static shape or dimension bounds, and
compiles it once on CPU before saving, so a model OpenVINO cannot compile fails at build time
rather than in the bench. A measured OpenVINO 2026.4 bug makes that check necessary: TinyDCE
FP32 from ONNX fails to compile at 720x1280 and above ("No suitable implementations found",
seen on an AVX2-only CPU) while ``ov.convert_model`` of the torch module compiles and gives
identical output. When the ONNX path fails and the caller passed ``BuildConfig.torch_fallback``,
the torch module is converted instead; the reason is logged and recorded in the artifact's
sidecar ({"fallback": ...}). INT8 IRs made by NNCF elsewhere load like any other IR.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.errors import DataError, MissingRequirement, UsageError
from lowlight_edge.hashing import sha256_file
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

log = logging.getLogger(__name__)

OPTIONS = ("threads", "hint", "precision")
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
INFERENCE_PRECISIONS = ("f32", "f16", "bf16")
QUANTIZED_OPS = {"FakeQuantize", "FakeConvert"}
EXAMPLE_HW = 96  # H, W of the torch example input when the shape is dynamic (a multiple of 12 and 16)


def ov_error(err: BaseException) -> str:
    """The informative line of an OpenVINO exception (it stacks 'Exception from file:line' lines)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if "Summary:" in lines:  # frontend conversion failures end with a summary of what failed
        return "; ".join(ln.lstrip("- ") for ln in lines[lines.index("Summary:") + 1 :])
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check "))]
    return (useful or lines or [type(err).__name__])[-1]


def partial_dims(partial_shape: Any) -> tuple[int, ...]:
    """An OpenVINO PartialShape as a tuple with -1 for each dynamic (or bounded) dim."""
    return tuple(d.get_length() if d.is_static else -1 for d in partial_shape)


def _onnx_input_dims(path: Path) -> tuple[int, ...]:
    """Input dims of a single-input ONNX, -1 where dynamic."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        msg = f"{path} has {len(inputs)} inputs; runtimes builds single-image models with one NCHW input"
        raise UsageError(msg)
    dims = inputs[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in dims)


def target_shape(onnx_dims: tuple[int, ...], config: BuildConfig) -> list[Any]:
    """The IR input shape: the ONNX's own, made static by input_shape or bounded by profile.

    A static ONNX cannot be re-shaped here (exported constants may depend on its size), so a
    different input_shape is a UsageError rather than a silent reshape.
    """
    import openvino as ov

    if len(onnx_dims) != 4:
        msg = f"runtimes builds NCHW models; the ONNX input has rank {len(onnx_dims)}"
        raise UsageError(msg)
    if config.input_shape is not None:
        clash = [
            i for i, (o, s) in enumerate(zip(onnx_dims, config.input_shape)) if o > 0 and o != s
        ]
        if clash:
            msg = (
                f"the ONNX input is {format_shape(onnx_dims)} but input_shape asks for "
                f"{format_shape(config.input_shape)}; re-export at that size or with dynamic H/W"
            )
            raise UsageError(msg)
        return list(config.input_shape)
    if config.profile is not None:
        lo, hi = config.profile["min"], config.profile["max"]
        dims: list[Any] = []
        for i, o in enumerate(onnx_dims):
            if o > 0 and not lo[i] == hi[i] == o:
                msg = f"profile varies dim {i}, which the ONNX fixes at {o} (input {format_shape(onnx_dims)}); re-export with dynamic H/W"
                raise UsageError(msg)
            dims.append(lo[i] if lo[i] == hi[i] else ov.Dimension(lo[i], hi[i]))
        return dims
    return [d if d > 0 else ov.Dimension() for d in onnx_dims]


def _example_shape(dims: list[Any], config: BuildConfig) -> tuple[int, ...]:
    if config.profile is not None:
        return tuple(config.profile["opt"])
    return tuple(d if isinstance(d, int) else (1 if i == 0 else EXAMPLE_HW) for i, d in enumerate(dims))


def _compile_error(core: Any, model: Any, threads: int | None) -> str | None:
    """None if ``model`` compiles on CPU, else the reason."""
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    try:
        compiled = core.compile_model(model, "CPU", config)
    except Exception as err:  # OpenVINO raises RuntimeError with a stacked message
        return ov_error(err)
    del compiled
    return None


def _is_quantized(model: Any) -> bool:
    return any(op.get_type_name() in QUANTIZED_OPS for op in model.get_ops())


class OpenVinoRunner(Runner):
    backend = "openvino"

    def __init__(self, model: Any, device: str, options: dict[str, Any], source: str, side: dict | None = None) -> None:
        """Compile ``model`` (an openvino.Model read from ``source``, or one made in memory)."""
        import openvino as ov

        self._side = side or {}
        if len(model.inputs) != 1:
            msg = f"{source} has {len(model.inputs)} inputs; runtimes runs single-image models with one NCHW input"
            raise UsageError(msg)
        precision = self._side.get("precision") or ("int8" if _is_quantized(model) else "fp32")
        super().__init__(device=device, precision=precision, source=source, threads=options.get("threads"))
        config: dict[str, Any] = {"PERFORMANCE_HINT": options["hint"]} if options.get("hint") else {}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        # f32 unless asked: on CPUs with AVX-512 BF16/AMX, OpenVINO's default silently runs an
        # "FP32" IR in bfloat16 (measured here: 69 dB instead of exact), and the float parts of an
        # INT8 IR with it; a precision change must be the user's choice, never the host's.
        config["INFERENCE_PRECISION_HINT"] = options.get("precision") or "f32"
        try:
            self._compiled = ov.Core().compile_model(model, device.upper(), config)
        except Exception as err:
            msg = (
                f"OpenVINO {ov.__version__} cannot compile {source} on {device.upper()}: {ov_error(err)}; "
                "rebuild it with python -m export (which falls back to the torch module) or use another backend"
            )
            raise MissingRequirement(msg) from err
        self._request = self._compiled.create_infer_request()
        self._shape = partial_dims(self._compiled.input(0).get_partial_shape())

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._shape if len(self._shape) == 4 else None

    def _infer(self, x: np.ndarray) -> np.ndarray:
        self._request.infer({0: x})
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _release(self) -> None:
        self._request = None
        self._compiled = None

    def _describe(self) -> dict[str, Any]:
        import openvino as ov

        info: dict[str, Any] = {"versions": {"openvino": ov.__version__}}
        for key in ("frontend", "fallback"):
            if key in self._side:
                info[key] = self._side[key]
        if self._compiled is not None:
            for key, name in (
                ("threads", "INFERENCE_NUM_THREADS"),
                ("hint", "PERFORMANCE_HINT"),
                ("inference_precision", "INFERENCE_PRECISION_HINT"),
            ):
                try:
                    info[key] = self._compiled.get_property(name)
                except Exception:  # a device may not report every property
                    continue
                value = info[key]
                if hasattr(value, "get_type_name"):  # ov.Type -> "f32"
                    info[key] = value.get_type_name()
                elif not isinstance(value, (int, float, str)):
                    info[key] = str(value)
        return info


class OpenVinoBackend(Backend):
    name = "openvino"
    can_build = True
    default_device = "cpu"
    suffixes = (".xml",)
    options = OPTIONS

    def is_available(self) -> tuple[bool, str]:
        try:
            import openvino as ov
        except ImportError as err:
            return False, f"openvino is not importable ({err}); pip install openvino"
        try:
            devices = ov.Core().available_devices
        except Exception as err:
            return False, f"openvino {ov.__version__} cannot list devices: {ov_error(err)}"
        if "CPU" not in devices:
            return False, f"openvino {ov.__version__} has no CPU device (devices: {devices})"
        return True, f"openvino {ov.__version__}; devices {', '.join(devices)}"

    def build(self, model_file: Path, config: BuildConfig, out_dir: Path) -> Artifact:
        """Convert ``model_file`` (ONNX) to ``out_dir/model.xml`` + ``.bin`` (+ ``model.xml.json``).

        Precision fp32 saves FP32 weights, fp16 saves FP16-compressed weights (the CPU still
        computes in the load-time inference precision), int8 needs a Q/DQ ONNX.
        """
        self.require()
        import openvino as ov

        model_file = Path(model_file)
        if not model_file.is_file() or model_file.suffix.lower() != ".onnx":
            msg = f"ONNX file {model_file} does not exist or is not .onnx; export the model first (python -m export)"
            raise UsageError(msg)
        foreign = [k for k in ("plan", "dla_core", "flavour") if getattr(config, k) is not None]
        if foreign:
            msg = f"{', '.join(foreign)} are TensorRT build options that an OpenVINO build cannot use; drop them"
            raise UsageError(msg)
        core = ov.Core()
        dims = target_shape(_onnx_input_dims(model_file), config)
        meta: dict[str, Any] = {"frontend": "onnx"}
        try:
            model = ov.convert_model(str(model_file))
        except Exception as err:
            reason = f"ONNX frontend cannot convert {model_file.name}: {ov_error(err)}"
        else:
            model.reshape(ov.PartialShape(dims))
            problem = _compile_error(core, model, config.threads)
            reason = problem and f"IR from ONNX fails to compile on CPU at {ov.PartialShape(dims)}: {problem}"
        if reason:
            model = self._from_torch(core, model_file, config, dims, reason)
            meta.update(frontend="pytorch", fallback=reason)
        quantized = onnx_precision(model_file) == "int8"
        if quantized != (config.precision == "int8"):
            msg = (
                f"{model_file.name} is quantized (Q/DQ); build it with precision int8"
                if quantized
                else f"precision int8 needs a quantized model but {model_file.name} has no Q/DQ nodes; quantize it first (python -m quantize) or build fp32/fp16"
            )
            raise UsageError(msg)
        meta.update(
            source=str(model_file),
            source_sha256=sha256_file(model_file),
            openvino=ov.__version__,
            input_shape=list(partial_dims(model.inputs[0].get_partial_shape())),
            shapes=config.shapes(),
            compile_check="CPU",
        )
        artifact = Artifact(
            path=Path(out_dir) / "model.xml", backend=self.name, precision=config.precision, meta=meta
        )
        self._save(model, artifact, compress=config.precision == "fp16")
        return artifact

    def _from_torch(
        self, core: Any, model_file: Path, config: BuildConfig, dims: list[Any], reason: str
    ) -> Any:
        """The IR from ``config.torch_fallback`` after the ONNX path failed for ``reason``."""
        import openvino as ov
        import torch

        if config.torch_fallback is None:
            msg = (
                f"OpenVINO {ov.__version__}: {reason}; build with BuildConfig(torch_fallback=...) "
                "to convert the torch module instead, or use another shape or backend"
            )
            raise MissingRequirement(msg)
        log.warning("OpenVINO %s: %s; converting the torch module instead", ov.__version__, reason)
        module = config.torch_fallback().eval()
        example = torch.zeros(_example_shape(dims, config))
        with torch.no_grad():
            model = ov.convert_model(module, example_input=example)
        model.reshape(ov.PartialShape(dims))
        problem = _compile_error(core, model, config.threads)
        if problem:
            msg = f"OpenVINO {ov.__version__}: {reason}; the torch fallback fails too: {problem}; use another backend"
            raise MissingRequirement(msg)
        return model

    def _save(self, model: Any, artifact: Artifact, compress: bool) -> None:
        """Write the IR into a temporary folder, then move .bin, .xml and the sidecar into place."""
        import openvino as ov

        out_dir = artifact.path.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        side = sidecar_path(artifact.path)
        with tempfile.TemporaryDirectory(prefix=".tmp-ir-", dir=out_dir) as tmp:
            try:
                ov.save_model(model, str(Path(tmp) / "model.xml"), compress_to_fp16=compress)
            except RuntimeError as err:  # a full disk surfaces as "basic_ios::clear", not as an OSError
                free_mb = shutil.disk_usage(out_dir).free / 2**20
                msg = f"OpenVINO could not write the IR into {out_dir} ({ov_error(err)}; {free_mb:.0f} MB free); free some space or choose another --out"
                raise MissingRequirement(msg) from err
            side.unlink(missing_ok=True)  # never leave a sidecar that describes the previous IR
            os.replace(Path(tmp) / "model.bin", artifact.path.with_suffix(".bin"))
            os.replace(Path(tmp) / "model.xml", artifact.path)
        artifact.write_sidecar()

    def load(self, artifact: Any, device: str | None = None, options: dict | None = None) -> OpenVinoRunner:
        """Compiled model for an IR (.xml) or an ONNX file.

        Options: threads (INFERENCE_NUM_THREADS), hint LATENCY | THROUGHPUT |
        CUMULATIVE_THROUGHPUT, precision f32 | f16 | bf16 (INFERENCE_PRECISION_HINT).
        """
        self.require()
        import openvino as ov

        options = check_options(options, OPTIONS, self.name)
        path = artifact_path(artifact, self.name)
        device = device or self.default_device
        devices = ov.Core().available_devices
        if device.upper() not in devices:
            msg = f"OpenVINO device {device!r} is not here (devices: {', '.join(devices)}); use device 'cpu'"
            raise MissingRequirement(msg)
        if "hint" in options and options["hint"] not in HINTS:
            msg = f"hint must be one of {', '.join(HINTS)}, got {options['hint']!r}"
            raise UsageError(msg)
        if "precision" in options and options["precision"] not in INFERENCE_PRECISIONS:
            msg = f"precision must be one of {', '.join(INFERENCE_PRECISIONS)} (OpenVINO inference precision), got {options['precision']!r}"
            raise UsageError(msg)
        try:
            model = ov.Core().read_model(str(path))
        except Exception as err:
            msg = f"OpenVINO cannot read {path}: {ov_error(err)}; rebuild the IR (python -m export)"
            raise DataError(msg) from err
        return OpenVinoRunner(model, device, options, str(path), read_sidecar(path))

    # --- In-memory models, for the quantize stage ----------------------------------------------
    # NNCF quantizes an openvino.Model in memory; these keep every OpenVINO call in this module.

    def read_onnx(self, path: Path) -> Any:
        """The FP32 openvino.Model of an ONNX file (what NNCF quantizes)."""
        self.require()
        import openvino as ov

        try:
            return ov.convert_model(str(path))
        except Exception as err:
            msg = f"OpenVINO {ov.__version__} cannot convert {Path(path).name}: {ov_error(err)}; re-export it (python -m export)"
            raise MissingRequirement(msg) from err

    def from_torch(self, module: Any, example: np.ndarray) -> Any:
        """The openvino.Model of a torch module (a QAT student with its fake-quantizers, say)."""
        self.require()
        import openvino as ov
        import torch

        with torch.no_grad():
            return ov.convert_model(module, example_input=torch.from_numpy(example))

    def runner(self, model: Any, threads: int | None, source: str = "an in-memory model") -> OpenVinoRunner:
        """A CPU runner of an in-memory model, compiled like a loaded IR (LATENCY, f32)."""
        self.require()
        return OpenVinoRunner(model, "cpu", {"threads": threads, "hint": "LATENCY"}, source)

    def reshape(self, model: Any, shape: tuple[int, ...]) -> None:
        """Give ``model`` a static input shape (an INT8 model calibrated on crops, at full size)."""
        model.reshape({model.inputs[0]: list(shape)})

    def save(self, model: Any, out_dir: Path, precision: str, meta: dict[str, Any]) -> Artifact:
        """``out_dir/model.xml`` + ``.bin`` + sidecar, the same layout ``build`` writes."""
        self.require()
        import openvino as ov

        meta = {"openvino": ov.__version__, "input_shape": list(partial_dims(model.inputs[0].get_partial_shape())), **meta}
        artifact = Artifact(path=Path(out_dir) / "model.xml", backend=self.name, precision=precision, meta=meta)
        self._save(model, artifact, compress=False)
        return artifact


def openvino_types(onnx_ops: Iterable[str]) -> list[str]:
    """The OpenVINO op types that ONNX op types become (for NNCF's ignored scope)."""
    return sorted({ov_type for op in onnx_ops for ov_type in ONNX_TO_OV_TYPES.get(op, ())})


ONNX_TO_OV_TYPES = {
    "Conv": ("Convolution", "GroupConvolution"),
    "ConvTranspose": ("ConvolutionBackpropData",),
    "Mul": ("Multiply",),
    "Add": ("Add",),
    "Sub": ("Subtract",),
    "Div": ("Divide",),
    "Pow": ("Power",),
    "MatMul": ("MatMul",),
    "Gemm": ("MatMul",),
    "Tanh": ("Tanh",),
    "Sigmoid": ("Sigmoid",),
    "Clip": ("Clamp",),
    "Resize": ("Interpolate",),
    "CumSum": ("CumSum",),
    "ReduceMean": ("ReduceMean",),
    "AveragePool": ("AvgPool",),
    "GlobalAveragePool": ("ReduceMean",),
}
LAYOUT_OPS = ("Reshape", "Transpose", "DepthToSpace", "SpaceToDepth", "Squeeze", "Unsqueeze", "Pad")
COMPUTE_TYPES = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")


def _is_quantized_input(node: Any) -> bool:
    """True when a tensor reaches its consumer through FakeQuantize.

    NNCF puts one FakeQuantize per Concat input (shared scales) rather than after the Concat,
    and layout ops keep INT8 values INT8, so both are looked through.
    """
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind == "Concat":
        return all(_is_quantized_input(v.get_node()) for v in node.input_values())
    if kind in LAYOUT_OPS:
        return _is_quantized_input(node.input_value(0).get_node())
    return False


def _drop_suffix(text: str, suffix: str) -> str:
    """str.removesuffix, which Python 3.8 (JetPack 5, where this module is shipped) lacks."""
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def float_compute_ops(int8_model: Any) -> list[str]:
    """ONNX names of the compute ops of an INT8 openvino.Model whose activation input is not quantized."""
    return [
        _drop_suffix(op.get_friendly_name(), "/WithoutBiases")
        for op in int8_model.get_ordered_ops()
        if op.get_type_name() in COMPUTE_TYPES and not _is_quantized_input(op.input_value(0).get_node())
    ]


BACKEND = OpenVinoBackend()
