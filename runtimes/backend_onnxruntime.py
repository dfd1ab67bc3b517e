"""ONNX Runtime: runs the .onnx file itself (nothing to build).

CPU execution provider by default, with the settings the baseline measured (intra-op threads
configurable, inter-op 1, ORT_ENABLE_ALL, sequential execution); CUDA or TensorRT execution
providers when the installed onnxruntime has them. A QDQ (INT8) ONNX runs the same way.

Option ``denormals`` (default off, ORT's own default) sets ``session.set_denormal_as_zero``: ORT's
intra-op threads flush denormals (FTZ/DAZ; the calling thread, which runs a share of each operator,
does not). The PyTorch references are computed flushed
(lowlight_edge.denormals), so a check against them loses nothing; on IAT's simplified graph at
400x600 (Intel Xeon, 2 threads) it took ORT from 1.15 to 0.81 s a frame, bit-identical output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.errors import DataError, MissingRequirement, UsageError
from runtimes.base import Backend, Runner, artifact_path, check_options, onnx_precision, read_sidecar

OPTIONS = ("threads", "providers", "denormals")
DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OrtRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, path: Path, device: str, providers: list[str], threads: int | None,
                 denormals: bool = False) -> None:
        import onnxruntime as ort

        side = read_sidecar(path) or {}
        super().__init__(
            device=device,
            precision=side.get("precision") or onnx_precision(path),
            source=str(path),
            threads=threads,
        )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0: ORT's default (one per physical core)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if denormals:
            opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        self._denormals = denormals
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as err:  # ORT raises its own Fail/InvalidGraph/... types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            msg = f"onnxruntime cannot load {path}: {first}; re-export the model (python -m export)"
            raise DataError(msg) from err
        used = self._session.get_providers()
        if used[0] != providers[0]:  # ORT falls back to CPU quietly when a provider fails to start
            self._session = None
            msg = f"onnxruntime could not start {providers[0]} (session got {used}); check the CUDA/TensorRT libraries, or use device 'cpu'"
            raise MissingRequirement(msg)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            msg = f"{path} has {len(inputs)} inputs {names}; runtimes runs single-image models with one NCHW input"
            raise UsageError(msg)
        self._input = inputs[0]
        self._output = self._session.get_outputs()[0].name
        self._half = self._input.type == "tensor(float16)"
        self._providers = used

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        shape = self._input.shape
        if shape is None or len(shape) != 4:
            return None
        return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        feed = x.astype(np.float16) if self._half else x
        (out,) = self._session.run([self._output], {self._input.name: feed})
        return np.asarray(out, dtype=np.float32)

    def _infer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        feed = x.astype(np.float16) if self._half else x
        names = [o.name for o in self._session.get_outputs()]
        values = self._session.run(names, {self._input.name: feed})
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values)}

    def _release(self) -> None:
        self._session = None

    def _describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "versions": {"onnxruntime": ort.__version__},
            "providers": self._providers,
            "inter_op_threads": 1,
            "graph_optimization": "ORT_ENABLE_ALL",
            "execution_mode": "sequential",
            "denormals_as_zero": self._denormals,
        }


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    default_device = "cpu"
    suffixes = (".onnx",)
    options = OPTIONS

    def is_available(self) -> tuple[bool, str]:
        try:
            import onnxruntime as ort
        except ImportError as err:
            return False, f"onnxruntime is not importable ({err}); pip install onnxruntime"
        return True, f"onnxruntime {ort.__version__}; providers {', '.join(ort.get_available_providers())}"

    def load(self, artifact: Any, device: str | None = None, options: dict | None = None) -> OrtRunner:
        """Session for an .onnx file.

        Device cpu | cuda | tensorrt picks the execution providers; options: threads (intra-op),
        providers (an explicit provider list, which must fit the device), denormals (true: flush
        denormals to zero).
        """
        self.require()
        import onnxruntime as ort

        options = check_options(options, OPTIONS, self.name)
        path = artifact_path(artifact, self.name)
        device = device or self.default_device
        if device not in DEVICE_PROVIDERS:
            msg = f"onnxruntime device must be one of {', '.join(DEVICE_PROVIDERS)}, got {device!r}"
            raise UsageError(msg)
        providers = list(options.get("providers") or DEVICE_PROVIDERS[device])
        if device == "cpu" and providers != ["CPUExecutionProvider"]:
            msg = f"device 'cpu' runs only CPUExecutionProvider, got providers {providers}; pass device 'cuda' or 'tensorrt' for GPU providers"
            raise UsageError(msg)
        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            msg = f"onnxruntime {ort.__version__} here lacks {', '.join(missing)} (has {', '.join(available)}); install onnxruntime-gpu or use device 'cpu'"
            raise MissingRequirement(msg)
        denormals = options.get("denormals", False)
        if not isinstance(denormals, bool):
            msg = f"onnxruntime option denormals must be true or false, got {denormals!r}"
            raise UsageError(msg)
        return OrtRunner(path, device, providers, options.get("threads"), denormals)


BACKEND = OnnxRuntimeBackend()
