"""Which layers stay f32 under BF16 inference: the fewest, found by measurement on the worst frames.

BF16's error in these models is not spread evenly over the layers. IAT's FP32 IR in BF16 on the 48
eval frames at 400x600 (Intel Xeon, AMX): 42.06/34.59 dB, 70 ms against 147 ms in f32; with its
first convolution kept f32 44.89/36.78 dB; with three convolutions 50.47/40.08 dB at 69 ms. The
IAT student, by contrast, needs nearly every convolution in f32 before its lamp frames pass,
which costs all of BF16's speed: this search then finds nothing and says so.

``find_f32_layers`` (the quantize stage's runtime-option search calls it when a reduced precision
misses its floor):

1. the all-BF16 runner's PSNR per frame on the wide eval set; its PROBE_FRAMES worst frames are
   where the search looks (the floor's min is decided there);
2. each compute node alone kept f32 (``f32_layers``), scored by the probe frames' min PSNR; a node
   whose mark OpenVINO cannot compile is skipped and recorded (2026.4 fails "object is not
   initialized" on some convolutions followed by a fused add);
3. greedily, best score first: a node is kept when it raises the probe frames' min; when that
   min meets the floor's, the whole set is measured: done if its min does too, else its worst
   frames join the probe frames and the greedy goes on (the student: one layer lifted its four
   worst lamp frames from 32 to 43.6 dB while another frame stayed at 33.9). At most
   MAX_F32_LAYERS are kept. The floor's mean is for the whole set: the caller checks it.

It returns the names, or None when the floor was not reached, and a record of every step. The
caller confirms the result on the whole wide set and times it against the current options like
any other candidate: layers in f32 cost speed, and only a measured gain is adopted.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from export.verify import measure, run_frames
from lowlight_edge.errors import MissingRequirement
from runtimes.base import Runner

log = logging.getLogger(__name__)

PROBE_FRAMES = 4  # worst frames of the all-BF16 run that the per-layer search is scored on
MAX_F32_LAYERS = 8  # more than this and BF16's gain is gone (the student: 16 layers, 64 ms vs 69 ms f32)


def _worst(psnrs: list[float], which: list[int]) -> list[int]:
    """The PROBE_FRAMES frames of ``which`` with the lowest PSNR."""
    return [which[i] for i in np.argsort(psnrs)[:PROBE_FRAMES]]


def find_f32_layers(base: Runner, options: dict, frames: list[np.ndarray], refs: list[np.ndarray],
                    floor: tuple[float, float]) -> tuple[list[str] | None, dict]:
    """(the f32 layers that bring ``options``' reduced precision to ``floor`` on the probe frames, or
    None; the record). ``base`` is the FP32 runner (``variant`` compiles the candidates);
    ``frames``/``refs`` the wide eval set."""
    start = time.perf_counter()
    labels = list(getattr(refs, "labels", None) or [f"frame {i}" for i in range(len(refs))])

    def per_frame(layers: list[str], which: list[int]) -> list[float] | None:
        """PSNR of each frame in ``which`` with ``layers`` kept f32 (None: OpenVINO cannot compile that mark)."""
        extra = {"f32_layers": sorted(layers)} if layers else {}
        try:
            with base.variant({**options, **extra}) as runner:
                outs = run_frames(runner, [frames[i] for i in which])
        except MissingRequirement:
            return None
        return [measure([o], [refs[i]])["psnr_db"]["min"] for o, i in zip(outs, which, strict=True)]

    everywhere = list(range(len(frames)))
    probe = _worst(per_frame([], everywhere), everywhere)
    record: dict = {"probe_frames": [labels[i] for i in probe], "floor_db": list(floor), "max_layers": MAX_F32_LAYERS}
    singles, uncompilable = {}, []
    for name in base.compute_nodes():
        psnrs = per_frame([name], probe)
        if psnrs is None:
            uncompilable.append(name)
        else:
            singles[name] = min(psnrs)
    record["uncompilable"] = uncompilable
    kept: list[str] = []
    best = min(per_frame([], probe))
    steps: list[dict] = []
    reached = False
    for name in sorted(singles, key=lambda n: -singles[n]):
        if len(kept) >= MAX_F32_LAYERS:
            break
        psnrs = per_frame([*kept, name], probe)
        if psnrs is None or min(psnrs) <= best:
            continue
        kept.append(name)
        best = min(psnrs)
        steps.append({"added": name, "probe_min_db": best, "probe_frames": len(probe)})
        if best < floor[1]:
            continue
        # the probe frames meet the floor's min: does the whole set? If not, its worst frames join the probe
        whole = per_frame(kept, everywhere)
        steps[-1]["whole_set_min_db"] = min(whole)
        if min(whole) >= floor[1]:
            reached = True
            break
        probe = sorted(set(probe) | set(_worst(whole, everywhere)))
        best = min(whole[i] for i in probe)
    record.update(steps=steps, layers=sorted(kept) if reached else None, seconds=round(time.perf_counter() - start, 1),
                  singles_scored=len(singles))
    log.info("f32 layers for %s: %s (%d scored, %.0f s)", options, record["layers"], len(singles), record["seconds"])
    return record["layers"], record
