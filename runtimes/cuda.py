"""The CUDA runtime through ctypes on libcudart: what a TensorRT engine needs to run, without torch.

JetPack ships libcudart and TensorRT's Python bindings but no PyTorch, so the TensorRT runner
allocates device memory, copies and synchronises through this thin wrapper. Every call's
``cudaError_t`` is checked; a failure is one line naming the call, CUDA's error name and string
(``cudaGetErrorName`` / ``cudaGetErrorString``) and, where there is one, the fix.

Where libcudart comes from, first found wins:

1. ``$LOWLIGHT_EDGE_LIBCUDART`` (a path to the library; when set, only it);
2. the ``nvidia-cuda-runtime`` pip wheel (``nvidia/cuda_runtime/lib`` or ``nvidia/cu13/lib`` on
   sys.path), which TensorRT-RTX and CUDA builds of torch install;
3. the system: ``ctypes.util.find_library("cudart")``, the sonames of CUDA 13, 12 and 11
   (JetPack 5's is ``libcudart.so.11.0``), then ``/usr/local/cuda/lib64`` and the Jetson's
   ``/usr/local/cuda/targets/aarch64-linux/lib``.

Kept Python 3.8 (it is shipped to the device in the bench bundle).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from lowlight_edge.errors import MissingRequirement

LIBCUDART_ENV = "LOWLIGHT_EDGE_LIBCUDART"
SONAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
SYSTEM_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib",
               "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/aarch64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
WHEEL_DIRS = ("nvidia/cuda_runtime/lib", "nvidia/cu13/lib", "nvidia/cu12/lib")

# cudaMemcpyKind and the attributes read here (driver_types.h)
HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2
ATTR_CC_MAJOR, ATTR_CC_MINOR = 75, 76
NO_DEVICE = {100: "no CUDA-capable device is here", 35: "the NVIDIA driver is missing or older than this CUDA runtime",
             999: "the CUDA driver failed to initialise"}
_PROPS_BYTES = 8192  # larger than cudaDeviceProp of any CUDA release; name[256] is its first field in all


class CudaError(MissingRequirement):
    """A CUDA runtime call failed (exit 2: the GPU, its driver or its memory is not what the run needs)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def wheel_candidates(paths: Optional[List[str]] = None) -> List[Path]:
    """libcudart files of the nvidia-cuda-runtime wheel under each sys.path entry."""
    found = []
    for base in sys.path if paths is None else paths:
        for sub in WHEEL_DIRS:
            found += [Path(p) for p in sorted(glob.glob(os.path.join(base or ".", sub, "libcudart.so*")))]
    return found


def library_candidates(paths: Optional[List[str]] = None) -> List[str]:
    """Where libcudart is looked for, in order (see the module docstring); names and paths for dlopen."""
    if os.environ.get(LIBCUDART_ENV):  # chosen by the user: that one or none
        return [os.environ[LIBCUDART_ENV]]
    order = [str(p) for p in wheel_candidates(paths)]
    found = ctypes.util.find_library("cudart")
    if found:
        order.append(found)
    order += list(SONAMES)
    for folder in SYSTEM_DIRS:
        order += sorted(glob.glob(os.path.join(folder, "libcudart.so*")))
    return [c for i, c in enumerate(order) if c not in order[:i] and not c.endswith(".a")]


def load_libcudart(paths: Optional[List[str]] = None) -> Tuple[Any, str]:
    """(the loaded libcudart, which one) or MissingRequirement naming where it was looked for."""
    tried = []
    for candidate in library_candidates(paths):
        try:
            return ctypes.CDLL(candidate), candidate
        except OSError as err:
            tried.append(f"{candidate} ({err})" if os.sep in candidate else candidate)
    if os.environ.get(LIBCUDART_ENV):
        msg = f"libcudart not found: ${LIBCUDART_ENV}={os.environ[LIBCUDART_ENV]} does not load ({tried[0]}); point it at libcudart.so"
    else:
        msg = ("libcudart not found (looked in the nvidia-cuda-runtime wheel, the loader path and /usr/local/cuda); "
               f"install the CUDA runtime (JetPack has it; else pip install nvidia-cuda-runtime) or set ${LIBCUDART_ENV}")
    raise MissingRequirement(msg)


class CudaRuntime:
    """The calls a TensorRT runner makes, each checked: memory, copies, one stream, device facts."""

    def __init__(self, paths: Optional[List[str]] = None) -> None:
        self.lib, self.path = load_libcudart(paths)
        lib = self.lib
        c_int_p, size_t = ctypes.POINTER(ctypes.c_int), ctypes.c_size_t
        void_pp = ctypes.POINTER(ctypes.c_void_p)
        signatures = {
            "cudaGetDeviceCount": [c_int_p],
            "cudaSetDevice": [ctypes.c_int],
            "cudaGetDevice": [c_int_p],
            "cudaMalloc": [void_pp, size_t],
            "cudaFree": [ctypes.c_void_p],
            "cudaMemcpyAsync": [ctypes.c_void_p, ctypes.c_void_p, size_t, ctypes.c_int, ctypes.c_void_p],
            "cudaStreamCreate": [void_pp],
            "cudaStreamDestroy": [ctypes.c_void_p],
            "cudaStreamSynchronize": [ctypes.c_void_p],
            "cudaMemGetInfo": [ctypes.POINTER(size_t), ctypes.POINTER(size_t)],
            "cudaDeviceGetAttribute": [c_int_p, ctypes.c_int, ctypes.c_int],
            "cudaRuntimeGetVersion": [c_int_p],
            "cudaDriverGetVersion": [c_int_p],
        }
        for name, args in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, ctypes.c_int
        for name in ("cudaGetErrorName", "cudaGetErrorString"):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_char_p
        # CUDA 12+ exports the current struct layout as cudaGetDeviceProperties_v2
        self._props = getattr(lib, "cudaGetDeviceProperties_v2", None) or lib.cudaGetDeviceProperties
        self._props.argtypes, self._props.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int

    # --- errors -------------------------------------------------------------------------------

    def error_text(self, code: int) -> str:
        name = self.lib.cudaGetErrorName(code) or b"cudaError %d" % code
        text = self.lib.cudaGetErrorString(code) or b""
        return f"{name.decode()} ({text.decode()})" if text else name.decode()

    def check(self, code: int, call: str, fix: str = "") -> None:
        """One line for a failed call: the call, CUDA's name and text for the code, and the fix."""
        if code != 0:
            msg = f"{call} failed: {self.error_text(code)}" + (f"; {fix}" if fix else "")
            raise CudaError(msg, code)

    # --- devices ------------------------------------------------------------------------------

    def device_count(self) -> int:
        """How many GPUs the runtime sees; CudaError saying why there is none (no device, no driver)."""
        count = ctypes.c_int(0)
        code = self.lib.cudaGetDeviceCount(ctypes.byref(count))
        if code in NO_DEVICE:
            msg = f"no CUDA device: cudaGetDeviceCount returned {self.error_text(code)} ({NO_DEVICE[code]}; {self.path})"
            raise CudaError(msg, code)
        self.check(code, "cudaGetDeviceCount")
        if count.value == 0:
            msg = f"no CUDA device: cudaGetDeviceCount found 0 ({self.path})"
            raise CudaError(msg, 100)
        return count.value

    def set_device(self, index: int) -> None:
        count = self.device_count()
        if not 0 <= index < count:
            msg = f"CUDA device {index} does not exist: this machine has {count} (cuda:0..cuda:{count - 1})"
            raise CudaError(msg, 101)
        self.check(self.lib.cudaSetDevice(index), f"cudaSetDevice({index})")

    def device_name(self, index: int) -> str:
        buffer = ctypes.create_string_buffer(_PROPS_BYTES)
        self.check(self._props(buffer, index), f"cudaGetDeviceProperties({index})")
        return buffer.raw[:256].split(b"\0", 1)[0].decode(errors="replace")

    def compute_capability(self, index: int) -> Tuple[int, int]:
        values = []
        for attr in (ATTR_CC_MAJOR, ATTR_CC_MINOR):
            value = ctypes.c_int(0)
            self.check(self.lib.cudaDeviceGetAttribute(ctypes.byref(value), attr, index), "cudaDeviceGetAttribute")
            values.append(value.value)
        return values[0], values[1]

    def mem_get_info(self) -> Tuple[int, int]:
        """(free, total) bytes of the current device."""
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        self.check(self.lib.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)), "cudaMemGetInfo")
        return free.value, total.value

    def versions(self) -> dict:
        """{"cuda_runtime": "12.6", "cuda_driver": "12.8"} (CUDA encodes them as 1000*major + 10*minor)."""
        out = {}
        for key, fn in (("cuda_runtime", self.lib.cudaRuntimeGetVersion), ("cuda_driver", self.lib.cudaDriverGetVersion)):
            value = ctypes.c_int(0)
            self.check(fn(ctypes.byref(value)), fn.__name__)
            out[key] = f"{value.value // 1000}.{value.value % 1000 // 10}"
        return out

    # --- memory, copies, streams --------------------------------------------------------------

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        fix = "the engine's buffers do not fit this GPU's free memory; close other GPU programs or use a smaller input"
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), max(int(nbytes), 1)), f"cudaMalloc({nbytes} bytes)", fix)
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        if ptr:
            self.check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def stream_create(self) -> int:
        stream = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        return int(stream.value or 0)

    def stream_destroy(self, stream: int) -> None:
        if stream:
            self.check(self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def synchronize(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def copy_to_device(self, dst: int, host: Any, stream: int) -> None:
        """Copy a C-contiguous numpy array to device memory on ``stream``."""
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(host.ctypes.data), host.nbytes,
                                            HOST_TO_DEVICE, ctypes.c_void_p(stream)), "cudaMemcpyAsync (host to device)")

    def copy_to_host(self, host: Any, src: int, stream: int) -> None:
        """Copy device memory into a C-contiguous numpy array on ``stream`` (complete after synchronize)."""
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(host.ctypes.data), ctypes.c_void_p(src), host.nbytes,
                                            DEVICE_TO_HOST, ctypes.c_void_p(stream)), "cudaMemcpyAsync (device to host)")


_RUNTIME: List[CudaRuntime] = []


def cuda_runtime() -> CudaRuntime:
    """The process's CudaRuntime (libcudart loaded once); MissingRequirement when there is none."""
    if not _RUNTIME:
        _RUNTIME.append(CudaRuntime())
    return _RUNTIME[0]


def device_index(device: str) -> int:
    """"cuda" -> 0, "cuda:1" -> 1; ValueError for anything else (callers check the prefix first)."""
    _, _, index = device.partition(":")
    return int(index) if index else 0


def cuda_status(device: str = "cuda") -> Tuple[bool, str]:
    """(whether ``device`` can run an engine here, one line saying which GPU or why not)."""
    try:
        cuda = cuda_runtime()
        index = device_index(device)
        count = cuda.device_count()
        if index >= count:
            return False, f"CUDA device {index} does not exist: this machine has {count}"
        return True, f"{cuda.device_name(index)} (cuda:{index}, compute capability {'.'.join(map(str, cuda.compute_capability(index)))})"
    except (MissingRequirement, ValueError) as err:
        return False, str(err)
