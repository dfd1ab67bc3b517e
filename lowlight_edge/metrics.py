"""Latency statistics and image fidelity (PSNR, SSIM, max abs error, NaN/Inf count).

Pure NumPy, so a worker measuring an ONNX Runtime or OpenVINO row does not pay for importing
torch. SSIM reproduces IQA_pytorch's ``SSIM(channels=3)`` (the metric the IAT papers report):
an 11x11 Gaussian window with sigma 1.5, "valid" filtering per channel, C1 = 0.01^2,
C2 = 0.03^2, the contrast-structure term clamped at 0, and the mean over C, H and W. The 2-D
window is separable (the outer product of the normalised 1-D window), so it is applied as two
1-D passes in float64.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PSNR_CAP_DB = 99.0  # reported for identical images (MSE == 0) and any PSNR above it


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """10*log10(data_range^2 / MSE) over the whole array, in float64.

    Capped at PSNR_CAP_DB (99 dB): identical arrays (MSE == 0) would give +inf, which JSON
    cannot carry and a mean cannot use; 99 dB means "agrees to about 1e-5 RMS or better".
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        msg = f"psnr needs equal shapes, got {a64.shape} and {b64.shape}"
        raise ValueError(msg)
    return _psnr_of_mse(float(np.mean((a64 - b64) ** 2)), data_range)


def gaussian_window_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is IQA_pytorch's fspecial_gauss(size, sigma)."""
    x = np.arange(size, dtype=np.float64) - (size // 2)
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of the last two axes of x (C, H, W) with window w."""
    k = w.shape[0]
    h, wd = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = sum(w[i] * x[..., i : i + h, :] for i in range(k))
    return sum(w[j] * rows[..., :, j : j + wd] for j in range(k))


def ssim(a: np.ndarray, b: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """SSIM of two images in [0, 1], shaped CxHxW or 1xCxHxW (IQA_pytorch SSIM(channels=3)).

    Images smaller than the window along H or W have no valid position: ValueError.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        msg = f"ssim needs equal shapes, got {x.shape} and {y.shape}"
        raise ValueError(msg)
    if x.ndim == 4:
        if x.shape[0] != 1:
            msg = f"ssim takes one image (CxHxW or 1xCxHxW), got a batch of {x.shape[0]}"
            raise ValueError(msg)
        x, y = x[0], y[0]
    if x.ndim != 3 or x.shape[-1] < window or x.shape[-2] < window:
        msg = f"ssim needs CxHxW with H, W >= {window}, got {x.shape}"
        raise ValueError(msg)
    c1, c2 = 0.01**2, 0.03**2
    w = gaussian_window_1d(window, sigma)
    mu_x, mu_y = _filter_valid(x, w), _filter_valid(y, w)
    mu_x2, mu_y2, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_x = _filter_valid(x * x, w) - mu_x2
    sigma_y = _filter_valid(y * y, w) - mu_y2
    sigma_xy = _filter_valid(x * y, w) - mu_xy
    cs = np.maximum((2.0 * sigma_xy + c2) / (sigma_x + sigma_y + c2), 0.0)
    ssim_map = (2.0 * mu_xy + c1) / (mu_x2 + mu_y2 + c1) * cs
    return float(ssim_map.mean())


def max_abs_err(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| over the elements where both are finite (NaN/Inf are counted separately)."""
    return frame_errors(a, b)[1]


ERROR_CHUNK = 1 << 18  # elements per pass of frame_errors: float64 chunks stay in cache


def frame_errors(out: np.ndarray, ref: np.ndarray) -> tuple[int, float, float]:
    """(NaN/Inf count of ``out``, max |out - ref| over the pairs where both are finite, the MSE of
    the pair clipped to [0, 1]) in one pass of float64 chunks.

    One pass rather than three float64 copies of the whole frame: a 12 MP RAW frame (LLPackNet)
    took 2.7 s to check this way, 0.2 s in chunks, and every stage checks every frame.
    """
    x_all, y_all = np.asarray(out).reshape(-1), np.asarray(ref).reshape(-1)
    if x_all.shape != y_all.shape:
        msg = f"frame_errors needs equal shapes, got {np.shape(out)} and {np.shape(ref)}"
        raise ValueError(msg)
    bad, worst, sse = 0, 0.0, 0.0
    for start in range(0, x_all.size, ERROR_CHUNK):
        x = x_all[start:start + ERROR_CHUNK].astype(np.float64)
        y = y_all[start:start + ERROR_CHUNK].astype(np.float64)
        diff = np.abs(x - y)
        top = diff.max()
        if not np.isfinite(top):  # a NaN/Inf on either side: only the finite pairs count
            bad += nonfinite_count(x)
            finite = np.isfinite(x) & np.isfinite(y)
            top = diff[finite].max() if finite.any() else 0.0
        worst = max(worst, float(top))
        np.clip(x, 0.0, 1.0, out=x)
        np.clip(y, 0.0, 1.0, out=y)
        np.subtract(x, y, out=x)
        sse += float(np.dot(x, x))
    return bad, worst, sse / max(x_all.size, 1)


def _psnr_of_mse(mse: float, data_range: float = 1.0) -> float:
    """10*log10(data_range^2 / mse), capped at PSNR_CAP_DB: identical arrays (MSE 0) give the cap
    (and so does a NaN MSE, which no comparison passes)."""
    if not mse > 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(data_range**2 / mse))


def nonfinite_count(a: np.ndarray) -> int:
    """Number of NaN and +-Inf elements."""
    return int(np.size(a) - np.count_nonzero(np.isfinite(a)))


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of per-call latencies in ms (linear-interpolated percentiles)."""
    values = np.asarray(list(samples_ms), dtype=np.float64)
    if values.size == 0:
        msg = "latency_stats needs at least one timed run"
        raise ValueError(msg)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def fps(stats: dict[str, float]) -> float:
    """Frames per second of one stream: 1000 / mean latency in ms."""
    return 1000.0 / stats["mean"] if stats["mean"] > 0 else float("inf")


def _as_images(batch: np.ndarray | Iterable[np.ndarray]) -> list[np.ndarray]:
    """An NxCxHxW stack or an iterable of CxHxW / 1xCxHxW arrays -> list of CxHxW arrays."""
    if isinstance(batch, np.ndarray):
        if batch.ndim == 4:
            return [batch[i] for i in range(batch.shape[0])]
        if batch.ndim == 3:
            return [batch]
        msg = f"expected NxCxHxW or CxHxW images, got shape {batch.shape}"
        raise ValueError(msg)
    images = []
    for item in batch:
        arr = np.asarray(item)
        images.extend(_as_images(arr))
    return images


def frame_psnr(out: np.ndarray, ref: np.ndarray) -> float:
    """The per-frame fidelity rule: PSNR of out vs ref, both clipped to [0, 1] (what gets saved as
    an image); 0 when out holds any NaN/Inf, so a broken frame can never pass a budget."""
    bad, _, mse = frame_errors(out, ref)
    return 0.0 if bad else _psnr_of_mse(mse)


def fidelity(
    outputs: np.ndarray | Iterable[np.ndarray],
    references: np.ndarray | Iterable[np.ndarray],
    with_ssim: bool = True,
    rounded: bool = False,
) -> dict[str, Any]:
    """Fidelity of a runtime's outputs against the FP32 PyTorch outputs of the same frames.

    The one fidelity function of the project (stage verification, the INT8 search, the bench).
    Returns images, psnr_db {mean, min} (frame_psnr per image), ssim (mean; None without
    with_ssim or for images under 11 px), max_abs_err over the raw finite elements, nonfinite
    (NaN/Inf count of the raw outputs) and psnr_per_image. ``rounded``: PSNR to 0.01 dB and
    max_abs_err to 3 significant digits, as the manifest and plans record them.
    """
    outs, refs = _as_images(outputs), _as_images(references)
    if len(outs) != len(refs) or not outs:
        msg = f"fidelity needs as many outputs as references (>= 1), got {len(outs)} and {len(refs)}"
        raise ValueError(msg)
    psnrs: list[float] = []
    ssims: list[float] = []
    worst = 0.0
    bad = 0
    for out, ref in zip(outs, refs):  # same length: checked above
        if out.shape != ref.shape:
            msg = f"output shape {out.shape} differs from reference shape {ref.shape}"
            raise ValueError(msg)
        count, top, mse = frame_errors(out, ref)
        bad += count
        worst = max(worst, top)
        psnrs.append(0.0 if count else _psnr_of_mse(mse))
        if with_ssim and not count and min(out.shape[-2:]) >= 11:
            ssims.append(ssim(np.clip(out.astype(np.float64), 0.0, 1.0), np.clip(ref.astype(np.float64), 0.0, 1.0)))
        elif with_ssim and count:
            ssims.append(0.0)
    result: dict[str, Any] = {
        "images": len(outs),
        "psnr_db": {"mean": float(np.mean(psnrs)), "min": float(np.min(psnrs))},
        "ssim": float(np.mean(ssims)) if ssims else None,
        "max_abs_err": worst,
        "nonfinite": bad,
        "psnr_per_image": psnrs,
    }
    if rounded:
        result["psnr_db"] = {k: round(v, 2) for k, v in result["psnr_db"].items()}
        result["max_abs_err"] = float(f"{worst:.3g}")
        result["psnr_per_image"] = [round(v, 2) for v in psnrs]
    return result


def mean_frame_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |b - a| of two consecutive frames (same shape), in float64."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        msg = f"frames must have equal shapes, got {a64.shape} and {b64.shape}"
        raise ValueError(msg)
    return float(np.mean(np.abs(b64 - a64)))


def block_means(image: np.ndarray, block: int) -> np.ndarray:
    """Means over ``block`` x ``block`` squares of the last two axes (HxW or ...xHxW; a ragged edge is dropped)."""
    if block <= 1:
        return image
    h, w = image.shape[-2] // block * block, image.shape[-1] // block * block
    if h == 0 or w == 0:
        return image.mean(axis=(-2, -1), keepdims=True)
    cut = image[..., :h, :w]
    return cut.reshape(*cut.shape[:-2], h // block, block, w // block, block).mean(axis=(-3, -1))


class FlickerMeter:
    """Temporal flicker of an enhanced static-camera clip, measured as frames stream by.

    ratio() = mean over consecutive pairs of |out[t+1] - out[t]| divided by the same for the
    input: 1.0 means the enhancement added no frame-to-frame change (flicker), 2.0 that it doubled
    it. Outputs are clipped to [0, 1] (what gets encoded). An input with no change at all gives
    1.0 when the output has none either, else inf; fewer than two frames give None.
    """

    def __init__(self, block: int = 1) -> None:
        self.block = block  # > 1: on block means (the low-frequency change a viewer sees as flicker)
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._in = 0.0
        self._out = 0.0
        self.pairs = 0

    def update(self, inp: np.ndarray, out: np.ndarray) -> None:
        inp = block_means(np.asarray(inp, dtype=np.float64), self.block)
        out = block_means(np.clip(np.asarray(out, dtype=np.float64), 0.0, 1.0), self.block)
        if self._prev is not None:
            self._in += mean_frame_change(self._prev[0], inp)
            self._out += mean_frame_change(self._prev[1], out)
            self.pairs += 1
        self._prev = (inp, out)

    def ratio(self) -> float | None:
        if self.pairs == 0:
            return None
        if self._in == 0.0:
            return 1.0 if self._out == 0.0 else math.inf
        return self._out / self._in


def flicker_ratio(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray]) -> float | None:
    """FlickerMeter over paired input and output frames (see there); None for fewer than two."""
    meter = FlickerMeter()
    missing = object()  # zip_longest: as zip(strict=True), which Python 3.8 (JetPack 5) lacks
    for inp, out in itertools.zip_longest(inputs, outputs, fillvalue=missing):
        if inp is missing or out is missing:
            msg = "flicker_ratio needs as many output frames as input frames"
            raise ValueError(msg)
        meter.update(inp, out)
    return meter.ratio()
