"""FLOPs per frame, this host's measured limits, and the roofline lower bound of a row.

The bound answers "how far from this machine's ceiling is the row?": a row at 0.5 of its bound
runs twice as slow as the better of compute and memory would allow; a row near 0.01 is
dominated by something else (elementwise traffic, kernel launches, framework overhead).

- FLOPs count only convolutions and matmuls (torch.utils.flop_counter, 2 FLOP per MAC): the
  elementwise curve ops of the DCE family are left out, so the compute bound is a lower bound.
- Bytes moved are the input and output tensors at FP32, read once and written once: a lower
  bound, since every real network also moves its activations and weights.
- Limits are measured on this host in the same run: the best FP32 matmul GFLOP/s of torch and
  the best large-copy bandwidth.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


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
    return {
        "matmul_gflops": flop / best_mm / 1e9,
        "copy_gbps": copy_gbps,
        "traffic_gbps": 2.0 * copy_gbps,
        "threads": threads,
        "matmul_n": matmul_n,
        "copy_mb": copy_mb,
    }


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


def roofline_ms(flops: float, bytes_: float, limits: dict[str, Any]) -> float:
    """Lower bound on one frame's latency: max(compute time, memory time), in ms.

    Compute time = flops / matmul_gflops; memory time = bytes / traffic_gbps (read+write rate,
    2 x the copy rate when only copy_gbps is given).
    """
    traffic = limits.get("traffic_gbps") or 2.0 * limits["copy_gbps"]
    compute_s = flops / (limits["matmul_gflops"] * 1e9)
    memory_s = bytes_ / (traffic * 1e9)
    return 1e3 * max(compute_s, memory_s)


def roofline_fraction(bound_ms: float, measured_ms: float) -> float | None:
    """bound / measured: 1.0 = at the roofline, 0.1 = ten times slower than it."""
    if measured_ms is None or measured_ms <= 0 or bound_ms is None:
        return None
    return bound_ms / measured_ms
