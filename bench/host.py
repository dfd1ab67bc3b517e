"""Is this host the target, and what is it? Plus the Jetson and GPU memory/power probes.

`check_host` runs before anything is measured or written: a target that cannot run here ends
the run with one line naming what is missing (exit code 2). `host_info` records what the rows
were measured on. Package versions come from installed metadata, never by importing the
packages, so asking for them stays cheap and loads no runtime.

Jetson memory and power: `TegrastatsSampler` runs ``tegrastats --interval N`` and parses each
line (RAM used, the power rails such as VDD_IN). tegrastats does not print NvMap, so every
sample also reads ``NvMapMemUsed`` from /proc/meminfo (GPU-mapped memory on the nvgpu stack,
the field jetson_stats reads; absent on Thor's nvidia.ko stack). Energy uses the total input
rail (VDD_IN, or POM_5V_IN on older L4T) where the board prints one: summing the rails beside it
double-counts (jetson_stats#344). AGX Orin prints no total rail (VDD_GPU_SOC, VDD_CPU_CV,
VIN_SYS_5V0, VDDQ_VDD2_1V8AO), so there power is the sum of every rail on the line, as
jetson_stats does, and each sample and summary says which source it used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowlight_edge.errors import MissingRequirement
from lowlight_edge.versions import versions

if TYPE_CHECKING:
    from lowlight_edge.targets import Target

FLAG_NAMES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


# --------------------------------------------------------------------------------------------
# Host checks


def is_jetson(root: str | Path = "/") -> bool:
    """True on an NVIDIA Jetson: /etc/nv_tegra_release exists or the device tree says nvidia,tegra."""
    root = Path(root)
    if (root / "etc" / "nv_tegra_release").is_file():
        return True
    try:
        compatible = (root / "proc" / "device-tree" / "compatible").read_bytes()
    except OSError:
        return False
    return b"nvidia,tegra" in compatible


def module_available(name: str) -> bool:
    """Whether ``import name`` would find the package, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    """A CUDA GPU answers: torch.cuda if torch has CUDA, else NVML, else ``nvidia-smi -L``."""
    if module_available("torch"):
        import torch

        if torch.cuda.is_available():
            return True
    count = _nvml_device_count()
    if count is not None:
        return count > 0
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return out.returncode == 0 and "GPU " in out.stdout
    return False


def _nvml_device_count() -> int | None:
    if not module_available("pynvml"):
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - any NVML failure means "no answer from NVML"
        return None


_RUNTIME_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}
_INSTALL_HINTS = {
    "openvino": "pip install openvino",
    "onnxruntime": "pip install onnxruntime",
    "tensorrt": "pip install 'lowlight-edge[tensorrt]', or JetPack on a Jetson",
}


def missing_requirements(target: Target, *, jetson_root: str | Path = "/") -> list[str]:
    """What this host lacks for ``target``, one short phrase each (empty when it can run)."""
    needs = list(target.requires)
    runtime_module = _RUNTIME_MODULES.get(target.runtime)
    if runtime_module and runtime_module not in needs:
        needs.append(runtime_module)  # the runtime itself is always required
    missing: list[str] = []
    for need in needs:
        if need == "cpu":
            continue  # any host has one
        if need == "x86_64":
            machine = platform.machine().lower()
            if machine not in ("x86_64", "amd64"):
                missing.append(f"an x86-64 CPU (this is {machine or 'unknown'})")
        elif need in _RUNTIME_MODULES:
            if not module_available(_RUNTIME_MODULES[need]):
                missing.append(
                    f"{need} (Python package `{_RUNTIME_MODULES[need]}` not installed; {_INSTALL_HINTS[need]})"
                )
        elif need == "cuda":
            if not cuda_available():
                missing.append("a CUDA GPU (torch.cuda, NVML and nvidia-smi found none)")
        elif need == "jetson":
            if not is_jetson(jetson_root):
                missing.append(
                    "an NVIDIA Jetson (no /etc/nv_tegra_release, no nvidia,tegra in /proc/device-tree/compatible)"
                )
        else:  # pragma: no cover - targets.py rejects unknown requirement names
            missing.append(need)
    return missing


def check_host(target: Target, *, jetson_root: str | Path = "/") -> None:
    """Raise MissingRequirement (one line) unless this host can run ``target``.

    On a Jetson whose target names an expected power mode, the mode reported by ``nvpmodel -q``
    must match: numbers from another mode would be mislabelled.
    """
    missing = missing_requirements(target, jetson_root=jetson_root)
    if missing:
        msg = (
            f"target {target.name!r} cannot run on this host: missing {'; '.join(missing)}; "
            f"run it on a host that has them, or choose a target this host can run (e.g. x86-cpu-ort)"
        )
        raise MissingRequirement(msg)
    expected = target.options.get("power_mode")
    if expected and "jetson" in target.requires:
        actual = read_power_mode()
        if actual is None:
            msg = (
                f"target {target.name!r} expects power mode {expected} but `nvpmodel -q` gave no mode; "
                f"check that nvpmodel works, or set options.power_mode: null in targets.yaml"
            )
            raise MissingRequirement(msg)
        if actual.upper() != str(expected).upper():
            msg = (
                f"target {target.name!r} expects power mode {expected} but the board is in {actual}; "
                f"switch with `sudo nvpmodel -m <id of {expected}>`, or change options.power_mode in targets.yaml"
            )
            raise MissingRequirement(msg)


# --------------------------------------------------------------------------------------------
# Host description


def cpu_model(cpuinfo: str | None = None) -> str:
    """CPU model name from /proc/cpuinfo (x86 "model name"), else the device-tree model (Jetson)."""
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    for key in ("model name", "Hardware", "Model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    model = _read("/proc/device-tree/model").strip("\x00 \n")
    return model or platform.processor() or platform.machine() or "unknown"


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The inference-relevant ISA flags present (AVX2, FMA, AVX-512, VNNI, AMX; ARM dot product)."""
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    match = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.MULTILINE)
    present = set(match.group(1).split()) if match else set()
    names = [f for f in FLAG_NAMES if f in present]
    names += [f for f in ("asimddp", "fphp", "asimdhp", "i8mm", "bf16") if f in present]
    return names


def cpu_clock_ghz(cpuinfo: str | None = None, sysfs: str | Path = "/sys/devices/system/cpu") -> tuple[float | None, str]:
    """(the highest clock this CPU reports in GHz, where it came from), (None, why) when none does.

    The kernel's cpufreq ``cpuinfo_max_freq`` (the boost ceiling) when there is one; else the
    highest ``cpu MHz`` in /proc/cpuinfo, which in a VM is usually the nominal clock, below what a
    boosting core runs at (the source says so); else a "@ 2.45GHz" in the model name.
    """
    try:
        khz = max(int(f.read_text()) for f in Path(sysfs).glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"))
    except (OSError, ValueError):  # no cpufreq (a VM), or unreadable
        khz = 0
    if khz > 0:
        return khz / 1e6, "cpufreq cpuinfo_max_freq (boost ceiling)"
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.MULTILINE)]
    if mhz and max(mhz) > 0:
        return max(mhz) / 1e3, "/proc/cpuinfo cpu MHz (may be the nominal clock, below boost)"
    named = re.search(r"@\s*([0-9.]+)\s*GHz", cpu_model(text))
    if named:
        return float(named.group(1)), "the model name's nominal clock (below boost)"
    return None, "no clock reported (no cpufreq, no cpu MHz in /proc/cpuinfo)"


def gpu_name() -> str | None:
    """Name and driver of GPU 0 from nvidia-smi, or the board model on a Jetson; None if neither."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            if out.returncode == 0 and out.stdout.strip():
                name, _, driver = out.stdout.strip().splitlines()[0].partition(",")
                return f"{name.strip()} (driver {driver.strip()})" if driver else name.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    if is_jetson():
        return _read("/proc/device-tree/model").strip("\x00 \n") or "Jetson"
    return None


def host_info(threads: int | None) -> dict[str, Any]:
    """What the rows were measured on: cpu, threads and versions (the row keys), plus details."""
    cores = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "threads": threads if threads is not None else cores,
        "versions": versions(),
        "cores": cores,
        "physical_cores": _physical_cores(),
        "flags": cpu_flags(),
        "machine": platform.machine(),
        "os": platform.platform(terse=True),
        "gpu": gpu_name(),
    }
    if is_jetson():
        info["jetson"] = {
            "l4t": _read("/etc/nv_tegra_release").splitlines()[0].strip()
            if _read("/etc/nv_tegra_release")
            else None,
            "power_mode": read_power_mode(),
        }
    return info


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# Jetson: power mode and tegrastats


def parse_power_mode(text: str) -> str | None:
    """'NV Power Mode: MAXN' (from ``nvpmodel -q``) -> 'MAXN'."""
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    return match.group(1) if match else None


def read_power_mode() -> str | None:
    """The current nvpmodel mode name, or None where nvpmodel is absent or says nothing."""
    tool = shutil.which("nvpmodel")
    if not tool:
        return None
    try:
        out = subprocess.run([tool, "-q"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_power_mode(out.stdout + "\n" + out.stderr)


_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP_RE = re.compile(r"\bSWAP (\d+)/(\d+)MB")
# A power rail: "VDD_IN 5967mW/5967mW" (Orin) or "VDD_IN 3140/3208" (older L4T): current/average mW.
_RAIL_RE = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # total module input power, by L4T generation
_NVMAP_RE = re.compile(r"^NvMapMemUsed:\s*(\d+)\s*kB", re.MULTILINE)


@dataclass
class TegraSample:
    """One tegrastats line."""

    t: float  # time.monotonic() when read
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    swap_used_mb: float | None = None
    rails_mw: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (current, average)
    nvmap_mb: float | None = None  # NvMapMemUsed from /proc/meminfo at the same moment

    @property
    def power_in_mw(self) -> float | None:
        """Current input power: the total input rail (VDD_IN / POM_5V_IN) where the line has one,
        else the sum of every power rail on it (AGX Orin); None when the line has no rail at all."""
        for rail in INPUT_RAILS:
            if rail in self.rails_mw:
                return self.rails_mw[rail][0]
        if self.rails_mw:
            return sum(current for current, _ in self.rails_mw.values())
        return None

    @property
    def power_source(self) -> str | None:
        """Where `power_in_mw` comes from: "VDD_IN", "sum of rails A+B+... (...)", or None."""
        for rail in INPUT_RAILS:
            if rail in self.rails_mw:
                return rail
        if self.rails_mw:
            return f"sum of rails {'+'.join(self.rails_mw)} (board prints no total input rail)"
        return None


def parse_tegrastats_line(line: str, t: float = 0.0) -> TegraSample | None:
    """Parse one tegrastats line; None for a line without a RAM field (not a stats line)."""
    ram = _RAM_RE.search(line)
    if not ram:
        return None
    sample = TegraSample(t=t, ram_used_mb=float(ram.group(1)), ram_total_mb=float(ram.group(2)))
    swap = _SWAP_RE.search(line)
    if swap:
        sample.swap_used_mb = float(swap.group(1))
    for name, current, average in _RAIL_RE.findall(line):
        if name in ("RAM", "SWAP", "IRAM"):
            continue
        sample.rails_mw[name] = (float(current), float(average))
    return sample


def parse_nvmap_mb(meminfo: str) -> float | None:
    """NvMapMemUsed (kB in /proc/meminfo) in MB; None where the field does not exist."""
    match = _NVMAP_RE.search(meminfo)
    return int(match.group(1)) / 1024.0 if match else None


def summarize_samples(
    samples: Sequence[TegraSample], start: float | None = None, end: float | None = None
) -> dict[str, Any]:
    """Peak RAM/NvMap and input power over samples taken within [start, end] (all when None).

    ``ram_*`` is system-wide used RAM: on a Jetson the GPU shares it, so the process's share is
    roughly peak minus baseline (the first sample). ``power_mean_mw`` averages the instantaneous
    input power readings (`TegraSample.power_in_mw`); energy over a window is power_mean_mw x
    seconds = mJ. ``power_source`` names where they came from (VDD_IN, or the sum of rails on a
    board with no total rail); several sources, should the lines differ, are joined by "; ".
    """
    chosen = [s for s in samples if (start is None or s.t >= start) and (end is None or s.t <= end)]
    rams = [s.ram_used_mb for s in chosen if s.ram_used_mb is not None]
    nvmaps = [s.nvmap_mb for s in chosen if s.nvmap_mb is not None]
    powers = [p for s in chosen if (p := s.power_in_mw) is not None]
    sources = list(dict.fromkeys(src for s in chosen if (src := s.power_source) is not None))
    return {
        "samples": len(chosen),
        "ram_baseline_mb": samples[0].ram_used_mb if samples else None,
        "ram_peak_mb": max(rams) if rams else None,
        "nvmap_peak_mb": max(nvmaps) if nvmaps else None,
        "power_mean_mw": sum(powers) / len(powers) if powers else None,
        "power_samples": len(powers),
        "power_source": "; ".join(sources) if sources else None,
    }


class TegrastatsSampler:
    """Runs ``tegrastats --interval N`` in a subprocess and keeps every parsed line.

    Use as a context manager or call start()/stop(). Lines are read on a background thread and
    stamped with time.monotonic(), so a caller can summarise any window it timed itself.
    """

    def __init__(
        self, interval_ms: int = 100, command: str = "tegrastats", meminfo: str | Path = "/proc/meminfo"
    ):
        self.interval_ms = interval_ms
        self.command = command
        self.meminfo = Path(meminfo)
        self.samples: list[TegraSample] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TegrastatsSampler:
        exe = shutil.which(self.command)
        if exe is None:
            msg = (
                f"`{self.command}` was not found on PATH; Jetson memory and power need it (it ships with L4T)"
            )
            raise MissingRequirement(msg)
        self._proc = subprocess.Popen(
            [exe, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._thread = threading.Thread(target=self._read, name="tegrastats", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            sample = parse_tegrastats_line(line, time.monotonic())
            if sample is not None:
                sample.nvmap_mb = parse_nvmap_mb(_read(self.meminfo))
                self.samples.append(sample)

    def wait_for_samples(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        """Block until ``count`` samples exist (so a timed window starts with a baseline)."""
        deadline = time.monotonic() + timeout_s
        while len(self.samples) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.samples) >= count

    def stop(self) -> list[TegraSample]:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._proc, self._thread = None, None
        return self.samples

    def __enter__(self) -> TegrastatsSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Desktop GPU memory (NVML, else cudaMemGetInfo through torch)


def gpu_memory_used_mb(index: int = 0) -> tuple[float, str] | None:
    """(used MB, source) for this process on GPU ``index``, or None where nothing can tell.

    NVML's per-process figure is preferred; inside a container the PID may not match, so the
    device-wide used memory is returned instead (source "nvml-device": subtract a baseline).
    Without NVML (pip install nvidia-ml-py), cudaMemGetInfo through cuda-python or torch, if the
    runtime already imported one, gives device-wide used memory ("cuda-meminfo").
    """
    if module_available("pynvml"):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    return proc.usedGpuMemory / 2**20, "nvml-process"
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            return info.used / 2**20, "nvml-device"
        except Exception:  # noqa: BLE001 - fall through to the next source
            pass
    # cudaMemGetInfo through a CUDA binding the runtime already loaded (never imported here:
    # importing torch into a TensorRT worker would add its own memory and CUDA context).
    for name in ("cuda.bindings.runtime", "cuda.cudart"):  # cuda-python 12+ / older
        cudart = sys.modules.get(name)
        if cudart is not None:
            try:
                err, free, total = cudart.cudaMemGetInfo()
                if int(err) == 0:
                    return (total - free) / 2**20, "cuda-meminfo"
            except Exception:  # noqa: BLE001 - try the next source
                pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(index)
        return (total - free) / 2**20, "cuda-meminfo"
    return None


class GpuMemorySampler:
    """Polls gpu_memory_used_mb on a thread and reports this process's peak GPU memory.

    A per-process NVML reading is used as is. A device-wide reading (NVML in a container, or
    cudaMemGetInfo) has the first reading of the same source subtracted, so start() must run
    before the runtime loads. Through torch, that first reading already includes the CUDA
    context, so the figure then leaves the context out.
    """

    def __init__(self, index: int = 0, period_s: float = 0.05):
        self.index = index
        self.period_s = period_s
        self._peaks: dict[str, float] = {}
        self._baselines: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GpuMemorySampler:
        self.sample()
        self._thread = threading.Thread(target=self._poll, name="gpu-mem", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self) -> None:
        reading = gpu_memory_used_mb(self.index)
        if reading is not None:
            value, source = reading
            self._baselines.setdefault(source, value)
            self._peaks[source] = max(self._peaks.get(source, value), value)

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sample()
        return self.peak_mb()

    @property
    def source(self) -> str | None:
        for source in ("nvml-process", "nvml-device", "cuda-meminfo"):
            if source in self._peaks:
                return source
        return None

    def peak_mb(self) -> float | None:
        source = self.source
        if source is None:
            return None
        if source == "nvml-process":
            return self._peaks[source]
        return max(0.0, self._peaks[source] - self._baselines[source])
