"""OpenVINO on CPU: builds an IR (model.xml + model.bin) from ONNX and runs it.

``build`` converts the ONNX file, sets the requested static shape or dimension bounds, and
compiles it once on CPU before saving, so a model OpenVINO cannot compile fails at build time
rather than in the bench. A measured OpenVINO 2026.4 bug makes that check necessary: TinyDCE
FP32 from ONNX fails to compile at 720x1280 and above ("No suitable implementations found",
seen on an AVX2-only CPU) while ``ov.convert_model`` of the torch module compiles and gives
identical output. When the ONNX path fails and the caller passed ``BuildConfig.torch_fallback``,
the torch module is converted instead; the reason is logged and recorded in the artifact's
sidecar ({"fallback": ...}). INT8 IRs made by NNCF elsewhere load like any other IR.

Runtime options (``RUNTIME_OPTIONS``: inference precision, denormal flushing, f32 layers, CPU pinning) change speed and
not the graph. The quantize stage decides them per model and host and records them in the
precision plan and in each IR's sidecar (``"runtime_options"``); ``load`` applies the sidecar's
options, and an option the caller passes explicitly wins and is recorded as overriding it
(``describe()["runtime_options"]``). ``build`` picks up the plan's options for the precision it
builds from ``precision_plan.yaml`` beside the source ONNX when that plan was decided on the same
ONNX (its sha256), so the FP32 IR of an export carries them too.

Inference on the timed path makes no copies: the input reaches OpenVINO as a Tensor sharing the
numpy buffer, and a static-shape model writes its image output into a buffer this runner owns and
returns without copying. The returned array stays the caller's: if the caller still holds it (or
a view of it) at the next call, the runner gives OpenVINO a fresh output buffer instead of
overwriting it (checked by reference count), so ``[runner(x) for x in frames]`` keeps every
output while a loop that drops each result reuses one buffer, as a deployment would.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.errors import ConfigError, DataError, MissingRequirement, UsageError
from lowlight_edge.hashing import sha256_file
from lowlight_edge.plan import PLAN_FILE, load_plan
from runtimes.base import (
    Artifact,
    Backend,
    BuildConfig,
    Runner,
    artifact_path,
    check_options,
    format_shape,
    onnx_input_dims,
    onnx_precision,
    read_sidecar,
    sidecar_path,
)

log = logging.getLogger(__name__)

OPTIONS = ("threads", "hint", "precision", "denormals", "f32_layers", "cpu_pinning")
# Options that change speed but not the graph: what the quantize stage searches and a sidecar carries.
# precision: INFERENCE_PRECISION_HINT of the float layers; denormals: CPU_DENORMALS_OPTIMIZATION
# (flush denormals to zero), True/False, absent = OpenVINO's default (off); f32_layers: names of
# the graph's nodes that stay f32 under a reduced precision (``keep_f32``), a sorted list;
# cpu_pinning: ENABLE_CPU_PINNING (the stream threads pinned to cores), absent = OpenVINO's default (on).
RUNTIME_OPTIONS = ("precision", "denormals", "f32_layers", "cpu_pinning")
BOOL_OPTIONS = {"denormals": "CPU_DENORMALS_OPTIMIZATION", "cpu_pinning": "ENABLE_CPU_PINNING"}  # option -> OpenVINO property
SCHEDULING_OPTIONS = ("cpu_pinning",)  # where the threads run, not what they compute: outputs stay bit for bit
KEEP_F32_ATTRIBUTE = "DisablePrecisionConversion_0"  # what OpenVINO's IR reader makes of a "precise_0" mark
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
             "avx512_fp16", "amx_fp16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native bfloat16 arithmetic: a BF16 candidate needs one
FP16_FLAGS = ("avx512_fp16", "amx_fp16")  # native half-precision arithmetic (OpenVINO's f16 on x86 needs one)
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


def planned_runtime_options(model_file: Path, source_sha256: str, precision: str) -> dict[str, Any]:
    """Sidecar entries for the runtime options the quantize stage decided for this ONNX and precision.

    Read from PLAN_FILE beside ``model_file`` (where the export writes it), and only when the plan
    was decided on this very ONNX (its ``runtime.source_sha256``): a plan left from another export
    is ignored. {} when there is no plan or it decided nothing for ``precision``.
    """
    plan_path = Path(model_file).parent / PLAN_FILE
    if not plan_path.is_file():
        return {}
    runtime = load_plan(plan_path).runtime
    options = (runtime.get("options") or {}).get(precision)
    if runtime.get("source_sha256") != source_sha256 or options is None:
        return {}
    return {
        "runtime_options": check_runtime_options(options, f"precision plan {plan_path}"),
        "runtime_options_decided": {"by": f"quantize stage ({PLAN_FILE})", "host": runtime.get("host", {})},
    }


def _is_quantized(model: Any) -> bool:
    return any(op.get_type_name() in QUANTIZED_OPS for op in model.get_ops())


def check_runtime_options(options: Any, where: str) -> dict[str, Any]:
    """Validated runtime options (RUNTIME_OPTIONS) as read from ``where`` (a sidecar or a plan).

    A malformed record is a ConfigError naming the file: a runner must not guess what was decided.
    """
    if not isinstance(options, dict) or set(options) - set(RUNTIME_OPTIONS):
        msg = f"{where}: runtime_options must map {' / '.join(RUNTIME_OPTIONS)} to values, got {options!r}; rebuild the artifact (python -m export)"
        raise ConfigError(msg)
    if "precision" in options and options["precision"] not in INFERENCE_PRECISIONS:
        msg = f"{where}: runtime_options precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {options['precision']!r}; rebuild the artifact"
        raise ConfigError(msg)
    if "f32_layers" in options and not _is_name_list(options["f32_layers"]):
        msg = f"{where}: runtime_options f32_layers must be a list of node names, got {options['f32_layers']!r}; rebuild the artifact"
        raise ConfigError(msg)
    for key in BOOL_OPTIONS:
        if key in options and not isinstance(options[key], bool):
            msg = f"{where}: runtime_options {key} must be true or false, got {options[key]!r}; rebuild the artifact"
            raise ConfigError(msg)
    return dict(options)


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def reduces_precision(options: dict[str, Any]) -> bool:
    """Whether runtime options run float layers below f32 (BF16/FP16 inference): a lossy option,
    which a float artifact may carry only within the target's fidelity budget."""
    return options.get("precision") not in (None, "f32")


def check_load_options(options: dict[str, Any]) -> None:
    """UsageError for a hint, precision, denormals, f32_layers or cpu_pinning value OpenVINO would not take."""
    if "hint" in options and options["hint"] not in HINTS:
        msg = f"hint must be one of {', '.join(HINTS)}, got {options['hint']!r}"
        raise UsageError(msg)
    if "precision" in options and options["precision"] not in INFERENCE_PRECISIONS:
        msg = f"precision must be one of {', '.join(INFERENCE_PRECISIONS)} (OpenVINO inference precision), got {options['precision']!r}"
        raise UsageError(msg)
    if options.get("f32_layers") is not None and not _is_name_list(options["f32_layers"]):
        msg = f"f32_layers must be a list of the graph's node names, got {options['f32_layers']!r}"
        raise UsageError(msg)
    for key, prop in BOOL_OPTIONS.items():
        if options.get(key) is not None and not isinstance(options[key], bool):
            msg = f"{key} must be true or false ({prop}), got {options[key]!r}"
            raise UsageError(msg)


def keep_f32(model: Any, names: list[str], source: str) -> Any:
    """``model`` with the nodes ``names`` kept in f32 under a reduced inference precision (BF16/FP16).

    OpenVINO keeps a node in its original precision when it carries the DisablePrecisionConversion
    attribute. Set from Python as a "precise_0" entry of a node's rt_info it is a plain string, which
    the CPU plugin ignores (measured); the IR reader turns the same entry, saved, into the attribute.
    So the marked copy goes through a save and a read in a temporary folder (what reaches the plugin
    is then exactly what a shipped IR with the marks carries). ``model`` is left as it was; nodes
    already marked (an IR saved with them) are kept. A name the graph lacks is a ConfigError naming
    ``source``: f32_layers describe one graph.
    """
    import openvino as ov

    marked = model.clone()
    by_name = {op.get_friendly_name(): op for op in marked.get_ops()}
    missing = sorted(set(names) - set(by_name))
    if missing:
        msg = f"{source}: f32_layers names nodes the graph does not have ({', '.join(missing[:3])}); rebuild the artifact (python -m export)"
        raise ConfigError(msg)
    todo = [by_name[n] for n in names if KEEP_F32_ATTRIBUTE not in by_name[n].get_rt_info()]
    if not todo:
        return marked
    for op in todo:
        op.get_rt_info()["precise_0"] = ""
    with tempfile.TemporaryDirectory(prefix="lowlight-edge-f32-") as tmp:
        ov.save_model(marked, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        return ov.Core().read_model(str(Path(tmp) / "model.xml"))


def merge_options(artifact: dict[str, Any], explicit: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options to compile with, record): the artifact's runtime options, each explicit option winning.

    The record says where each runtime option came from ("artifact", "caller", or "default" for an
    f32 precision nobody asked for) and, under "overridden", every artifact option the caller
    replaced with another value (what the artifact said, what was used): never a silent change.
    """
    merged = {**artifact, **{k: v for k, v in explicit.items() if v is not None}}
    merged.setdefault("precision", "f32")
    origin = {
        key: ("caller" if explicit.get(key) is not None else "artifact" if key in artifact else "default")
        for key in RUNTIME_OPTIONS
        if key in merged
    }
    overridden = {
        key: {"artifact": artifact[key], "used": explicit[key]}
        for key in RUNTIME_OPTIONS
        if key in artifact and explicit.get(key) is not None and explicit[key] != artifact[key]
    }
    record: dict[str, Any] = {key: merged[key] for key in RUNTIME_OPTIONS if key in merged}
    record = {"used": record, "from": origin}
    if overridden:
        record["overridden"] = overridden
    return merged, record


def compile_config(options: dict[str, Any]) -> dict[str, Any]:
    """OpenVINO CPU properties for runner options (the same for the runner and benchmark_app).

    f32 unless asked: on CPUs with AVX-512 BF16/AMX, OpenVINO's default silently runs an "FP32" IR
    in bfloat16 (measured: 69 dB instead of exact), and the float parts of an INT8 IR with it; a
    precision change must be a decision (the user's, or the quantize stage's recorded in the
    sidecar), never the host's.

    Denormal flushing is always set, off unless asked: left unset, OpenVINO leaves the threads'
    FTZ/DAZ as it finds them, and once a model compiled with it on has run, every model compiled
    later in the process, or called from a new thread, runs flushed too. Measured on IAT's plain
    FP32 export (Intel Xeon, 2 threads): 275 ms, 117 ms with flushing, then 114 ms for a new compile
    of the plain model; unset it made the quantize stage's flushing candidate a tie against an
    FP32 it had already flushed, and the bench's crosscheck runner 2x faster than its own row.
    Off explicitly it runs as a fresh process does (270 ms), whatever ran before.
    """
    config: dict[str, Any] = {"PERFORMANCE_HINT": options["hint"]} if options.get("hint") else {}
    if options.get("threads"):
        config["INFERENCE_NUM_THREADS"] = int(options["threads"])
    config["INFERENCE_PRECISION_HINT"] = options.get("precision") or "f32"
    config["CPU_DENORMALS_OPTIMIZATION"] = bool(options.get("denormals") or False)
    if options.get("cpu_pinning") is not None:
        config["ENABLE_CPU_PINNING"] = bool(options["cpu_pinning"])
    return config


def artifact_runtime_options(path: str | Path) -> dict[str, Any]:
    """The runtime options an IR's sidecar carries ({} for an IR without any)."""
    side = read_sidecar(path) or {}
    return check_runtime_options(side.get("runtime_options") or {}, f"sidecar {sidecar_path(path)}")


def runtime_properties(xml: str | Path, explicit: dict[str, Any] | None = None) -> dict[str, str]:
    """The runtime-option properties a runner loading ``xml`` with ``explicit`` options compiles
    with, as strings (for benchmark_app's -load_config): INFERENCE_PRECISION_HINT,
    CPU_DENORMALS_OPTIMIZATION and, when set, ENABLE_CPU_PINNING."""
    merged, _ = merge_options(artifact_runtime_options(xml), {k: v for k, v in (explicit or {}).items() if k in RUNTIME_OPTIONS})
    config = compile_config({k: merged[k] for k in RUNTIME_OPTIONS if k in merged})
    return {k: ("YES" if v else "NO") if isinstance(v, bool) else str(v) for k, v in config.items()}


def cpu_capabilities(cpuinfo: str | None = None) -> dict[str, Any]:
    """What this host's CPU offers the runtime options: model, ISA flags, whether BF16 is native.

    BF16 counts as native only with avx512_bf16 or amx_bf16 in /proc/cpuinfo (elsewhere OpenVINO
    would emulate it or fall back to f32: no speed to gain). ``bf16_why`` says why not, else None.
    ``fp16``: the FP16_FLAGS present (the f16 inference precision's record reads them).
    ``threads_per_core``: /proc/cpuinfo's siblings over cpu cores (2 with SMT), None where it says neither.
    """
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    name = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "")
    flags_line = next((ln.split(":", 1)[1] for ln in cpuinfo.splitlines() if ln.startswith(("flags", "Features"))), "")
    present = set(flags_line.split())
    flags = [f for f in ISA_FLAGS if f in present]
    bf16 = [f for f in BF16_FLAGS if f in present]

    def first_count(field: str) -> int | None:  # the first processor's value of a count field, if any
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == field:
                return int(value) if value.strip().isdigit() and int(value) > 0 else None
        return None

    siblings, cores = first_count("siblings"), first_count("cpu cores")
    return {
        "cpu": name or platform.processor() or platform.machine() or "unknown",
        "machine": platform.machine(),
        "flags": flags,
        "bf16": bool(bf16),
        "bf16_why": None if bf16 else f"the CPU has no native bfloat16 ({' / '.join(BF16_FLAGS)} not in /proc/cpuinfo flags)",
        "fp16": [f for f in FP16_FLAGS if f in present],
        "threads_per_core": siblings // cores if siblings and cores else None,
    }


class OpenVinoRunner(Runner):
    backend = "openvino"

    def __init__(self, model: Any, device: str, options: dict[str, Any], source: str, side: dict | None = None,
                 option_record: dict | None = None) -> None:
        """Compile ``model`` (an openvino.Model read from ``source``, or one made in memory).

        ``options`` are what to compile with (``compile_config``); ``option_record`` says where
        each runtime option came from (``merge_options``), for describe().
        """
        import openvino as ov

        self._side = side or {}
        if len(model.inputs) != 1:
            msg = f"{source} has {len(model.inputs)} inputs; runtimes runs single-image models with one NCHW input"
            raise UsageError(msg)
        precision = self._side.get("precision") or ("int8" if _is_quantized(model) else "fp32")
        super().__init__(device=device, precision=precision, source=source, threads=options.get("threads"))
        self._options = dict(options)
        self._option_record = option_record or merge_options({}, {k: options.get(k) for k in RUNTIME_OPTIONS})[1]
        # the graph compiled: f32_layers marked on a copy; self._model stays as given, for variant()
        compiled = keep_f32(model, options["f32_layers"], source) if options.get("f32_layers") else model
        try:
            self._compiled = ov.Core().compile_model(compiled, device.upper(), compile_config(options))
        except Exception as err:
            msg = (
                f"OpenVINO {ov.__version__} cannot compile {source} on {device.upper()}: {ov_error(err)}; "
                "rebuild it with python -m export (which falls back to the torch module) or use another backend"
            )
            raise MissingRequirement(msg) from err
        self._model = model  # kept for variant(): the same graph compiled with other runtime options
        self._tensor = ov.Tensor
        self._request = self._compiled.create_infer_request()
        self._shape = partial_dims(self._compiled.input(0).get_partial_shape())
        port = self._compiled.output(0)
        # A static f32 image output goes straight into a buffer this runner owns (no copy);
        # otherwise (dynamic H/W) OpenVINO allocates per shape and the result is copied out.
        self._out: np.ndarray | None = None
        self._zero_copy = port.get_partial_shape().is_static and port.get_element_type() == ov.Type.f32
        if self._zero_copy:
            self._out_shape = tuple(port.get_shape())
            self._new_output()

    def _new_output(self) -> None:
        self._out = np.empty(self._out_shape, dtype=np.float32)
        self._request.set_output_tensor(0, self._tensor(self._out, shared_memory=True))
        self._out_refs = sys.getrefcount(self._out)  # this attribute, the Tensor, the call's argument

    def _run(self, x: np.ndarray) -> None:
        """One inference of ``x`` (C-contiguous float32), its input shared, not copied."""
        if self._out is not None and sys.getrefcount(self._out) > self._out_refs:
            self._new_output()  # the caller still holds the last result: never write over it
        self._request.set_input_tensor(self._tensor(x, shared_memory=True))
        self._request.infer(share_outputs=True)  # share_outputs: no result dict of copies

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._shape if len(self._shape) == 4 else None

    def _infer(self, x: np.ndarray) -> np.ndarray:
        self._run(x)
        if self._out is not None:
            return self._out
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _infer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self._run(x)
        found = {}
        for i, port in enumerate(self._compiled.outputs):
            value = np.array(self._request.get_output_tensor(i).data, dtype=np.float32, copy=True)
            found["output" if i == 0 else f"output_{i}"] = value
            for name in port.get_names():  # a port may carry several tensor names; each finds it
                found.setdefault(name, value)
        return found

    def variant(self, options: dict[str, Any]) -> OpenVinoRunner:
        """The same model compiled with exactly these runtime options (the others at their defaults;
        threads and hint as this runner's): the quantize stage's candidates."""
        check_load_options(options)
        unknown = set(options) - set(RUNTIME_OPTIONS)
        if unknown:
            msg = f"variant() changes only the runtime options {', '.join(RUNTIME_OPTIONS)}, not {sorted(unknown)}"
            raise UsageError(msg)
        merged = {**{k: v for k, v in self._options.items() if k not in RUNTIME_OPTIONS}, **options}
        record = merge_options({}, {k: merged.get(k) for k in RUNTIME_OPTIONS})[1]
        return OpenVinoRunner(self._model, self.device, merged, self.source, self._side, record)

    def thread_state(self) -> bool:
        """The denormal mode (FTZ/DAZ) this runner's compile set on OpenVINO's stream threads, which
        compiled models of the same thread configuration share (runtimes.isolation)."""
        return bool(self.runtime_options.get("denormals"))

    def portable(self, folder: Path) -> dict[str, Any]:
        """This runner's graph saved as an IR in ``folder``, with its options (f32 marks are applied again on load)."""
        import openvino as ov

        path = Path(folder) / "model.xml"
        ov.save_model(self._model, str(path), compress_to_fp16=False)
        options = {k: v for k, v in self._options.items() if k in OPTIONS and v is not None}
        return {"backend": self.backend, "path": str(path), "device": self.device, "options": options}

    def compute_nodes(self) -> list[str]:
        """Names of the graph's compute nodes (convolutions, matmuls), in execution order: what
        ``f32_layers`` may name."""
        return [op.get_friendly_name() for op in self._model.get_ordered_ops() if op.get_type_name() in COMPUTE_TYPES]

    def layer_precisions(self) -> dict[str, str]:
        """The precision each node of the graph runs in, read off the compiled model (what a
        precision option really did: OpenVINO keeps some layers f32 on its own)."""
        found: dict[str, str] = {}
        for op in self._compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "runtimePrecision" in info and "originalLayersNames" in info:
                for name in info["originalLayersNames"].astype(str).split(","):
                    if name:
                        found[name] = info["runtimePrecision"].astype(str)
        return found

    @property
    def runtime_options(self) -> dict[str, Any]:
        """The runtime options this runner was compiled with (precision, and denormals and f32_layers when set)."""
        return dict(self._option_record["used"])

    def _release(self) -> None:
        self._request = None
        self._compiled = None
        self._model = None
        self._out = None

    def _describe(self) -> dict[str, Any]:
        import openvino as ov

        info: dict[str, Any] = {"versions": {"openvino": ov.__version__}}
        for key in ("frontend", "fallback"):
            if key in self._side:
                info[key] = self._side[key]
        info["runtime_options"] = self._option_record
        info["output_copy"] = "none (runner-owned buffer, renewed while a caller holds it)" if self._zero_copy else "one copy (dynamic output shape)"
        if self._compiled is not None:
            for key, name in (
                ("threads", "INFERENCE_NUM_THREADS"),
                ("hint", "PERFORMANCE_HINT"),
                ("inference_precision", "INFERENCE_PRECISION_HINT"),
                ("denormals_optimization", "CPU_DENORMALS_OPTIMIZATION"),
                ("cpu_pinning", "ENABLE_CPU_PINNING"),
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
        dims = target_shape(onnx_input_dims(model_file), config)
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
        source_sha256 = sha256_file(model_file)
        meta.update(planned_runtime_options(model_file, source_sha256, config.precision))
        meta.update(
            source=str(model_file),
            source_sha256=source_sha256,
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
        layers = (artifact.meta.get("runtime_options") or {}).get("f32_layers")
        if layers:  # the XML itself carries them, for a tool that reads it without the sidecar (benchmark_app)
            model = keep_f32(model, layers, str(artifact.path))
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
        CUMULATIVE_THROUGHPUT, precision f32 | f16 | bf16 (INFERENCE_PRECISION_HINT), denormals
        true | false (CPU_DENORMALS_OPTIMIZATION), cpu_pinning true | false (ENABLE_CPU_PINNING). The sidecar's ``runtime_options`` (decided by
        the quantize stage) apply unless an option passed here names the same key: then the
        caller's value is used and describe() records both.
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
        check_load_options(options)
        side = read_sidecar(path) or {}
        decided = check_runtime_options(side.get("runtime_options") or {}, f"sidecar {sidecar_path(path)}")
        merged, record = merge_options(decided, options)
        for key, change in record.get("overridden", {}).items():
            log.info("%s: %s=%r passed explicitly overrides the artifact's %r", path, key, change["used"], change["artifact"])
        try:
            model = ov.Core().read_model(str(path))
        except Exception as err:
            msg = f"OpenVINO cannot read {path}: {ov_error(err)}; rebuild the IR (python -m export)"
            raise DataError(msg) from err
        return OpenVinoRunner(model, device, merged, str(path), side, record)

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

    def runner(self, model: Any, threads: int | None, source: str = "an in-memory model",
               options: dict[str, Any] | None = None) -> OpenVinoRunner:
        """A CPU runner of an in-memory model, compiled like a loaded IR (LATENCY, f32 unless
        ``options`` set runtime options)."""
        self.require()
        options = {k: v for k, v in (options or {}).items() if v is not None}
        check_load_options(options)
        return OpenVinoRunner(model, "cpu", {"threads": threads, "hint": "LATENCY", **options}, source)

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
    "LayerNormalization": ("MVN",),
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
