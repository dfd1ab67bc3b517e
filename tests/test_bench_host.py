"""Host checks, Jetson parsers and sampler, the per-row worker, and the benchmark_app cross-check."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.host import (
    TegrastatsSampler,
    check_host,
    cpu_clock_ghz,
    cpu_flags,
    cpu_model,
    is_jetson,
    module_available,
    parse_nvmap_mb,
    parse_power_mode,
    parse_tegrastats_line,
    summarize_samples,
)
from bench.roofline import isa_peaks, measure_host_limits, roofline_ms, roofline_row
from lowlight_edge.errors import CheckFailed, MissingRequirement
from lowlight_edge.targets import Target, get_target

REPO = Path(__file__).resolve().parents[1]

# Real tegrastats lines: AGX Orin (issue 6 format), Orin Nano (jetson_stats#624), TX2-era without
# units (FindHao/tx-utils#3), and a line whose last rail lost its unit (a tegrastats parser README).
# AGX Orin prints no total input rail (no VDD_IN): its power is the sum of the rails it does print.
ORIN_AGX = (
    "11-22-2026 10:00:00 RAM 3012/30536MB (lfb 7x4MB) SWAP 0/15268MB (cached 0MB) "
    "CPU [2%@729,1%@729,0%@729,0%@729,off,off,off,off,off,off,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] "
    "VIC_FREQ 729 APE 174 CPU@44.5C Tboard@34C SOC2@41.062C Tdiode@36C SOC0@41.5C GPU@-256C tj@44.5C "
    "VDD_GPU_SOC 3172mW/3172mW VDD_CPU_CV 396mW/396mW VIN_SYS_5V0 2426mW/2426mW"
)
# One idle line per Orin board in the current L4T 36 format: AGX Orin (four rails, no total),
# Orin Nano and Orin NX (VDD_IN is the total module input beside two sub-rails).
ORIN_AGX_IDLE = (
    "12-01-2026 10:00:00 RAM 3208/30536MB (lfb 6692x4MB) SWAP 0/15268MB (cached 0MB) "
    "CPU [0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] "
    "VIC_FREQ 729 APE 174 CPU@48.937C tboard@36C SOC2@45.25C tdiode@37.5C SOC0@45.156C GPU@44.5C "
    "tj@48.937C SOC1@45.437C VDD_GPU_SOC 2390mW/2390mW VDD_CPU_CV 398mW/398mW VIN_SYS_5V0 2420mW/2420mW "
    "VDDQ_VDD2_1V8AO 302mW/302mW"
)
AGX_SUM_SOURCE = (
    "sum of rails VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO (board prints no total input rail)"
)
ORIN_NANO_IDLE = (
    "12-01-2026 10:00:00 RAM 2000/7620MB (lfb 10x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [2%@1510,1%@1510,0%@1510,0%@1510,0%@1510,0%@1510] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[624] "
    "NVDEC off NVJPG off VIC off OFA off APE 200 cpu@48.5C soc2@47.9C soc0@48.2C gpu@48.6C tj@48.6C "
    "soc1@48.1C VDD_IN 4954mW/4954mW VDD_CPU_GPU_CV 491mW/491mW VDD_SOC 1473mW/1473mW"
)
ORIN_NX_IDLE = (
    "12-01-2026 10:00:00 RAM 2890/15656MB (lfb 3037x4MB) SWAP 0/7828MB (cached 0MB) "
    "CPU [1%@1420,0%@1420,0%@1420,0%@1420,0%@1420,0%@1420,0%@1420,0%@1420] EMC_FREQ 0%@3199 "
    "GR3D_FREQ 0%@[918] NVDEC off NVJPG off NVJPG1 off VIC off OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off "
    "APE 200 cpu@47.5C soc2@45.9C soc0@46.4C gpu@45.8C tj@47.5C soc1@46.1C "
    "VDD_IN 5627mW/5627mW VDD_CPU_GPU_CV 1026mW/1026mW VDD_SOC 1562mW/1562mW"
)
ORIN_NANO = (
    "05-15-2025 18:30:28 RAM 6982/7620MB (lfb 5x1MB) SWAP 2640/16384MB (cached 202MB) "
    "CPU [97%@1984,95%@1984,95%@1984,91%@1984,88%@1984,93%@247] EMC_FREQ 18%@3199 GR3D_FREQ 84%@[713] "
    "NVENC 1%@115 NVDEC 40%@115 NVJPG off NVJPG1 off VIC 31%@115 OFA off NVDLA0 off PVA0_FREQ off APE 174 "
    "cv0@63.031C cpu@65.562C soc2@64.156C soc0@63.031C cv1@62.937C gpu@63.5C tj@65.562C soc1@64.718C "
    "cv2@60.875C VDD_IN 17946mW/15710mW VDD_CPU_GPU_CV 8896mW/7585mW VDD_SOC 3923mW/3515mW"
)
TX2 = (
    "RAM 2020/7852MB (lfb 1164x4MB) CPU [9%@345,21%@345,25%@345,3%@345,1%@345,1%@345] EMC_FREQ 0% "
    "GR3D_FREQ 0% PLL@42.5C MCPU@42.5C PMIC@100C Tboard@40C GPU@41C BCPU@42.5C thermal@41.9C "
    "Tdiode@41.25C VDD_SYS_GPU 153/158 VDD_SYS_SOC 536/547 VDD_4V0_WIFI 633/527 VDD_IN 3140/3208 "
    "VDD_SYS_CPU 536/590 VDD_SYS_DDR 557/601"
)
TRUNCATED_UNIT = (
    "12-23-2024 22:54:11 RAM 3162/7620MB (lfb 4x2MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,0%@729,off,off] GR3D_FREQ 1% cpu@62.843C soc2@61.968C "
    "VDD_IN 3913mW/3922mW VDD_CPU_GPU_CV 598mW/598 VDD_SOC 1238mW/1237mW"
)
MEMINFO = (
    "MemTotal:        7859308 kB\nNvMapMemFree:      94784 kB\nNvMapMemUsed:     805068 kB\nCmaTotal: 1 kB\n"
)


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# -- is this host the target? ---------------------------------------------------------------------


def test_is_jetson_from_release_file_or_device_tree(tmp_path):
    assert not is_jetson(tmp_path)
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    compatible = tmp_path / "proc" / "device-tree" / "compatible"
    compatible.write_bytes(b"raspberrypi,4-model-b\x00brcm,bcm2711\x00")
    assert not is_jetson(tmp_path)
    compatible.write_bytes(b"nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00")
    assert is_jetson(tmp_path)
    other = tmp_path / "other"
    (other / "etc").mkdir(parents=True)
    (other / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.0\n")
    assert is_jetson(other)


def test_check_host_cpu_targets_pass_here():
    if module_available("onnxruntime"):
        check_host(get_target("x86-cpu-ort"))  # raises if anything were missing
    if module_available("openvino") and os.uname().machine == "x86_64":
        check_host(get_target("x86-cpu"))


def test_check_host_names_what_is_missing_in_one_line(tmp_path):
    if is_jetson():
        pytest.skip("this host is a Jetson")
    with pytest.raises(MissingRequirement) as info:
        check_host(get_target("jetson-orin"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("target 'jetson-orin' cannot run on this host: missing an NVIDIA Jetson")
    if not module_available("tensorrt"):
        with pytest.raises(
            MissingRequirement,
            match=r"desktop-gpu.*missing tensorrt \(Python package `tensorrt` not installed",
        ):
            check_host(get_target("desktop-gpu"))


def test_check_host_compares_the_jetson_power_mode(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text("# R36 (release)\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nvpmodel = executable(bin_dir / "nvpmodel", "#!/bin/sh\necho 'NV Power Mode: 15W'\necho 2\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    target = Target(
        name="board",
        runtime="torch",
        device="cpu",
        precisions=("fp32",),
        resolutions={"default": (8, 8)},
        requires=("jetson",),
        options={"power_mode": "MAXN"},
    )
    with pytest.raises(MissingRequirement, match="expects power mode MAXN but the board is in 15W"):
        check_host(target, jetson_root=root)
    executable(nvpmodel, "#!/bin/sh\necho 'NV Power Mode: MAXN'\necho 0\n")
    check_host(target, jetson_root=root)  # the expected mode: no error
    check_host(dataclasses.replace(target, options={"power_mode": None}), jetson_root=root)


def test_parse_power_mode():
    assert parse_power_mode("NV Power Mode: MAXN\n0\n") == "MAXN"
    noisy = "NV Power Mode: 5W\n1\nNVPM ERROR: Error opening /sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13\n"
    assert parse_power_mode(noisy) == "5W"
    assert parse_power_mode("nvpmodel: command not found") is None


# -- what is this host? ---------------------------------------------------------------------------


def test_cpu_model_and_flags_from_cpuinfo_text():
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma f16c avx512f avx512_vnni\n"
    assert cpu_model(x86) == "AMD EPYC 7B13"
    assert cpu_flags(x86) == ["avx2", "fma", "avx512f", "avx512_vnni"]
    arm = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes asimdhp asimddp\n"
    assert cpu_flags(arm) == ["asimddp", "asimdhp"]


def test_host_info_reads_versions_without_importing_runtimes():
    code = (
        "import json, sys; from bench.host import host_info; info = host_info(3); "
        "info['loaded'] = [m for m in ('openvino', 'onnxruntime', 'nncf', 'tensorrt', 'torch') if m in sys.modules]; "
        "print(json.dumps(info))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["loaded"] == []
    assert info["threads"] == 3 and info["cores"] >= 1 and info["cpu"]
    assert info["versions"]["numpy"] == np.__version__
    assert info["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(info["versions"]) >= {"torch", "onnx", "onnxruntime", "openvino", "nncf", "numpy", "tensorrt"}


# -- tegrastats -------------------------------------------------------------------------------------


def test_parse_orin_agx_line():
    """AGX Orin prints no VDD_IN: power is the sum of its rails, and the sample says so."""
    sample = parse_tegrastats_line(ORIN_AGX, t=1.0)
    assert (sample.ram_used_mb, sample.ram_total_mb, sample.swap_used_mb) == (3012, 30536, 0)
    assert set(sample.rails_mw) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"}
    assert sample.rails_mw["VDD_CPU_CV"] == (396, 396)
    assert sample.power_in_mw == 3172 + 396 + 2426
    assert sample.power_source == (
        "sum of rails VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0 (board prints no total input rail)"
    )


def test_parse_orin_agx_idle_line_sums_all_four_rails():
    sample = parse_tegrastats_line(ORIN_AGX_IDLE)
    assert (sample.ram_used_mb, sample.ram_total_mb) == (3208, 30536)
    # temperatures (CPU@48.937C, GPU@44.5C, SOC0@...) and APE / VIC_FREQ are not rails
    assert list(sample.rails_mw) == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert sample.rails_mw["VDDQ_VDD2_1V8AO"] == (302, 302)
    assert sample.power_in_mw == 5510  # 2390 + 398 + 2420 + 302
    assert sample.power_source == AGX_SUM_SOURCE


@pytest.mark.parametrize(
    ("line", "ram", "total_mw"),
    [(ORIN_NANO_IDLE, (2000, 7620), 4954), (ORIN_NX_IDLE, (2890, 15656), 5627)],
    ids=["orin-nano", "orin-nx"],
)
def test_parse_orin_nano_and_nx_idle_lines_use_vdd_in(line, ram, total_mw):
    """VDD_IN is the total module input there: the sub-rails beside it are not added on top."""
    sample = parse_tegrastats_line(line)
    assert (sample.ram_used_mb, sample.ram_total_mb) == ram
    assert list(sample.rails_mw) == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]  # no temperatures, APE, GR3D
    assert sample.power_in_mw == total_mw
    assert sample.power_source == "VDD_IN"
    summary = summarize_samples([parse_tegrastats_line(line, t=float(t)) for t in range(3)])
    assert summary["power_mean_mw"] == total_mw and summary["power_source"] == "VDD_IN"


def test_parse_line_without_rails_has_no_power():
    sample = parse_tegrastats_line("RAM 2000/7620MB (lfb 10x4MB) SWAP 0/3810MB (cached 0MB) cpu@48.5C")
    assert sample.rails_mw == {} and sample.power_in_mw is None and sample.power_source is None
    assert summarize_samples([sample])["power_source"] is None


def test_parse_orin_nano_tx2_and_truncated_lines():
    nano = parse_tegrastats_line(ORIN_NANO)
    assert (nano.ram_used_mb, nano.swap_used_mb) == (6982, 2640)
    assert nano.rails_mw["VDD_IN"] == (17946, 15710) and nano.power_in_mw == 17946
    assert set(nano.rails_mw) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}  # no APE/EMC/NVENC/SWAP
    tx2 = parse_tegrastats_line(TX2)
    assert tx2.power_in_mw == 3140 and tx2.rails_mw["VDD_SYS_DDR"] == (557, 601) and tx2.swap_used_mb is None
    truncated = parse_tegrastats_line(TRUNCATED_UNIT)
    assert truncated.rails_mw["VDD_CPU_GPU_CV"] == (598, 598) and truncated.power_in_mw == 3913
    assert parse_tegrastats_line("tegrastats: permission denied") is None


def test_parse_nvmap_and_summary_window():
    assert parse_nvmap_mb(MEMINFO) == pytest.approx(805068 / 1024)
    assert parse_nvmap_mb("MemTotal: 1 kB\n") is None  # Thor / desktop: no NvMap field
    samples = [parse_tegrastats_line(ORIN_NANO, t=float(t)) for t in range(5)]
    for i, sample in enumerate(samples):
        sample.rails_mw["VDD_IN"] = (1000.0 * (i + 1), 0.0)
        sample.ram_used_mb = 3000.0 + 10 * i
        sample.nvmap_mb = 100.0 + i
    window = summarize_samples(samples, start=1.0, end=3.0)
    assert window["samples"] == 3 and window["power_mean_mw"] == pytest.approx(3000.0)
    assert window["ram_peak_mb"] == 3030.0 and window["ram_baseline_mb"] == 3000.0
    assert summarize_samples(samples)["nvmap_peak_mb"] == 104.0
    assert window["power_source"] == "VDD_IN"


def test_summary_of_agx_orin_samples_sums_rails():
    samples = [parse_tegrastats_line(ORIN_AGX_IDLE, t=float(t)) for t in range(5)]
    window = summarize_samples(samples, start=1.0, end=3.0)
    assert window["power_samples"] == 3 and window["power_mean_mw"] == pytest.approx(5510.0)
    assert window["power_source"] == AGX_SUM_SOURCE


def test_worker_energy_per_frame_on_agx_orin_is_measured():
    """_add_tegrastats on AGX Orin lines: mJ/frame from the rail sum, and the row says where from."""
    from bench.worker import _add_tegrastats

    samples = [parse_tegrastats_line(ORIN_AGX_IDLE, t=float(t)) for t in range(6)]
    result: dict = {"rss_peak_mb": 100.0}
    notes: list[str] = []
    _add_tegrastats(result, samples, 1.0, 4.0, 10, notes)
    assert result["power_mean_mw"] == pytest.approx(5510.0)
    assert result["energy_mj_per_frame"] == pytest.approx(5510.0 * 3.0 / 10)  # mW x s / frames = mJ
    assert result["power_source"] == AGX_SUM_SOURCE
    assert not any("not measured" in n or "VDD_IN" in n for n in notes)
    assert any(AGX_SUM_SOURCE in n for n in notes)


def test_worker_energy_per_frame_on_orin_nano_uses_vdd_in():
    from bench.worker import _add_tegrastats

    samples = [parse_tegrastats_line(ORIN_NANO_IDLE, t=float(t)) for t in range(6)]
    result: dict = {"rss_peak_mb": 100.0}
    notes: list[str] = []
    _add_tegrastats(result, samples, 1.0, 4.0, 10, notes)
    assert result["energy_mj_per_frame"] == pytest.approx(4954.0 * 3.0 / 10)
    assert result["power_source"] == "VDD_IN" and notes == []


def test_tegrastats_sampler_runs_and_parses_a_subprocess(tmp_path):
    fake = executable(
        tmp_path / "tegrastats",
        "#!/bin/sh\n"
        '[ "$1" = "--interval" ] || exit 3\n'
        "i=0\nwhile true; do\n  i=$((i+1))\n"
        '  echo "RAM $((3000+i))/7620MB (lfb 5x1MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729] VDD_IN 5000mW/5000mW VDD_SOC 1200mW/1200mW"\n'
        "  sleep 0.02\ndone\n",
    )
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    sampler = TegrastatsSampler(interval_ms=20, command=str(fake), meminfo=meminfo).start()
    try:
        assert sampler.wait_for_samples(3, timeout_s=10)
    finally:
        samples = sampler.stop()
    assert len(samples) >= 3
    assert [s.ram_used_mb for s in samples[:3]] == [3001, 3002, 3003]
    assert all(s.power_in_mw == 5000 for s in samples)
    assert samples[0].nvmap_mb == pytest.approx(805068 / 1024)
    assert samples[-1].t >= samples[0].t


def test_gpu_memory_sampler_reports_or_says_nothing():
    from bench.host import GpuMemorySampler, cuda_available, gpu_memory_used_mb

    sampler = GpuMemorySampler(period_s=0.01).start()
    peak = sampler.stop()
    if gpu_memory_used_mb() is None:
        assert not cuda_available() or not (module_available("pynvml") or module_available("torch"))
        assert peak is None and sampler.source is None
    else:
        assert (
            peak is not None
            and peak >= 0
            and sampler.source in ("nvml-process", "nvml-device", "cuda-meminfo")
        )


def test_tegrastats_sampler_missing_tool_is_one_line():
    with pytest.raises(MissingRequirement, match="was not found on PATH"):
        TegrastatsSampler(command="no-such-tegrastats-tool").start()


# -- the worker -------------------------------------------------------------------------------------


def _has_torch_backend() -> bool:
    return (REPO / "runtimes" / "backend_torch.py").is_file() and module_available("torch")


@pytest.mark.skipif(not _has_torch_backend(), reason="runtimes/backend_torch.py not written yet")
def test_worker_in_process_varied_frames_and_fidelity(tmp_path):
    import torch

    from bench.worker import run_worker

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.seen: list[float] = []

        def forward(self, x):
            self.seen.append(round(float(x.sum()), 3))
            return torch.sigmoid(self.conv(x))

    module = Recorder().eval()
    frames = np.random.default_rng(0).uniform(0, 1, (3, 3, 16, 24)).astype(np.float32)
    with torch.no_grad():
        refs = module(torch.from_numpy(frames)).numpy() + np.float32(0.01)
    module.seen.clear()
    np.save(tmp_path / "frames.npy", frames)
    np.save(tmp_path / "refs.npy", refs)
    spec = {
        "backend": "torch",
        "artifact": module,  # in-process only; a subprocess needs "MODEL[:WEIGHTS]"
        "device": "cpu",
        "options": {},
        "warmup": 2,
        "iterations": 7,
        "frames": str(tmp_path / "frames.npy"),
        "reference": str(tmp_path / "refs.npy"),
    }
    result = run_worker(spec)
    assert len(module.seen) == 1 + 2 + 7 + 3  # cold start + warmup + timed + one fidelity pass per frame
    assert len(set(module.seen[3:10])) == 3  # the timed runs cycle over the 3 different frames
    assert set(result["latency_ms"]) == {"p50", "p90", "p99", "max", "mean"}
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["max"]
    assert result["fps"] == pytest.approx(1000 / result["latency_ms"]["mean"])
    assert result["cold_start_s"] > 0
    assert result["peak_mem_mb"] >= result["rss_baseline_mb"] > 0
    assert result["psnr_db"]["mean"] == pytest.approx(40.0, abs=0.01)  # reference offset by 0.01
    assert result["nonfinite"] == 0 and result["max_abs_err"] == pytest.approx(0.01, abs=1e-5)
    assert result["input_shape"] == [3, 16, 24] and result["output_shape"] == [3, 16, 24]
    assert result["runtime"]["backend"] == "torch" and result["frames"] == 3


@pytest.mark.skipif(not _has_torch_backend(), reason="runtimes/backend_torch.py not written yet")
def test_worker_jetson_power_and_memory_from_tegrastats(tmp_path, monkeypatch):
    """The Jetson path end to end, with a stand-in tegrastats printing real-format lines."""
    import time

    import torch

    from bench.worker import run_worker

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(
        bin_dir / "tegrastats",
        "#!/bin/sh\ni=0\nwhile true; do\n  i=$((i+1))\n"
        '  echo "RAM $((3000+i))/7620MB (lfb 5x1MB) SWAP 0/3810MB (cached 0MB) VDD_IN 4000mW/4000mW VDD_SOC 900mW/900mW"\n'
        "  sleep 0.01\ndone\n",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.03)  # long enough for several samples inside the timed window
            return x * 0.5

    np.save(tmp_path / "frames.npy", np.random.default_rng(2).uniform(0, 1, (2, 3, 8, 8)).astype(np.float32))
    spec = {
        "backend": "torch",
        "artifact": Slow(),
        "warmup": 0,
        "iterations": 6,
        "frames": str(tmp_path / "frames.npy"),
        "reference": None,
        "tegrastats_interval_ms": 10,
    }
    result = run_worker(spec)
    window = result["tegrastats"]["timed_window"]
    assert window["power_samples"] >= 3 and window["power_mean_mw"] == pytest.approx(4000.0)
    assert result["power_source"] == "VDD_IN"
    # 4000 mW over the timed window, shared by 6 frames: mW x s = mJ
    assert result["energy_mj_per_frame"] == pytest.approx(4000.0 * result["timed_total_s"] / 6, rel=0.3)
    assert result["energy_mj_per_frame"] >= 4000.0 * 0.03 * 0.9
    if parse_nvmap_mb(Path("/proc/meminfo").read_text()) is None:  # not a Jetson: tegrastats RAM delta
        assert result["peak_mem_source"].startswith("tegrastats RAM peak")
        assert result["peak_mem_mb"] >= 3
    assert result["psnr_db"] is None and result["ssim"] is None


def _tinydce_ready() -> str:
    if not _has_torch_backend() or not (REPO / "lowlight_edge" / "zoo" / "dce.py").is_file():
        return "lowlight_edge/zoo/ or runtimes/backend_torch.py not written yet"
    weights = Path(os.environ.get("LOWLIGHT_EDGE_WEIGHTS", "")) / "tinydce.pth"
    if not weights.is_file():
        return f"no TinyDCE checkpoint at {weights}"
    return ""


@pytest.mark.skipif(bool(_tinydce_ready()), reason=_tinydce_ready() or "ready")
def test_worker_subprocess_tinydce(tmp_path):
    import torch

    from bench.worker import run_in_subprocess
    from lowlight_edge import zoo

    frames = np.random.default_rng(1).uniform(0, 0.3, (2, 3, 32, 48)).astype(np.float32)
    module = zoo.get_model("tinydce")
    with torch.inference_mode():
        refs = np.concatenate([module(torch.from_numpy(f[None])).numpy() for f in frames])
    np.save(tmp_path / "frames.npy", frames)
    np.save(tmp_path / "refs.npy", refs)
    spec = {
        "backend": "torch",
        "artifact": "tinydce",
        "device": "cpu",
        "options": {"threads": 1},
        "warmup": 1,
        "iterations": 4,
        "frames": str(tmp_path / "frames.npy"),
        "reference": str(tmp_path / "refs.npy"),
    }
    result = run_in_subprocess(spec, timeout_s=180)
    assert "error" not in result, result.get("stderr_tail")
    assert result["psnr_db"]["min"] >= 90  # same weights, same runtime: agrees to float noise
    assert result["max_abs_err"] < 1e-4 and result["nonfinite"] == 0
    assert result["iterations"] == 4 and result["latency_ms"]["p50"] > 0
    assert result["peak_mem_mb"] > result["rss_baseline_mb"] * 0.5 > 0


def test_peak_rss_of_a_child_is_its_own():
    from lowlight_edge.memory import peak_rss_mb

    ballast = np.ones(64 * 2**20, np.float32)  # 256 MB held by this (parent) process
    code = "from lowlight_edge.memory import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert peak_rss_mb() > 256
    assert 1 < float(out.stdout) < 200  # ru_maxrss would report the parent's >= 256 MB here
    del ballast


def test_run_in_subprocess_reports_a_crash_as_one_line(tmp_path):
    from bench.worker import run_in_subprocess

    np.save(tmp_path / "frames.npy", np.zeros((1, 3, 8, 8), np.float32))
    spec = {
        "backend": "no-such-backend",
        "artifact": "x",
        "iterations": 1,
        "frames": str(tmp_path / "frames.npy"),
    }
    result = run_in_subprocess(spec, timeout_s=120)
    assert result["returncode"] == 2
    assert result["error"].startswith("error: unknown backend 'no-such-backend'")
    with pytest.raises(ValueError, match="unknown keys"):
        run_in_subprocess({**spec, "iteration": 3}, timeout_s=10)


def test_run_in_subprocess_times_out(tmp_path):
    from bench.worker import run_in_subprocess

    np.save(tmp_path / "frames.npy", np.zeros((1, 3, 8, 8), np.float32))
    spec = {
        "backend": "torch",
        "artifact": "tinydce",
        "iterations": 1,
        "frames": str(tmp_path / "frames.npy"),
    }
    result = run_in_subprocess(spec, timeout_s=0.2)  # Python cannot even import numpy that fast
    assert result["error"].startswith("timed out after 0.2 s")


# -- benchmark_app cross-check ----------------------------------------------------------------------


def test_parse_benchmark_app_median():
    from bench.crosscheck import compare, parse_median_ms

    stdout = "[ INFO ] Latency:\n[ INFO ]    Median:        24.16 us\n[ INFO ]    Average:       25.30 us\n"
    assert parse_median_ms(stdout) == pytest.approx(0.02416)
    assert parse_median_ms("[ INFO ]    Median:     112.73 ms\n") == pytest.approx(112.73)
    assert parse_median_ms("no latency here") is None
    assert compare(11.0, 10.0)["ok"] and not compare(12.5, 10.0)["ok"]


def test_benchmark_app_median_on_a_tiny_ir(tmp_path):
    from bench.crosscheck import benchmark_app_p50, find_benchmark_app, write_inputs

    try:
        find_benchmark_app()
    except MissingRequirement as err:
        pytest.skip(str(err))
    torch = pytest.importorskip("torch")
    ov = pytest.importorskip("openvino")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1)
    )
    ov.save_model(
        ov.convert_model(net.eval(), example_input=torch.zeros(1, 3, 32, 32)), str(tmp_path / "tiny.xml")
    )
    report = Path.cwd() / "benchmark_report.csv"
    existed = report.exists()
    median = benchmark_app_p50(tmp_path / "tiny.xml", threads=1, shape=(1, 3, 32, 32), seconds=1)
    assert isinstance(median, float) and 0 < median < 1000
    assert report.exists() == existed  # benchmark_app ran in a temporary folder
    # the bench's own frames as float32 .npy: used, so frames of another size are refused
    frames = write_inputs([np.full((1, 3, 32, 32), 0.5, np.float32)] * 2, tmp_path / "inputs")
    assert 0 < benchmark_app_p50(tmp_path / "tiny.xml", threads=1, shape=(1, 3, 32, 32), seconds=1, inputs=frames) < 1000
    wrong = write_inputs([np.zeros((1, 3, 16, 16), np.float32)], tmp_path / "wrong")
    with pytest.raises(CheckFailed, match="benchmark_app failed"):
        benchmark_app_p50(tmp_path / "tiny.xml", threads=1, shape=(1, 3, 32, 32), seconds=1, inputs=wrong)


# --------------------------------------------------------------------------------------------
# Roofline bounds per precision (bench/roofline.py)


def test_cpu_clock_prefers_cpufreq_then_cpu_mhz_then_the_model_name(tmp_path):
    freq = tmp_path / "cpu0" / "cpufreq"
    freq.mkdir(parents=True)
    (freq / "cpuinfo_max_freq").write_text("3500000\n")
    assert cpu_clock_ghz("cpu MHz : 2445.4\n", tmp_path) == (3.5, "cpufreq cpuinfo_max_freq (boost ceiling)")
    ghz, source = cpu_clock_ghz("cpu MHz\t\t: 2445.434\ncpu MHz\t\t: 2600.0\n", tmp_path / "none")
    assert ghz == pytest.approx(2.6) and "nominal" in source
    assert cpu_clock_ghz("model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\n", tmp_path / "none")[0] == 2.4
    assert cpu_clock_ghz("model name\t: AMD EPYC\n", tmp_path / "none")[0] is None


def test_isa_peaks_per_precision_and_the_measured_rate_when_the_clock_boosts():
    zen3 = isa_peaks(["avx2", "fma"], 2, 2.45, "cpu MHz", measured_fp32_gflops=100.0)
    assert zen3["fp32"]["gops"] == pytest.approx(2 * 2.45 * 32, abs=0.1) and "AVX2 FMA" in zen3["fp32"]["source"]
    assert zen3["int8"]["gops"] == pytest.approx(2 * zen3["fp32"]["gops"], abs=0.1) and "without VNNI" in zen3["int8"]["source"]
    assert zen3["bf16"]["gops"] == zen3["fp32"]["gops"]
    boosted = isa_peaks(["avx2", "fma"], 2, 2.45, "cpu MHz", measured_fp32_gflops=200.0)
    assert boosted["fp32"]["gops"] == 200.0 and "clock boosts" in boosted["fp32"]["source"]
    spr = isa_peaks(["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"], 2, 3.0, "cpufreq")
    assert spr["fp32"]["gops"] == pytest.approx(2 * 3.0 * 64)
    assert spr["bf16"]["gops"] == pytest.approx(2 * 3.0 * 1024) and spr["int8"]["gops"] == pytest.approx(2 * 3.0 * 2048)
    vnni = isa_peaks(["avx2", "fma", "avx512f", "avx512_vnni"], 1, 2.0, "cpufreq")
    assert vnni["int8"]["gops"] == pytest.approx(4 * vnni["fp32"]["gops"]) and "VNNI" in vnni["int8"]["source"]
    assert isa_peaks(["avx2"], 2, None, "no clock", measured_fp32_gflops=90.0)["fp32"]["gops"] == 90.0


def test_a_row_gets_its_precisions_bound_and_never_a_fraction_above_one():
    limits = {"matmul_gflops": 50.0, "copy_gbps": 10.0, "traffic_gbps": 20.0,
              "peaks": isa_peaks(["avx2", "fma"], 2, 2.5, "cpu MHz", measured_fp32_gflops=50.0)}  # fp32 160, int8 320
    fp32 = roofline_row(16e9, 1e6, limits, "fp32", 200.0)
    assert fp32["roofline_ms"] == pytest.approx(100.0) and fp32["roofline_fraction"] == pytest.approx(0.5)
    assert fp32["roofline_bound"].startswith("fp32 compute peak 160 GFLOP/s, ISA peak")
    int8 = roofline_row(16e9, 1e6, limits, "int8", 100.0)
    assert int8["roofline_ms"] == pytest.approx(50.0) and int8["roofline_fraction"] == pytest.approx(0.5)
    assert "int8 compute peak 320 GOP/s" in int8["roofline_bound"]
    beat = roofline_row(16e9, 1e6, limits, "fp32", 80.0)  # faster than the bound: the bound is wrong
    assert beat["roofline_fraction"] is None and "the bound is wrong" in beat["roofline_note"]
    memory = roofline_row(1e6, 2e9, limits, "fp32", 200.0)
    assert memory["roofline_ms"] == pytest.approx(100.0) and memory["roofline_bound"].startswith("memory")
    assert roofline_ms(16e9, 1e6, limits) == pytest.approx(100.0)  # the harness's call: the FP32 peak
    assert roofline_ms(16e9, 1e6, {"matmul_gflops": 50.0, "copy_gbps": 10.0}) == pytest.approx(320.0)


def test_measured_limits_carry_the_isa_peaks():
    pytest.importorskip("torch")
    limits = measure_host_limits(1, seconds_budget=0.05, matmul_n=128, copy_mb=4)
    assert set(limits["peaks"]) == {"fp32", "bf16", "int8"}
    assert limits["peaks"]["fp32"]["gops"] >= limits["matmul_gflops"] * 0.999  # a bound is never below a measured rate
