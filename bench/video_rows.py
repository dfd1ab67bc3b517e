"""The bench's video figures (issue 18): streams at the target frame rate, and temporal flicker.

A camera integrator asks how many streams one device keeps at 30 fps, end to end: decode ->
pre -> infer -> post -> encode. Each row that runs here gets a ``video`` record measured on short
static-camera clips made from real eval photos (one still per scene, a slow exposure ramp and
fresh sensor noise per frame in linear light, like the QAT re-exposure; the recipe is recorded):

* ``e2e_fps`` and ``infer_fps`` over the same frames, every stage timed, one stream at a time on
  the row's threads (a pipelined deployment would overlap decode/encode with inference, so
  ``streams_at_fps`` = e2e_fps / target fps is the conservative figure);
* ``flicker``: the output's mean frame-to-frame change over the input's (1.0 = none added), per
  pixel and on 8x8 block means (the low-frequency change a viewer sees as flicker);
* for models with per-frame global parameters (IAT, its student) the same with those parameters
  smoothed over time (lowlight_edge.temporal), and the per-frame PSNR that smoothing costs.

RAW models (video is RGB), tiled rows, the OpenVINO-defaults baseline row and rows whose runtime
cannot run here get a ``skipped`` reason instead of figures.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.datasets import eval_frames
from lowlight_edge.errors import LowlightError
from lowlight_edge.metrics import FlickerMeter
from lowlight_edge.temporal import COARSE_BLOCK, SmoothedModel
from quantize.exposure import READ_NOISE, SHOT_NOISE, darken
from runtimes import get_backend
from runtimes.video import VideoWriter, iter_frames, write_video

TARGET_FPS = 30
CLIP_FRAMES = 16  # per scene: enough consecutive pairs for a stable flicker figure on 2 cores
SCENES = 2
RAMP = (0.85, 1.0)  # exposure over the clip, as a fraction of the still's own mean level
SMOOTHING_ALPHA = 0.9
SEED = 7


def make_clips(eval_dir: Path, spec: Any, resolution: tuple[int, int], work: Path) -> tuple[list[Path], dict]:
    """SCENES clips of CLIP_FRAMES at TARGET_FPS in ``work``, and the recipe that made them."""
    stills = eval_frames(eval_dir, spec, resolution, size=SCENES, seed=SEED, scenes=None)
    rng = np.random.default_rng(SEED)
    clips = []
    for k, still in enumerate(stills):
        mean = float(still.mean())
        levels = np.linspace(RAMP[0], RAMP[1], CLIP_FRAMES) * mean
        frames = (darken(still, float(level), rng)[0].transpose(1, 2, 0) for level in levels)
        path = work / f"{spec.name}.clip{k}.mp4"
        write_video(path, frames, Fraction(TARGET_FPS))
        clips.append(path)
    recipe = {
        "scenes": list(stills.labels),
        "frames_per_scene": CLIP_FRAMES,
        "fps": TARGET_FPS,
        "resolution": f"{resolution[0]}x{resolution[1]}",
        "exposure_ramp": list(RAMP),
        "noise": {"shot": SHOT_NOISE, "read": READ_NOISE, "space": "linear", "bits": 8},
        "codec": "H.264 (libx264, crf 18, yuv420p)",
        "seed": SEED,
    }
    return clips, recipe


def _stream(clip: Path, model: Any, sink: Path) -> tuple[dict[str, float], int, list[float]]:
    """One clip through decode -> pre -> model -> post -> encode; per-stage seconds, frames, flicker ratios."""
    seconds = dict.fromkeys(("decode", "pre", "infer", "post", "encode"), 0.0)
    meters = (FlickerMeter(), FlickerMeter(COARSE_BLOCK))
    info, frames = iter_frames(clip)
    count = 0
    try:
        with VideoWriter(sink, info.rate) as writer:
            while True:
                t0 = time.perf_counter()
                rgb = next(frames, None)
                t1 = time.perf_counter()
                seconds["decode"] += t1 - t0
                if rgb is None:
                    break
                x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
                t2 = time.perf_counter()
                y = model(x)
                t3 = time.perf_counter()
                out = np.clip(y[0].transpose(1, 2, 0), 0.0, 1.0)
                t4 = time.perf_counter()
                writer.write(out)
                t5 = time.perf_counter()
                seconds["pre"] += t2 - t1
                seconds["infer"] += t3 - t2
                seconds["post"] += t4 - t3
                seconds["encode"] += t5 - t4
                for meter in meters:
                    meter.update(x[0], y[0])
                count += 1
    finally:
        frames.close()
    sink.unlink(missing_ok=True)
    return seconds, count, [m.ratio() for m in meters]


def _rates(seconds: dict[str, float], count: int) -> dict[str, Any]:
    total = sum(seconds.values())
    e2e = count / total if total > 0 else None
    infer = count / seconds["infer"] if seconds["infer"] > 0 else None
    return {
        "e2e_fps": round(e2e, 2) if e2e else None,
        "infer_fps": round(infer, 2) if infer else None,
        "streams_at_fps": round(e2e / TARGET_FPS, 3) if e2e else None,
        "stage_ms": {k: round(v / count * 1e3, 2) for k, v in seconds.items()} if count else None,
    }


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return round(float(np.mean(kept)), 4) if kept else None


def measure_video(
    backend: str, artifact: Path, device: str, options: dict, spec: Any, clips: list[Path], work: Path
) -> dict[str, Any]:
    """The ``video`` record of one row (see the module docstring)."""
    totals = dict.fromkeys(("decode", "pre", "infer", "post", "encode"), 0.0)
    frames, px, coarse = 0, [], []
    smoothed_totals = dict.fromkeys(totals, 0.0)
    reports = []
    with get_backend(backend).load(artifact, device=device, options=options) as runner:
        runner(np.zeros((1, 3, *_hw(clips[0])), dtype=np.float32))  # warm-up: compile caches, first-call costs
        for clip in clips:
            seconds, count, (ratio, coarse_ratio) = _stream(clip, runner, work / "sink.mp4")
            for key in totals:
                totals[key] += seconds[key]
            frames += count
            px.append(ratio)
            coarse.append(coarse_ratio)
            if spec.global_params is not None:  # the same clip again, parameters smoothed over time
                model = SmoothedModel(runner, SMOOTHING_ALPHA, spec.global_params.outputs)
                seconds, _, _ = _stream(clip, model, work / "sink.mp4")
                for key in smoothed_totals:
                    smoothed_totals[key] += seconds[key]
                reports.append(model.report.summary())
    record: dict[str, Any] = {"frames": frames, "target_fps": TARGET_FPS, **_rates(totals, frames)}
    record["flicker"] = _mean(px)
    record["flicker_coarse"] = _mean(coarse)
    if reports:
        cost = [r["psnr_vs_unsmoothed_db"] for r in reports]
        record["smoothing"] = {
            "alpha": SMOOTHING_ALPHA,
            "what": spec.global_params.what,
            "flicker": _mean([r["flicker_smoothed"] for r in reports]),
            "flicker_coarse": _mean([r["flicker_coarse_smoothed"] for r in reports]),
            "psnr_vs_unsmoothed_db": {
                "mean": _mean([c["mean"] for c in cost]),
                "min": min((c["min"] for c in cost if c["min"] is not None), default=None),
            },
            "e2e_fps": _rates(smoothed_totals, frames)["e2e_fps"],
        }
    else:
        record["smoothing"] = {"skipped": f"{spec.name} has no per-frame global parameters to smooth"}
    return record


def _hw(clip: Path) -> tuple[int, int]:
    info, frames = iter_frames(clip)
    frames.close()
    return info.height, info.width


def video_record(
    backend: str, artifact: Path, device: str, options: dict, spec: Any, clips: list[Path] | None, work: Path, skip: str | None
) -> dict[str, Any]:
    """measure_video, or {"skipped": why} for a row it cannot honestly measure (never a crash of the bench)."""
    if skip:
        return {"skipped": skip}
    try:
        return measure_video(backend, artifact, device, options, spec, clips or [], work)
    except LowlightError as err:
        return {"skipped": f"could not run here: {err}"}


def skip_reason(spec: Any, backend: str, device: str, tiled: bool, baseline: bool = False) -> str | None:
    """Why a row gets no video figures, or None."""
    if backend == "torch":
        return "PyTorch eager is the fidelity reference, not a deployment"
    if baseline:  # a speed reference for the shipped rows; its clips would only lengthen the run
        return "the OpenVINO-defaults baseline is a speed reference, not a deployment"
    if spec.input_kind == "raw_bayer":
        return "RAW Bayer model: camera video is RGB"
    if tiled:
        return "a memory-bounded target runs frames in tiles; video figures are for whole frames"
    if backend == "tensorrt" and not device.startswith("cuda"):
        return "TensorRT needs a CUDA device"
    return None


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:g}"


def markdown_lines(rows: list[dict]) -> list[str]:
    """The results.md section: one line per row with a video record."""
    measured = [r for r in rows if isinstance(r.get("video"), dict) and r.get("runtime") != "torch" and not r.get("baseline")]
    if not measured:
        return []
    lines = [
        "",
        f"## Video: streams at {TARGET_FPS} fps and temporal flicker",
        "",
        "End to end = decode -> pre -> infer -> post -> encode (H.264), one stream at a time on the row's threads; "
        f"streams@{TARGET_FPS} = end-to-end fps / {TARGET_FPS}. Flicker = output's mean frame-to-frame change / input's "
        f"(1.0 = none added), per pixel and on {COARSE_BLOCK}x{COARSE_BLOCK} block means; smoothing: the per-frame "
        f"global parameters averaged exponentially (alpha {SMOOTHING_ALPHA}), its cost as PSNR vs the unsmoothed frames.",
        "",
        f"| model | precision | e2e fps | infer fps | streams@{TARGET_FPS} | flicker | flicker (blocks) | smoothed flicker | smoothed (blocks) | smoothing cost dB mean/min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in measured:
        video = row["video"]
        if "skipped" in video:
            lines.append(f"| {row['model']} | {row['precision']} ({row['runtime']}) | skipped: {video['skipped']} |||||||| |")
            continue
        smooth = video.get("smoothing") or {}
        cost = smooth.get("psnr_vs_unsmoothed_db") or {}
        lines.append(
            f"| {row['model']} | {row['precision']} ({row['runtime']}) | {_fmt(video['e2e_fps'])} | {_fmt(video['infer_fps'])} "
            f"| {_fmt(video['streams_at_fps'])} | {_fmt(video['flicker'])} | {_fmt(video['flicker_coarse'])} "
            f"| {_fmt(smooth.get('flicker'))} | {_fmt(smooth.get('flicker_coarse'))} "
            f"| {_fmt(cost.get('mean'))} / {_fmt(cost.get('min'))} |"
        )
    recipe = next((r["video"]["clip"] for r in measured if "clip" in r["video"]), None)
    if recipe:
        lines += ["", f"Clips: {recipe['scenes']} x {recipe['frames_per_scene']} frames at {recipe['fps']} fps, "
                  f"exposure ramp {recipe['exposure_ramp']} of each still's mean, sensor noise in linear light, seed {recipe['seed']}."]
    return lines


def summary_text(video: Any) -> str | None:
    """One line of a row's video figures for results.html, or None when the row has no record."""
    if not isinstance(video, dict):
        return None
    if "skipped" in video:
        return f"video: skipped ({video['skipped']})"
    text = (
        f"video: {_fmt(video['e2e_fps'])} fps end to end ({_fmt(video['streams_at_fps'])} streams at {TARGET_FPS} fps), "
        f"{_fmt(video['infer_fps'])} fps inference only; flicker {_fmt(video['flicker'])} "
        f"(blocks {_fmt(video['flicker_coarse'])})"
    )
    smooth = video.get("smoothing") or {}
    if "flicker" in smooth:
        cost = smooth["psnr_vs_unsmoothed_db"]
        text += (
            f"; smoothed (alpha {smooth['alpha']}): flicker {_fmt(smooth['flicker'])} (blocks {_fmt(smooth['flicker_coarse'])}), "
            f"cost {_fmt(cost['mean'])} / {_fmt(cost['min'])} dB mean / min vs unsmoothed"
        )
    return text
