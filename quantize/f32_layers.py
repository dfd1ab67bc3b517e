"""Which layers stay f32 under BF16 inference: few, found by measurement on the worst frames.

BF16's error in these models sits in a few layers, but which ones shows only in combination.
Measured on the 48 eval frames at 400x600 (Intel Xeon, AMX, 2 threads): IAT's FP32 IR in BF16
42.06/34.59 dB, with 3 convolutions f32 50.47/40.08 dB at 69 ms against 147 ms in f32. The IAT
student in BF16 41.15/31.99 dB (lamp frames); no single layer kept f32 lifts its worst frames,
so adding layers one at a time by their own effect finds nothing within 16 layers, while
starting from every compute layer f32 (52.19/47.18 dB) and taking marks away keeps 3 of them,
48.99/42.43 dB at 34 ms against 66 ms in f32.

``find_f32_layers`` (the quantize stage's runtime-option search calls it when a reduced precision
misses its floor on an FP32 graph) therefore eliminates. It starts from the layers this search kept
before, which the zoo entry carries (``QuantPreset.bf16_f32_modules``, with the host they were found
on): when they meet the floor, steps 3-4 run within them (IAT: 9 runs, 11 s, instead of 29 runs
from every layer, 24.5 s; the student 11 runs, 6 s, against 23 and 14.5 s; the same layers), and
their result is confirmed on the whole set like any other. When they miss (another host, other
weights), the search runs from every layer:

1. the all-BF16 runner's PSNR per frame on the wide eval set; its PROBE_FRAMES worst frames are
   where the search looks;
2. every compute node whose mark OpenVINO can compile (2026.4 fails "object is not initialized"
   on some convolutions; those are skipped and recorded) starts f32; if even that misses the
   floor's min on the probe frames, nothing is kept and the record says so;
3. marks are taken away in groups, bisecting (contiguous halves in execution order, so a run of
   insensitive layers goes in one step): a group leaves when the probe frames' min still meets
   the floor without it, else its halves are tried, down to single layers (the probe frames run
   worst first, and a check stops at the first frame under the floor);
4. the whole set is measured: done when its min meets the floor too, else its worst frames join
   the probe frames and the elimination runs again (ROUNDS in all).

PROBE_FRAMES 4 rather than 8 (same Intel AMX host): IAT kept the same 4 layers, 51.73/41.61 dB on all
48 frames, in one round, its search 40.5 -> 28.0 s; the student the same 3 layers, 48.99/42.43 dB,
in two rounds, 14.4 s. The whole-set check is what guarantees the floor; fewer probe frames only
make each step cheaper.

It returns the names, or None, and a record of every step. The floor's mean is for the whole set:
the caller checks it there, and times the result against the current options like any other
candidate (layers kept f32 cost speed; only a measured gain is adopted).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from export.verify import fidelity_summary, frame_psnrs, measure, run_frames
from lowlight_edge.errors import MissingRequirement
from lowlight_edge.metrics import frame_psnr
from runtimes.base import Runner

log = logging.getLogger(__name__)

PROBE_FRAMES = 4  # worst frames of a run that the elimination is decided on
ROUNDS = 2  # eliminations at most: a second one when the first one's layers miss on another frame
COMPILE_THREADS = 2  # the single-mark compile checks, two at a time: IAT's 50 took 6.2 s one by one, 4.2 s so


class _Search:
    """The measurements of one search: per-frame PSNR of ``options`` plus a set of f32 layers."""

    def __init__(self, base: Runner, options: dict, frames: list[np.ndarray], refs: list[np.ndarray]) -> None:
        self.base, self.options, self.frames, self.refs = base, options, frames, refs
        self.runs = 0

    def _variant(self, layers: list[str]) -> Runner:
        """The runner of ``options`` with ``layers`` kept f32 (MissingRequirement when the marks do not compile)."""
        return self.base.variant({**self.options, **({"f32_layers": sorted(layers)} if layers else {})})

    def psnrs(self, layers: list[str], which: list[int], stop_below: float | None = None) -> list[float] | None:
        """PSNR of each frame in ``which`` with ``layers`` kept f32; None when OpenVINO cannot compile the marks
        (``which`` empty: only that is checked). ``stop_below``: the frames after the first one under it
        are not run (a set that misses on one frame misses; the worst frames come first)."""
        try:
            with self._variant(layers) as runner:
                found = []
                for i in which:
                    found.append(round(frame_psnr(runner(self.frames[i]), self.refs[i]), 2))  # as measure rounds
                    if stop_below is not None and found[-1] < stop_below:
                        break
        except MissingRequirement:
            return None
        self.runs += bool(which)
        return found

    def compiles(self, name: str) -> bool:
        return self.psnrs([name], []) is not None

    def whole(self, layers: list[str]) -> tuple[list[float], dict]:
        """(each frame's PSNR, the set's fidelity as a candidate records it) with ``layers`` kept f32."""
        with self._variant(layers) as runner:
            result = measure(run_frames(runner, self.frames), self.refs)
        self.runs += 1
        return frame_psnrs(result), fidelity_summary(result)


def _worst(psnrs: list[float], which: list[int]) -> list[int]:
    """The PROBE_FRAMES frames of ``which`` with the lowest PSNR, the worst first."""
    return [which[i] for i in np.argsort(psnrs, kind="stable")[:PROBE_FRAMES]]


def _eliminate(search: _Search, kept: list[str], probe: list[int], floor_min: float, steps: list[dict]) -> list[str]:
    """``kept`` (which meets ``floor_min`` on ``probe``) less every group of marks it does not need."""

    known: dict[frozenset[str], bool] = {}  # a set already measured: after a group failed and its first
    # half left, the set without its second half is the set without the group, and is not run again

    def holds(layers: list[str]) -> bool:
        key = frozenset(layers)
        if key not in known:
            psnrs = search.psnrs(layers, probe, stop_below=floor_min)
            known[key] = psnrs is not None and min(psnrs) >= floor_min
        return known[key]

    pending = [kept]
    while pending:
        group = pending.pop(0)
        without = [n for n in kept if n not in group]
        if len(group) < len(kept) and holds(without):
            kept = without
            steps.append({"dropped": len(group), "left": len(kept)})
        elif len(group) > 1:
            half = len(group) // 2
            pending[:0] = [group[:half], group[half:]]
    return kept


def _compilable(search: _Search, names: list[str]) -> list[str]:
    """Those of ``names`` whose single f32 mark OpenVINO compiles, checked COMPILE_THREADS at a time."""
    with ThreadPoolExecutor(max_workers=COMPILE_THREADS) as pool:  # OpenVINO compiles release the GIL
        return [n for n, ok in zip(names, pool.map(search.compiles, names), strict=True) if ok]


def _rounds(search: _Search, candidates: list[str], probe: list[int], everywhere: list[int], floor_min: float,
            labels: list[str], rounds: list[dict], stop_below: float | None = None) -> tuple[list[str] | None, list[int], dict | None]:
    """Up to ROUNDS eliminations from ``candidates`` (steps 2-4 of the module docstring), each round's
    step appended to ``rounds``: (the kept layers, or None; the probe frames by then; their whole-set
    fidelity). None with ``rounds[-1]["kept"]`` absent: ``candidates`` themselves miss on the probe
    frames. ``stop_below``: their check stops at the first frame under it (``_Search.psnrs``)."""
    for _ in range(ROUNDS):
        every = search.psnrs(candidates, probe, stop_below=stop_below)
        step: dict = {"probe_frames": [labels[i] for i in probe], "all_f32_probe_min_db": every and min(every), "steps": []}
        rounds.append(step)
        if every is None or min(every) < floor_min:
            return None, probe, None
        kept = _eliminate(search, candidates, probe, floor_min, step["steps"])
        whole, fidelity = search.whole(kept)
        step.update(kept=sorted(kept), whole_set_min_db=min(whole))
        if min(whole) >= floor_min and not fidelity["nonfinite"]:
            return sorted(kept), probe, fidelity
        step["outcome"] = "another frame misses: its worst frames join the probe frames"
        probe = probe + [i for i in _worst(whole, everywhere) if i not in probe]
    return None, probe, None


def _from_start(search: _Search, start: list[str], probe: list[int], everywhere: list[int], floor_min: float,
                labels: list[str], record: dict) -> tuple[list[str] | None, list[int]]:
    """The search from the model's measured layers (``start``): ``_rounds`` over their marks that
    compile. Returns (the layers, or None to search from every layer; the probe frames for that)."""
    found: dict = {"layers": list(start), "rounds": []}
    record["start"] = found
    if not start:
        found["outcome"] = "none of them is a compute node of this graph: searched from every compute layer"
        return None, probe
    compiled = _compilable(search, start)
    found["compiled"] = len(compiled)
    if not compiled:
        found["outcome"] = "none of their marks compiles: searched from every compute layer"
        return None, probe
    layers, probe, fidelity = _rounds(search, compiled, probe, everywhere, floor_min, labels, found["rounds"], floor_min)
    if layers:
        record["whole_set"] = fidelity
        found["outcome"] = f"{len(layers)} of them meet the floor's min on all {len(everywhere)} frames"
    elif "kept" not in found["rounds"][-1]:
        found["outcome"] = "they miss the floor's min on the probe frames: searched from every compute layer"
    else:
        found["outcome"] = "another frame misses in every round: searched from every compute layer, with those frames"
    return layers, probe


def find_f32_layers(base: Runner, options: dict, frames: list[np.ndarray], refs: list[np.ndarray],
                    floor: tuple[float, float], reduced: list[float] | None = None,
                    start: list[str] | None = None) -> tuple[list[str] | None, dict]:
    """(the f32 layers that bring ``options``' reduced precision to ``floor``'s min on every frame of
    ``frames``, or None; the record). ``base`` is the FP32 runner (``variant`` compiles the
    candidates); ``frames``/``refs`` the wide eval set; ``reduced``: each frame's PSNR under
    ``options`` alone when the caller has measured it (else it is measured here). With layers, the
    record's ``whole_set`` is their fidelity on every frame (the caller need not measure it again).

    ``start``: layers measured before to need f32 (the zoo's ``QuantPreset.bf16_f32_modules``), tried
    first: when they hold, the elimination runs within them (IAT: 38 candidates took 29 runs),
    and their result is confirmed on the whole set like any other; else the search starts from
    every compute layer.
    """
    started = time.perf_counter()
    search = _Search(base, options, frames, refs)
    labels = list(getattr(refs, "labels", None) or [f"frame {i}" for i in range(len(refs))])
    everywhere = list(range(len(frames)))
    if reduced is None:
        reduced = search.psnrs([], everywhere)
    probe = _worst(reduced, everywhere)
    nodes = base.compute_nodes()
    record: dict = {"floor_min_db": floor[1], "compute_nodes": len(nodes), "rounds": []}
    if start is not None:
        layers, probe = _from_start(search, [n for n in start if n in nodes], probe, everywhere, floor[1], labels, record)
        if layers:
            record.update(layers=layers, runs=search.runs, seconds=round(time.perf_counter() - started, 1))
            log.info("f32 layers for %s: %s from the model's measured layers (%d runs, %.0f s)", options, layers,
                     search.runs, record["seconds"])
            return layers, record
    candidates = _compilable(search, nodes)
    record["uncompilable"] = [n for n in nodes if n not in candidates]
    layers, _, fidelity = _rounds(search, candidates, probe, everywhere, floor[1], labels, record["rounds"])
    last = record["rounds"][-1]
    if layers:
        record["whole_set"] = fidelity
        last["outcome"] = f"{len(layers)} of {len(nodes)} compute layers f32 meet the floor's min on all {len(frames)} frames"
    elif "kept" not in last:
        last["outcome"] = "every compute layer f32 misses the floor on the probe frames: BF16's error is elsewhere"
    record.update(layers=layers, runs=search.runs, seconds=round(time.perf_counter() - started, 1))
    log.info("f32 layers for %s: %s (%d runs, %.0f s)", options, layers, search.runs, record["seconds"])
    return layers, record
