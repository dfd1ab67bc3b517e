"""FLOPs per frame, this host's measured limits, and the roofline lower bound of a row.

The bound answers "how far from this machine's ceiling is the row?": a row at 0.5 of its bound
runs twice as slow as the better of compute and memory would allow; a row near 0.01 is
dominated by something else (elementwise traffic, kernel launches, framework overhead).

- FLOPs count only convolutions and matmuls (torch.utils.flop_counter, 2 FLOP per MAC): the
  elementwise curve ops of the DCE family are left out, so the compute bound is a lower bound.
- Bytes moved are the input and output tensors at FP32, read once and written once: a lower
  bound, since every real network also moves its activations and weights.
- Limits, per precision (``isa_peaks``, ``measure_host_limits``): the compute peak of the ISA,
  threads x clock x operations per cycle per core (FP32: FMA width x 2 FMA units x 2 FLOP; BF16:
  2x FP32 with AVX512_BF16, AMX 1024 FLOP/cycle; INT8: 4x FP32 with VNNI, 2x on plain AVX2
  (vpmaddubsw + vpmaddwd), AMX 2048 OP/cycle), and the best large-copy bandwidth. The FP32 peak is
  the larger of the ISA figure and the best FP32 matmul torch measures in the same run: a
  measured rate above the ISA figure means the clock boosts above what the CPU reports, and the
  measured rate is then the bound (the record says so). A torch matmul alone is not a bound: it
  is one kernel's speed, and OpenVINO's kernels beat it.
- ``roofline_row`` gives a row its bound for its precision, says which bound it used, and never
  reports a fraction above 1.0: a row faster than its bound means the bound is wrong, and the
  row gets a note saying so instead of a number.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.host import cpu_clock_ghz, cpu_flags

if TYPE_CHECKING:
    import torch

# Row precision -> the peak that bounds it (an "fp16" OpenVINO IR computes in f32 on a CPU).
PEAK_OF = {"fp32": "fp32", "fp16": "fp32", "bf16": "bf16", "int8": "int8"}


def measure_host_limits(
    threads: int | None,
    seconds_budget: float = 1.5,
    *,
    matmul_n: int = 2048,
    copy_mb: int = 256,
) -> dict[str, Any]:
    """Best-of FP32 matmul GFLOP/s and copy GB/s on ``threads`` threads, within ~seconds_budget.

    ``threads`` None means every core this process may run on (as a target's ``threads: null``).

    ``copy_gbps`` is bytes copied per second: a copy of S bytes counts S, although it reads S and
    writes S (2 S of memory traffic). ``traffic_gbps`` = 2 x copy_gbps is the read+write rate,
    which is what the memory bound divides by. ``copy_mb`` must exceed the last-level cache to
    measure DRAM (256 MB covers every EPYC but the 3D V-Cache parts).

    Half the budget goes to each measurement; each runs at least twice (the first run pays for
    page faults and thread start-up) and reports its fastest run.
    """
    import torch

    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        half = max(seconds_budget, 0.0) / 2
        best_mm = _matmul_seconds(matmul_n, half)
        best_copy = _copy_seconds(copy_mb, half)
    finally:
        torch.set_num_threads(previous)
    flop = 2.0 * matmul_n**3
    elements = copy_mb * 2**20 // 4
    copy_gbps = elements * 4 / best_copy / 1e9
    matmul = flop / best_mm / 1e9
    return {
        "matmul_gflops": matmul,
        "copy_gbps": copy_gbps,
        "traffic_gbps": 2.0 * copy_gbps,
        "threads": threads,
        "matmul_n": matmul_n,
        "copy_mb": copy_mb,
        "peaks": isa_peaks(cpu_flags(), threads, *cpu_clock_ghz(), measured_fp32_gflops=matmul),
    }


def isa_peaks(flags: list[str], threads: int, clock_ghz: float | None, clock_source: str = "",
              measured_fp32_gflops: float | None = None) -> dict[str, dict[str, Any]]:
    """Compute peak per precision, {"fp32"|"bf16"|"int8": {"gops", "source"}}, from the ISA flags.

    ``threads`` count as cores (each with its own vector units: an upper bound even with SMT).
    The FP32 peak is max(ISA figure, ``measured_fp32_gflops``); BF16 and INT8 scale the FP32 ISA
    figure (or the larger measured rate) by what their instructions do per cycle, AMX by its tile
    throughput. Without a clock the ISA figure is unknown and only the measured FP32 rate bounds.
    """
    present = set(flags)
    wide = "avx512f" in present
    lanes = 16 if wide else 8 if ("avx2" in present or "fma" in present) else 4
    isa = f"{'AVX-512' if wide else 'AVX2' if lanes == 8 else 'SSE'}"
    per_cycle = lanes * 2 * 2  # lanes x 2 FLOP per FMA x 2 FMA units
    if clock_ghz:
        fp32_isa = threads * clock_ghz * per_cycle
        isa_text = f"{threads} cores x {clock_ghz:.2f} GHz ({clock_source}) x {per_cycle} FLOP/cycle ({isa} FMA, 2 units)"
    else:
        fp32_isa, isa_text = None, f"no ISA figure: {clock_source}"
    if fp32_isa and (measured_fp32_gflops is None or fp32_isa >= measured_fp32_gflops):
        fp32, fp32_text = fp32_isa, f"ISA peak: {isa_text}"
    elif measured_fp32_gflops:
        fp32 = measured_fp32_gflops
        fp32_text = (f"measured FP32 matmul (it beat the ISA figure {fp32_isa:.0f} GFLOP/s of {isa_text}: the clock boosts higher)"
                     if fp32_isa else f"measured FP32 matmul ({isa_text})")
    else:
        return {}
    scale = fp32 / per_cycle  # threads x effective GHz
    peaks = {"fp32": {"gops": fp32, "source": fp32_text}}
    if "amx_bf16" in present:
        peaks["bf16"] = {"gops": scale * 1024, "source": "AMX-BF16: 1024 FLOP/cycle per core at the FP32 peak's clock"}
    elif "avx512_bf16" in present:
        peaks["bf16"] = {"gops": 2 * fp32, "source": "AVX512_BF16 (vdpbf16ps): 2x the FP32 peak"}
    else:
        peaks["bf16"] = {"gops": fp32, "source": "no native bfloat16: BF16 runs no faster than the FP32 peak"}
    if "amx_int8" in present:
        peaks["int8"] = {"gops": scale * 2048, "source": "AMX-INT8: 2048 OP/cycle per core at the FP32 peak's clock"}
    elif "avx512_vnni" in present or "avx_vnni" in present:
        peaks["int8"] = {"gops": 4 * fp32, "source": f"{'AVX512' if wide else 'AVX'}-VNNI (vpdpbusd): 4x the FP32 peak"}
    else:
        peaks["int8"] = {"gops": 2 * fp32, "source": f"{isa} without VNNI (vpmaddubsw + vpmaddwd): 2x the FP32 peak"}
    for peak in peaks.values():
        peak["gops"] = round(peak["gops"], 1)
    return peaks


def _matmul_seconds(n: int, budget_s: float) -> float:
    import torch

    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    return _best_of(lambda: torch.mm(a, b, out=out), budget_s)


def _copy_seconds(megabytes: int, budget_s: float) -> float:
    import torch

    elements = megabytes * 2**20 // 4
    src, dst = torch.ones(elements), torch.empty(elements)
    return _best_of(lambda: dst.copy_(src), budget_s)


def _best_of(fn: Any, budget_s: float, min_runs: int = 2, max_runs: int = 50) -> float:
    best = math.inf
    start = time.perf_counter()
    runs = 0
    while runs < min_runs or (time.perf_counter() - start < budget_s and runs < max_runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def count_flops(module: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass at ``input_shape`` (conv + matmul only, 2 FLOP per MAC).

    Counted on the meta device (shapes only, no arithmetic), on a copy so the caller's module
    stays where it is; a module that cannot run on meta is counted with a real CPU pass.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def run(mod: torch.nn.Module, device: str) -> int:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            mod(torch.zeros(tuple(input_shape), device=device))
        return int(counter.get_total_flops())

    try:
        meta = copy.deepcopy(module).to("meta")
        return run(meta.eval(), "meta")
    except Exception:  # noqa: BLE001 - any op without a meta kernel: fall back to a real pass
        return run(module, "cpu")


def bytes_moved(input_shape: Sequence[int], output_shape: Sequence[int], bytes_per_element: int = 4) -> int:
    """Input plus output bytes of one frame at FP32: a lower bound on the memory traffic."""
    return (math.prod(input_shape) + math.prod(output_shape)) * bytes_per_element


def roofline_ms(flops: float, bytes_: float, limits: dict[str, Any], precision: str = "fp32") -> float:
    """Lower bound on one frame's latency: max(compute time, memory time), in ms.

    Compute time = flops / the peak of ``precision`` (limits["peaks"], see ``isa_peaks``; limits
    without peaks: matmul_gflops); memory time = bytes / traffic_gbps (read+write rate, 2 x the
    copy rate when only copy_gbps is given).
    """
    traffic = limits.get("traffic_gbps") or 2.0 * limits["copy_gbps"]
    peak = (limits.get("peaks") or {}).get(PEAK_OF.get(precision, "fp32"))
    compute_s = flops / ((peak["gops"] if peak else limits["matmul_gflops"]) * 1e9)
    memory_s = bytes_ / (traffic * 1e9)
    return 1e3 * max(compute_s, memory_s)


def roofline_fraction(bound_ms: float, measured_ms: float) -> float | None:
    """bound / measured: 1.0 = at the roofline, 0.1 = ten times slower than it.

    None above 1.0: a row faster than its bound shows the bound is wrong, not the row fast
    (``roofline_row`` says so in a note).
    """
    if measured_ms is None or measured_ms <= 0 or bound_ms is None:
        return None
    fraction = bound_ms / measured_ms
    return fraction if fraction <= 1.0 else None


def roofline_row(flops: float, bytes_: float, limits: dict[str, Any], precision: str, measured_ms: float | None) -> dict[str, Any]:
    """A row's roofline entries: its bound for its precision, the fraction, which bound, and a note
    when the row beat the bound (the fraction is then left empty: the bound, not the row, is wrong).

    Returns {"roofline_ms", "roofline_fraction", "roofline_bound"} plus "roofline_note" if needed.
    """
    key = PEAK_OF.get(precision, "fp32")
    peak = (limits.get("peaks") or {}).get(key)
    bound = roofline_ms(flops, bytes_, limits, precision)
    traffic = limits.get("traffic_gbps") or 2.0 * limits["copy_gbps"]
    compute_bound = flops / ((peak["gops"] if peak else limits["matmul_gflops"]) * 1e9) >= bytes_ / (traffic * 1e9)
    source = (f"{key} compute peak {peak['gops']:.0f} G{'FLOP' if key != 'int8' else 'OP'}/s, {peak['source']}"
              if peak else f"FP32 torch matmul {limits['matmul_gflops']:.0f} GFLOP/s (not a true peak)")
    which = source if compute_bound else f"memory: in+out bytes at {traffic:.1f} GB/s read+write"
    row: dict[str, Any] = {"roofline_ms": round(bound, 3), "roofline_fraction": roofline_fraction(bound, measured_ms),
                           "roofline_bound": which}
    if measured_ms and measured_ms > 0 and bound > measured_ms:
        row["roofline_note"] = (f"the row ran in {measured_ms:.3g} ms, under its {bound:.3g} ms bound ({which}): "
                                "the bound is wrong for this host, so no fraction is given")
    return row
