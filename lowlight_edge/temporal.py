"""Temporal smoothing of per-frame global parameters (IAT's gamma and colour matrix) for video.

IAT and its student predict one gamma and one 3x3 colour matrix per frame from the whole image,
so sensor noise in a dark frame moves the whole output from one frame to the next (flicker).
Their deployed graphs expose these parameters (zoo.GlobalParams); this module smooths them
exponentially over time and applies them to the local branch's output in numpy, exactly as the
graph does: y = clamp(M p, 1e-8, 1) ** gamma per pixel p. With alpha 0 the result is the graph's
own output. Nothing here imports a runtime; runtimes.enhance and the bench drive it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lowlight_edge.errors import UsageError
from lowlight_edge.metrics import FlickerMeter, psnr

COARSE_BLOCK = 8


def check_alpha(alpha: float) -> float:
    """The smoothing factor as a float in [0, 1), or UsageError."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value < 1.0:
        msg = f"--temporal-smoothing takes a factor A in [0, 1) (0: none, 0.9: strong), got {alpha!r}"
        raise UsageError(msg)
    return value


def apply_global(img_local: np.ndarray, color: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """clamp(M @ p, 1e-8, 1) ** gamma for every pixel: img_local (1,3,H,W), color (1,3,3), gamma (1,1)."""
    b, c, h, w = img_local.shape
    mixed = np.matmul(color.reshape(b, 3, 3).astype(np.float32), img_local.reshape(b, c, h * w).astype(np.float32))
    out = np.power(np.clip(mixed, 1e-8, 1.0), np.float32(gamma.reshape(b, 1, 1)))
    return out.reshape(b, c, h, w).astype(np.float32)


@dataclass
class ParamSmoother:
    """Exponential smoothing s_t = A s_(t-1) + (1 - A) p_t of gamma and the colour matrix; s_0 = p_0."""

    alpha: float
    _gamma: np.ndarray | None = field(default=None, repr=False)
    _color: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.alpha = check_alpha(self.alpha)

    def update(self, gamma: np.ndarray, color: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gamma = np.asarray(gamma, dtype=np.float64)
        color = np.asarray(color, dtype=np.float64)
        if self._gamma is None:
            self._gamma, self._color = gamma, color
        else:
            a = self.alpha
            self._gamma = a * self._gamma + (1.0 - a) * gamma
            self._color = a * self._color + (1.0 - a) * color
        return self._gamma.astype(np.float32), self._color.astype(np.float32)


@dataclass
class SmoothingReport:
    """What smoothing did to one clip: flicker with and without it, and its per-frame fidelity cost."""

    alpha: float
    raw: FlickerMeter = field(default_factory=FlickerMeter)
    smoothed: FlickerMeter = field(default_factory=FlickerMeter)
    # on 8x8 block means: the low-frequency change (global brightness/colour) that per-pixel
    # noise amplification by the local branch does not drown
    raw_coarse: FlickerMeter = field(default_factory=lambda: FlickerMeter(COARSE_BLOCK))
    smoothed_coarse: FlickerMeter = field(default_factory=lambda: FlickerMeter(COARSE_BLOCK))
    psnr_db: list[float] = field(default_factory=list)  # smoothed vs unsmoothed output, per frame
    size: tuple[int, int] | None = None  # H x W the model ran at (flicker is measured there)

    def update(self, inp: np.ndarray, raw_out: np.ndarray, smoothed_out: np.ndarray) -> None:
        """One frame: the model input, the graph's own output and the smoothed output (same layout, CxHxW or NCHW)."""
        self.size = tuple(np.shape(inp)[-2:])
        self.raw.update(inp, raw_out)
        self.smoothed.update(inp, smoothed_out)
        self.raw_coarse.update(inp, raw_out)
        self.smoothed_coarse.update(inp, smoothed_out)
        self.psnr_db.append(psnr(np.clip(smoothed_out, 0, 1), np.clip(raw_out, 0, 1)))

    def summary(self) -> dict:
        finite = [p for p in self.psnr_db if math.isfinite(p)]
        return {
            "alpha": self.alpha,
            "frames": len(self.psnr_db),
            "flicker_unsmoothed": _round(self.raw.ratio()),
            "flicker_smoothed": _round(self.smoothed.ratio()),
            "flicker_coarse_unsmoothed": _round(self.raw_coarse.ratio()),
            "flicker_coarse_smoothed": _round(self.smoothed_coarse.ratio()),
            # the fidelity cost: how far each smoothed frame is from the frame's own parameters
            "psnr_vs_unsmoothed_db": {
                "mean": round(float(np.mean(finite)), 2) if finite else None,
                "min": round(float(min(finite)), 2) if finite else None,
            },
        }

    def line(self) -> str:
        s = self.summary()
        cost = s["psnr_vs_unsmoothed_db"]
        at = f" at the model's {self.size[0]}x{self.size[1]}" if self.size else ""
        return (
            f"temporal smoothing {self.alpha}{at}: flicker ratio {s['flicker_unsmoothed']} without -> {s['flicker_smoothed']} with "
            f"(on {COARSE_BLOCK}x{COARSE_BLOCK} block means {s['flicker_coarse_unsmoothed']} -> {s['flicker_coarse_smoothed']}); "
            f"cost: PSNR vs the unsmoothed frames mean {cost['mean']} dB, min {cost['min']} dB"
        )


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


def split_outputs(outputs: dict[str, np.ndarray], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(img_local, gamma, color) from a runner's named outputs; UsageError if the artifact lacks them."""
    missing = [n for n in names if n not in outputs]
    if missing:
        msg = (
            f"the artifact does not expose {', '.join(missing)} (it has {', '.join(outputs) or 'no named outputs'}); "
            "re-export it with this version (python -m export) to smooth over time"
        )
        raise UsageError(msg)
    img_local, gamma, color = (outputs[n] for n in names[:3])
    return img_local, gamma, color


class SmoothedModel:
    """A runner's image with its global parameters smoothed over the frames it is called on.

    ``runner.outputs(x)`` must return the image ("output") and the parameters named by
    ``names`` (img_local, gamma, color). One instance per clip: its state is the clip's history.
    ``report`` holds flicker with and without smoothing and the per-frame cost.
    """

    def __init__(self, runner, alpha: float, names: tuple[str, ...]) -> None:
        self.runner = runner
        self.names = names
        self.smoother = ParamSmoother(alpha)
        self.report = SmoothingReport(self.smoother.alpha)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outputs = self.runner.outputs(x)
        img_local, gamma, color = split_outputs(outputs, self.names)
        gamma_s, color_s = self.smoother.update(gamma, color)
        smoothed = apply_global(img_local, color_s, gamma_s)
        self.report.update(x, outputs["output"], smoothed)
        return smoothed
