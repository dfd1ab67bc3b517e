"""Per-stage verification: run an artifact on real frames and compare with PyTorch FP32.

Every file the pipeline writes is checked this way before it is recorded, so the manifest's
fidelity figures are measurements of the file itself, not of what it was made from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

import runtimes
from lowlight_edge.errors import CheckFailed
from lowlight_edge.metrics import fidelity

log = logging.getLogger(__name__)

FP32_MIN_PSNR_DB = 60.0  # a float stage must reproduce PyTorch to this (issue: >= 60 dB)


def measure(outputs: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """metrics.fidelity as the manifest records it (rounded, no SSIM); a shape mismatch is CheckFailed.

    Next to the mean it names the worst frame (``worst``: its label and PSNR; the label comes from
    the references' ``labels`` when they are a ``lowlight_edge.datasets.Frames`` list, as
    ``Context.references`` returns them, else its index), and ``per_frame`` lists every frame's PSNR:
    a budget's min must hold on that frame, and a reader must be able to find it.
    """
    try:
        result = fidelity(outputs, references, with_ssim=False, rounded=True)
    except ValueError as err:
        msg = f"{err} (the PyTorch output); re-export the model"
        raise CheckFailed(msg) from err
    psnrs = result.pop("psnr_per_image")
    del result["ssim"]
    labels = list(getattr(references, "labels", None) or [f"frame {i}" for i in range(len(psnrs))])
    worst = int(np.argmin(psnrs))
    result["worst"] = {"frame": labels[worst], "psnr_db": psnrs[worst]}
    result["per_frame"] = dict(zip(labels, psnrs, strict=True)) if len(set(labels)) == len(labels) else psnrs
    return result


def frame_psnrs(result: dict) -> list[float]:
    """Each frame's PSNR from a ``measure`` result, in frame order."""
    per_frame = result["per_frame"]
    return list(per_frame.values()) if isinstance(per_frame, dict) else list(per_frame)


def fidelity_summary(result: dict) -> dict:
    """A ``measure`` result as a precision plan records a candidate's: frames, PSNR, NaN/Inf, worst frame."""
    return {"frames": len(result["per_frame"]), "psnr_db": result["psnr_db"], "nonfinite": result["nonfinite"],
            "worst": result.get("worst")}


def run_frames(runner: Callable[[np.ndarray], np.ndarray], frames: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(runner(f), dtype=np.float32) for f in frames]


# What checks an FP32 ONNX file against PyTorch: ONNX Runtime, the reference implementation, with
# denormals flushed like the references (runtimes.backend_onnxruntime). The raw export is checked in
# OpenVINO instead (f32, its CPU plugin reads ONNX): a second, independent ONNX implementation, and
# ORT runs IAT's unfolded raw graph at 3.3 s a 400x600 frame (2 threads) against 0.12 s in OpenVINO.
# The simplified file, which ONNX Runtime and TensorRT consume, is always checked in ONNX Runtime.
ONNX_CHECKERS = {"onnxruntime": {"denormals": True}, "openvino": {"precision": "f32"}}  # load options, on the CPU
CHECKER_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def checker_name(runtime: str | None) -> str:
    """How a fidelity record's ``runtime`` reads in a sentence ("ONNX Runtime"); unknown ones as they are."""
    return CHECKER_NAMES.get(runtime or "", runtime or "an unnamed runtime")


def verify_onnx(path, frames: list[np.ndarray], references: list[np.ndarray], threads: int | None = None,
                runtime: str = "onnxruntime") -> dict:
    """Fidelity of an ONNX file in ``runtime`` (ONNX_CHECKERS, on the CPU) against the PyTorch references."""
    options = {**ONNX_CHECKERS[runtime], "threads": threads}
    outputs, ms = [], []
    with runtimes.get_backend(runtime).load(path, device="cpu", options=options) as runner:
        for frame in frames:
            start = time.perf_counter()
            outputs.append(np.asarray(runner(frame), dtype=np.float32))
            ms.append(round((time.perf_counter() - start) * 1e3, 2))
    result = measure(outputs, references)
    result["runtime"] = runtime
    # each call's wall time (the first includes the first-call set-up): the quantize stage's screen
    # of ONNX Runtime as a candidate runtime reads it (quantize.search.onnxruntime_candidate)
    result["ms_per_frame"] = ms
    return result


def require(result: dict, stage: str, min_psnr_db: float | None = None, what: str = "") -> None:
    """Fail the export naming the stage when its output drifted below the threshold."""
    min_psnr_db = FP32_MIN_PSNR_DB if min_psnr_db is None else min_psnr_db
    got = result["psnr_db"]["min"]
    if result["nonfinite"] or got < min_psnr_db:
        worst = f" on {result['worst']['frame']}" if "worst" in result else ""
        msg = (
            f"stage {stage!r}{what} drifted from PyTorch FP32: min PSNR {got} dB{worst} < {min_psnr_db} dB "
            f"(max abs err {result['max_abs_err']}, NaN/Inf {result['nonfinite']}); the artifact was not kept"
        )
        raise CheckFailed(msg)


def within_budget(result: dict, psnr_mean_db: float, psnr_min_db: float) -> bool:
    """Whether a fidelity result is finite and meets a mean/min PSNR budget."""
    psnr = result["psnr_db"]
    return not result["nonfinite"] and psnr["mean"] >= psnr_mean_db and psnr["min"] >= psnr_min_db


def other_resolutions(resolution: tuple[int, int], multiple: int) -> list[tuple[int, int]]:
    """Two further sizes, multiples of the model's size multiple, to prove a dynamic export."""
    h, w = resolution
    m = multiple
    small = (max(m, (h // 2) // m * m), max(m, (w * 2 // 3) // m * m))
    other = (max(m, (h * 3 // 4) // m * m + m), max(m, (w // 2) // m * m + 2 * m))
    return [small, other]


def verify_onnx_stage(ctx, path, stage: str, runtime: str = "onnxruntime") -> dict:
    """Verify an FP32 ONNX file at the export resolution and, if dynamic, at two more sizes."""
    result = verify_onnx(path, ctx.frames(), ctx.references(), threads=ctx.target.resolved_threads(), runtime=runtime)
    require(result, stage)
    if ctx.request.dynamic:
        result["other_resolutions"] = {}
        for res in other_resolutions(ctx.resolution, ctx.spec.size_multiple):
            extra = verify_onnx(path, ctx.frames(res), ctx.references(res), runtime=runtime)
            require(extra, stage, what=f" at {res[0]}x{res[1]}")
            result["other_resolutions"][f"{res[0]}x{res[1]}"] = extra["psnr_db"]
    return result
