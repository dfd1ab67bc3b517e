"""Thumbnails of a row's first eval frame for results.html: input, output, |difference to FP32 PyTorch|.

Numpy and zlib only: the worker (which also runs on a remote device with nothing but numpy and its
runtime) shrinks the output and the difference in its own process, so a 12 MP LLPackNet output is
never held by the harness, which keeps only the small 8-bit PNGs made here.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.atomic import atomic_path

THUMB_SIDE = 320  # longest side of every thumbnail, in pixels
RAW_GAMMA = 2.2  # a RAW preview is linear light: shown with this display gamma


def shrink(image: np.ndarray, max_side: int = THUMB_SIDE, how: str = "mean") -> np.ndarray:
    """C x H x W -> C x h x w with max(h, w) <= max_side, by whole blocks (edges cut to a block multiple).

    ``how="max"`` keeps each block's largest value: a difference image shrunk by its mean would
    hide the few bad pixels it is looked at for.
    """
    c, h, w = image.shape
    f = max(1, -(-max(h, w) // int(max_side)))
    hh, ww = max(f, (h // f) * f), max(f, (w // f) * f)
    image = image[:, :hh, :ww]
    if image.shape[1] < hh or image.shape[2] < ww:  # a side shorter than one block: pad by repeating the edge
        image = np.pad(image, ((0, 0), (0, hh - image.shape[1]), (0, ww - image.shape[2])), mode="edge")
    blocks = image.reshape(c, hh // f, f, ww // f, f)
    out = blocks.max(axis=(2, 4)) if how == "max" else blocks.mean(axis=(2, 4), dtype=np.float32)
    return np.ascontiguousarray(out, dtype=np.float32)


def write_preview_npz(path: str | Path, output: np.ndarray, reference: np.ndarray | None, max_side: int = THUMB_SIDE) -> None:
    """One row's first output (clipped to [0, 1]) and |output - reference| (NaN/Inf counted as 1), shrunk, atomically."""
    arrays = {"output": shrink(np.clip(np.nan_to_num(output, nan=0.0), 0.0, 1.0), max_side)}
    if reference is not None:
        diff = np.abs(output - reference)
        arrays["diff"] = shrink(np.where(np.isfinite(diff), diff, 1.0).astype(np.float32), max_side, "max")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def png_bytes(image: np.ndarray) -> bytes:
    """H x W x 3 (or H x W grey) uint8 -> the bytes of an 8-bit PNG file (zlib only, no Pillow)."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = img.shape[:2]
    colour = 2 if img.ndim == 3 else 0
    lines = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, -1)], axis=1)  # filter byte 0 per line

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(lines.tobytes(), 9)) + chunk(b"IEND", b"")


def to_8bit(chw: np.ndarray) -> np.ndarray:
    """C x H x W float in [0, 1] -> H x W x C (or H x W for one channel) uint8."""
    out = np.clip(chw * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out[0] if out.shape[0] == 1 else out.transpose(1, 2, 0)


def input_thumbnail(frame: np.ndarray, raw: bool) -> tuple[bytes, str]:
    """(PNG, caption) of a model input frame (C x H x W or 1 x C x H x W).

    A RAW frame is one RGGB Bayer plane: shown demosaic-free as the half-size RGB of each 2x2 cell
    (R, mean of the two G, B), with a display gamma, since the plane is linear light.
    """
    frame = frame[0] if frame.ndim == 4 else frame
    if raw:
        plane = frame[0]
        h, w = (plane.shape[0] // 2) * 2, (plane.shape[1] // 2) * 2
        plane = plane[:h, :w]
        rgb = np.stack([plane[0::2, 0::2], (plane[0::2, 1::2] + plane[1::2, 0::2]) / 2, plane[1::2, 1::2]])
        image = np.clip(shrink(rgb.astype(np.float32)), 0.0, 1.0) ** (1 / RAW_GAMMA)
        return png_bytes(to_8bit(image)), f"input: RAW RGGB as half-size RGB (no demosaic, gamma {RAW_GAMMA:g})"
    return png_bytes(to_8bit(np.clip(shrink(frame.astype(np.float32)), 0.0, 1.0))), "input"


def diff_scale(diff: np.ndarray) -> float:
    """The largest 1-2-5 step (1, 2, 5, 10, 20 ...) that keeps the 99th percentile of a |difference| <= 1.

    Per row, because FP32 and INT8 drift differ by orders of magnitude; the caption says which.
    """
    level = float(np.percentile(diff, 99)) if diff.size else 0.0
    level = level or float(diff.max(initial=0.0))
    if level <= 0 or not math.isfinite(level):
        return 1.0
    if level >= 1:
        return 1.0
    decade = 10.0 ** math.floor(math.log10(1.0 / level))
    step = max(m for m in (1, 2, 5, 10) if level * decade * m <= 1.0)
    return float(min(decade * step, 1e9))


@dataclass(frozen=True)
class RowPreview:
    """The three thumbnails of one row's first eval frame, as PNG bytes, and how the difference was scaled."""

    input_png: bytes
    input_caption: str
    output_png: bytes
    diff_png: bytes | None  # None: the row had no reference to compare with
    diff_scale: float | None
    diff_max: float | None
    size: tuple[int, int]  # thumbnail height, width

    def summary(self) -> dict[str, Any]:
        """What results.json says about the images (they are in results.html only)."""
        return {
            "frame": 0,
            "thumbnail": f"{self.size[0]}x{self.size[1]}",
            "diff_scale": self.diff_scale,
            "diff_max": self.diff_max,
            "in": "results.html",
        }


def load_row_preview(path: str | Path, input_png: bytes, input_caption: str) -> RowPreview:
    """The worker's preview .npz turned into 8-bit PNGs (the .npz is the caller's to delete)."""
    with np.load(path, allow_pickle=False) as data:
        output = data["output"]
        diff = data["diff"].max(axis=0, keepdims=True) if "diff" in data else None
    scale = diff_scale(diff) if diff is not None else None
    return RowPreview(
        input_png=input_png,
        input_caption=input_caption,
        output_png=png_bytes(to_8bit(output)),
        diff_png=png_bytes(to_8bit(np.clip(diff * scale, 0.0, 1.0))) if diff is not None else None,
        diff_scale=scale,
        diff_max=float(diff.max()) if diff is not None else None,
        size=(int(output.shape[1]), int(output.shape[2])),
    )
