"""PyTorch eager: the FP32 reference every other backend is compared with, and the GPU baseline.

The artifact is the model itself (an ``nn.Module``) or a zoo name "MODEL" / "MODEL:WEIGHTS";
there is nothing to build. On CUDA it can run in FP16 and under ``torch.compile`` (mode
"reduce-overhead" captures CUDA graphs).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from lowlight_edge import zoo
from lowlight_edge.errors import MissingRequirement, UsageError
from runtimes.base import Backend, Runner, check_options

OPTIONS = ("threads", "precision", "compile")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def _resolve(artifact: Any) -> tuple[Any, str, Any]:
    """(module, source label, ModelSpec or None) for a module or a "MODEL[:WEIGHTS]" string."""
    import torch

    if isinstance(artifact, torch.nn.Module):
        return artifact, type(artifact).__name__, None
    if isinstance(artifact, str):

        name, _, weights = artifact.partition(":")
        spec = zoo.get_spec(name)
        module = zoo.get_model(name, weights=weights or "default")
        return module, artifact, spec
    msg = f"torch backend loads an nn.Module or a zoo name like 'tinydce' or 'tinydce:default', got {type(artifact).__name__}"
    raise UsageError(msg)


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, module: Any, source: str, spec: Any, device: str, options: dict[str, Any]) -> None:
        import torch

        precision = options.get("precision", "fp32")
        super().__init__(device=device, precision=precision, source=source, threads=options.get("threads"))
        self._spec = spec
        self._previous_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        if device != "cpu" or precision != "fp32":  # .to() is in place: leave the caller's module as it was
            module = copy.deepcopy(module)
        module = module.eval().to(device=device, dtype=self._dtype)
        self._compile = options.get("compile") or None
        if self._compile:
            mode = None if self._compile in (True, "default") else self._compile
            module = torch.compile(module, mode=mode)
        self._module = module

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return (-1, self._spec.channels, -1, -1) if self._spec is not None else None

    def check_input(self, x: Any) -> np.ndarray:
        x = super().check_input(x)
        if self._spec is not None:  # eager fails deep inside on e.g. 400x600 for Zero-DCE++
            self._spec.check_resolution(x.shape[2], x.shape[3])
        return x

    def _infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inp = torch.from_numpy(x).to(device=self.device, dtype=self._dtype)
            out = self._module(inp)
            if not isinstance(out, torch.Tensor) or out.ndim != 4:
                msg = f"torch model {self.source} must return one NCHW tensor, got {type(out).__name__}; wrap it so forward returns the image"
                raise UsageError(msg)
            return out.float().cpu().numpy()

    def _release(self) -> None:
        import torch

        self._module = None
        torch.set_num_threads(self._previous_threads)
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _describe(self) -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {"versions": {"torch": torch.__version__}, "compile": self._compile}
        if self.device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
            info["versions"]["cuda"] = torch.version.cuda
        if not self._closed:
            info["threads"] = torch.get_num_threads()
        return info


class TorchBackend(Backend):
    name = "torch"
    default_device = "cpu"
    options = OPTIONS

    def is_available(self) -> tuple[bool, str]:
        try:
            import torch
        except ImportError as err:  # pragma: no cover - torch is a hard dependency
            return False, f"torch is not importable ({err}); pip install torch"
        cuda = (
            f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}"
            if torch.cuda.is_available()
            else "no CUDA GPU"
        )
        return True, f"torch {torch.__version__} (CPU; {cuda})"

    def load(self, artifact: Any, device: str | None = None, options: dict | None = None) -> TorchRunner:
        """Runner for an nn.Module or "MODEL[:WEIGHTS]".

        Options: threads (torch.set_num_threads, restored on close), precision fp32 | fp16
        (CUDA only), compile (True or a torch.compile mode).
        """
        import torch

        options = check_options(options, OPTIONS, self.name)
        device = device or self.default_device
        if device != "cpu" and not device.startswith("cuda"):
            msg = f"torch backend runs on 'cpu' or 'cuda[:N]', got device {device!r}"
            raise UsageError(msg)
        if device.startswith("cuda") and not torch.cuda.is_available():
            msg = f"device {device!r} needs a CUDA GPU and a CUDA build of torch (this is torch {torch.__version__} without CUDA); use device 'cpu'"
            raise MissingRequirement(msg)
        precision = options.get("precision", "fp32")
        if precision not in ("fp32", "fp16"):
            msg = f"torch backend runs fp32 or fp16, got precision {precision!r}; int8 runs in onnxruntime/openvino/tensorrt"
            raise UsageError(msg)
        if precision == "fp16" and device == "cpu":
            msg = "torch fp16 is for CUDA only (CPU half convolutions are slow and not a baseline); use precision fp32 on cpu"
            raise UsageError(msg)
        mode = options.get("compile")
        if mode not in (None, False, True, *COMPILE_MODES):
            msg = f"compile must be true or one of {', '.join(COMPILE_MODES)}, got {mode!r}"
            raise UsageError(msg)
        module, source, spec = _resolve(artifact)
        return TorchRunner(module, source, spec, device, options)


BACKEND = TorchBackend()
