"""Speed-ups against the baseline, measured side by side: interleaved rounds in one process (issue 17).

Each row's p50 comes from its own worker process, run a minute or more after the others; on a
shared host the ratio of two such p50s moved from 0.66x to 1.35x for graphs that time equal when
interleaved (TinyDCE, Zero-DCE++ and SGZ, shipped FP32 IR vs plain export, 2026-12-02). So the
``speedup_vs_baseline`` of an OpenVINO row is measured here instead: every round runs the baseline
and each shipped artifact once, on the same frame, in an order that rotates from round to round,
and the statistic is the median over rounds of baseline ms / row ms with its distribution-free
99% interval (the sign test of the ship rule, quantize.search.median_interval). Each round's
times are recorded, so the figure can be recomputed from the results.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from quantize.search import SPEED_CONFIDENCE, median_interval
from runtimes import get_backend
from runtimes.isolation import time_call, timers

MIN_ROUNDS = 10  # the sign test's 99% interval needs at least 8 rounds
MAX_ROUNDS = 40
SECONDS = 15.0  # rounds beyond MIN_ROUNDS stop at this cap (the first MIN_ROUNDS always run)
STATISTIC = ("median of per-round baseline ms / row ms, interleaved (order rotating each round) in one process, or one "
             "per artifact when their denormal modes differ (runtimes.isolation)")


def rotate(items: list[Any], shift: int) -> list[Any]:
    """``items`` rotated left by ``shift``: round i starts with entry i mod n, so no runner always follows another."""
    shift %= len(items)
    return items[shift:] + items[:shift]


def time_rounds(runners: dict[str, Any], frames: list[np.ndarray], min_rounds: int = MIN_ROUNDS,
                max_rounds: int = MAX_ROUNDS, seconds: float = SECONDS) -> dict[str, list[float]]:
    """ms per round for each runner: round i runs every runner once on frame i (cycling), in rotated order."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    with timers(runners, frames) as calls:  # one process, or one per runner when their denormal modes differ
        for name in names:  # untimed first calls: compile caches, allocations
            calls[name](0)
        deadline = time.perf_counter() + seconds
        rounds = 0
        while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() < deadline):
            for name in rotate(names, rounds):
                times[name].append(round(calls[name](rounds), 3))
            rounds += 1
    return times


def median_ms(runner: Any, frames: list[np.ndarray], seconds: float, min_calls: int = 3) -> float:
    """Median ms of ``runner`` over ``seconds`` of back-to-back calls (at least ``min_calls``), cycling ``frames``."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < min_calls:
        times.append(time_call(runner, frames[len(times) % len(frames)]))
    return statistics.median(times)


def ratio_record(baseline_ms: list[float], row_ms: list[float]) -> dict[str, Any]:
    """The speed-up record of one row from paired per-round times (no timing here)."""
    ratios = [b / max(r, 1e-6) for b, r in zip(baseline_ms, row_ms, strict=True)]
    interval = median_interval(ratios, SPEED_CONFIDENCE)
    return {
        "median": round(statistics.median(ratios), 4),
        "interval": [round(interval[0], 4), round(interval[1], 4)] if interval else None,
        "confidence": SPEED_CONFIDENCE,
        "rounds": len(ratios),
        "statistic": STATISTIC,
        "samples_ms": {"baseline_ms": baseline_ms, "row_ms": row_ms},
    }


def paired_vs_baseline(baseline: tuple[str, Path], rows: dict[str, tuple[str, Path]], device: str, options: dict,
                       frames: list[np.ndarray]) -> dict[str, dict[str, Any]]:
    """{row key: ratio_record} for each of ``rows`` ({key: (backend, artifact)}) against ``baseline``.

    Every artifact is loaded as its bench row loads it (the target's load options; a shipped IR's
    sidecar options apply, the plain export has none). ``frames``: the eval frames, each (1, C, H, W).
    """
    loaded: dict[str, Any] = {}
    try:
        for key, (backend, artifact) in {"baseline": baseline, **rows}.items():
            loaded[key] = get_backend(backend).load(artifact, device=device, options=options)
        times = time_rounds(loaded, frames)
    finally:
        for runner in loaded.values():
            runner.close()
    return {key: ratio_record(times["baseline"], times[key]) for key in rows}
