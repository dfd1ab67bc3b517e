"""Tiled inference: run a model on overlapping tiles of a frame and stitch the outputs.

Used by ``runtimes.enhance`` (static-shape artifacts on larger images) and by the bench's
memory-bounded targets (LLPackNet's 12 MP Bayer frame on a device that cannot hold its
full-frame activations). A tile sees zero padding where the full frame has neighbours, so its
output is wrong near its own borders; each tile keeps only the part nearer its centre than the
next tile's (seams at the middle of each overlap), which leaves >= overlap/2 px of context on
every inner edge.

Centre-keeping beats linear feathering because a tile's error decays fast with the distance
from its border: feathering still mixes in, at small weights, pixels right at the other tile's
border, so its error falls only about as 1/overlap. Measured on LLPackNet (synthetic weights,
eager torch, 2x2 tiles of 256x384 overlapping by exactly the overlap, i.e. a (512 - ov) x
(768 - ov) frame; worst of 6 eval frames), whole-frame PSNR of tiled vs full-frame output:

    overlap (px)         0      16     32     48     64     96     128    160    192
    centre (dB)        43.8   47.0   49.5   51.6   55.9   65.9   79.2   92.9   99 (cap)
    feather (dB)       43.8   47.3   49.0   50.4   53.3   58.8   61.2   60.7   63.9
    centre max |err|   0.15   0.12   0.088  0.076  0.043  0.014  0.0045 0.0015 0.0002

50 dB needs 48 px; the default is 128 px, where the worst pixel is about one 8-bit level off
(no visible seam in a PNG), for about ov/tile extra compute. LLPackNet's theoretical receptive
field is about +-376 px (19 3x3 convs at 1/16 scale, 7 at 1/8, plus the 16x16 packing); the
effective one is far smaller. On a 12 MP frame (OpenVINO FP32, 4 tiles of 1488x2192) the seams
cost nothing measurable: 92 dB, max |err| 0.002.

Tile offsets and sizes stay multiples of the model's size multiple (16 for LLPackNet's Bayer
packing, 12 for Zero-DCE++/SGZ, whose curve net runs on a 1/12 bilinear downsample), so every tile
packs, or downsamples, on the full frame's grid.

The RGB curve models, measured 2026-12-01 the same way (PyTorch FP32, the authors' checkpoints,
CPU; the 12 eval scenes fitted to a (2T - ov) frame, 2x2 tiles of T overlapping by exactly ov,
offsets multiples of the size multiple; worst scene, max |err| in 8-bit levels):

    overlap (px)                    0      6     12     48     96    120    144    192    240
    tinydce, T 192x288 (dB)       46.4   99     99
    zero_dce_pp, T 192x288 (dB)   36.5          37.0   39.4   47.6   52.3   56.3
    zero_dce_pp, T 288x432 (dB)                               49.2          56.9   61.2   63.7
      max |err| (levels)                                      11.5           3.7    1.5    1.5
      shift-invariant upsample    (the same net with align_corners=False: 59.6 at 144, 99 at 192)
    sgz, T 192x288 (dB)           39.9          41.1   45.8   57.6   59.0   60.8
    sgz, T 288x432 (dB)                                       56.0          57.2   59.0   60.8

TinyDCE (three 3x3 convs) is exact from 6 px. Zero-DCE++'s curve net sees 8 px at 1/12, so 192 px
covers its receptive field, but its curve map is upsampled with align_corners=True, whose scale
(h - 1)/(H - 1) depends on the input size: a tile reads the curve up to ~1 low-res px away from
where the full frame does, and some error remains at any overlap (Tiling.exact False). IAT and
the IAT student take their gamma and colour matrix from the whole image (18.7 and 22.3 dB with
96 px overlap): ModelSpec.whole_image_statistics, never tiled.

At full size, measured 2026-12-01 on the 24 1920x1080 eval photos (portrait, and transposed to
landscape) in 396x600 tiles, PyTorch FP32 tiled vs whole frame; worst / median PSNR in dB, worst
max |err| in 8-bit levels. Before: 32 px overlap on a 1 px grid (12 tiles); after: the registry's
192 px on the 12 px grid (27 tiles portrait, 25 landscape):

                              portrait before   after            landscape before   after
    zero_dce_pp               51.9/55.6, 11.2   61.6/66.5, 2.3   49.6/51.9, 19.3    59.7/66.6, 3.1
    sgz                       57.6/59.6,  6.3   62.5/66.5, 2.7   55.6/58.2, 11.4    60.1/65.5, 3.8
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowlight_edge.errors import ConfigError, UsageError
from lowlight_edge.targets import parse_resolution

# The measured facts per model (overlap, activation bytes per pixel) live in its registry entry
# (ModelSpec.tiling); the measurements are described above and in tile_for_memory.


@dataclass(frozen=True)
class Tile:
    """One tile: the input window [y, y + h) x [x, x + w) and the frame region it writes."""

    y: int
    x: int
    h: int
    w: int
    keep: tuple[int, int, int, int]  # (y_a, y_b, x_a, x_b) in frame coordinates


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with at least ~``overlap`` px overlap."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    starts = [(i * (length - tile) // (count - 1)) // align * align for i in range(count)]
    starts[-1] = length - tile
    return starts


def owned_ranges(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """The [a, b) range each tile writes: seams at the middle of each overlap."""
    bounds = [0] + [(starts[i + 1] + starts[i] + tile) // 2 for i in range(len(starts) - 1)] + [length]
    return [(bounds[i], bounds[i + 1]) for i in range(len(starts))]


def plan_tiles(
    height: int, width: int, tile_h: int, tile_w: int, overlap: int, multiple: int = 1
) -> list[Tile]:
    """Tiles covering a height x width frame, row by row, offsets multiples of ``multiple``.

    Adjacent tiles share at least ``overlap`` px when it is a multiple of ``multiple``; the tile
    must fit in the frame (``runtimes.enhance`` pads smaller images first).
    """
    if tile_h > height or tile_w > width:
        msg = f"tile {tile_h}x{tile_w} is larger than the {height}x{width} frame; use a tile no larger than the frame"
        raise UsageError(msg)
    split = [t for t, n in ((tile_h, height), (tile_w, width)) if t < n]  # sides cut into several tiles
    if min(tile_h, tile_w) < 1 or overlap < 0 or any(overlap >= t for t in split):
        msg = f"overlap must be between 0 and {min(tile_h, tile_w) - 1} px for {tile_h}x{tile_w} tiles, got {overlap}"
        raise UsageError(msg)
    if multiple > 1 and any(v % multiple for v in (height, width, tile_h, tile_w)):
        msg = (
            f"frame {height}x{width} and tile {tile_h}x{tile_w} must be multiples of {multiple} "
            f"(the model's size multiple); round them to multiples of {multiple}"
        )
        raise UsageError(msg)
    ys, xs = tile_starts(height, tile_h, overlap, multiple), tile_starts(width, tile_w, overlap, multiple)
    rows, cols = owned_ranges(ys, tile_h, height), owned_ranges(xs, tile_w, width)
    return [
        Tile(y0, x0, tile_h, tile_w, (ya, yb, xa, xb))
        for y0, (ya, yb) in zip(ys, rows)  # owned_ranges gives one range per start
        for x0, (xa, xb) in zip(xs, cols)
    ]


def run_tiled(
    runner: Callable[[np.ndarray], np.ndarray],
    frame: np.ndarray,
    tile: tuple[int, int],
    overlap: int,
    multiple: int = 16,
) -> np.ndarray:
    """Run ``runner`` on overlapping tiles of ``frame`` (NxCxHxW, H, W >= tile) and stitch the outputs.

    The output has the runner's channel count at the frame's H x W; the runner must return an
    output the size of its input (an image-to-image model).
    """
    n, _, height, width = frame.shape
    out: np.ndarray | None = None
    for t in plan_tiles(height, width, tile[0], tile[1], overlap, multiple):
        y = np.asarray(runner(np.ascontiguousarray(frame[:, :, t.y : t.y + t.h, t.x : t.x + t.w])))
        if y.shape[2:] != (t.h, t.w):
            msg = f"the artifact's output is {y.shape[2]}x{y.shape[3]} for a {t.h}x{t.w} input; tiling needs an output the size of its input"
            raise UsageError(msg)
        if out is None:
            out = np.empty((n, y.shape[1], height, width), dtype=np.float32)
        ya, yb, xa, xb = t.keep
        out[:, :, ya:yb, xa:xb] = y[:, :, ya - t.y : yb - t.y, xa - t.x : xb - t.x]
    assert out is not None  # a plan has at least one tile
    return out


def default_overlap(spec: Any) -> int:
    """The measured overlap for ``spec``'s model; UsageError when none was measured."""
    if spec.tiling is None:
        msg = (
            f"no measured tile overlap for model {spec.name!r}; measure one (lowlight_edge.metrics.psnr "
            "of tiled vs whole-frame output) and add it to its registry entry (ModelSpec.tiling), or run it untiled"
        )
        raise UsageError(msg)
    return spec.tiling.overlap


def tile_for_memory(
    spec: Any, height: int, width: int, max_memory_mb: float, overlap: int | None = None
) -> tuple[int, int]:
    """The tile (multiples of the model's size multiple) to run a frame in under ``max_memory_mb``.

    Estimate: activation memory = spec.tiling.activation_bytes_per_px x tile pixels. For LLPackNet, peak
    RSS (VmHWM) of a fresh process running the OpenVINO CPU FP32 IR (2 threads, LATENCY, f32)
    twice on one tile: 116 MB at 256x384, 165 MB at 768x1152, 324 MB at 1536x2304; the fit is
    111 MB + 63.2 B/px, and 64 B/px is used. Checked beyond the fit: 492 MB at 1488x4256
    (predicted 493) and 794 MB at the full 2848x4256 (predicted 842). The slope includes the
    tile's own input and output (16 B/px); the limit bounds that slope x pixels only: the fixed
    ~110 MB (runtime, weights) and the full-size frame and output buffers come on top. A bench
    row on a 12 MP frame peaks at 792 MB untiled, and at 741 / 528 / 418 MB with the tiles
    picked for 512 / 256 / 128 MB (2 / 4 / 8 tiles).

    Among the tiles that fit, the one with the least total computed pixels (tiles x tile area,
    the overlaps computed twice) wins, then fewer tiles, then the larger tile: the largest tile
    alone can be wasteful (at 512 MB a 1968x4256 tile needs 2 tiles, as 2848x2192 does with
    half the overlap work). A bigger limit never gives a smaller tile. The whole frame when it
    fits. The smallest tile accepted is 2 x overlap per side (half of each tile kept, ~4x the
    compute); a limit below it is a UsageError.
    """
    if spec.tiling is None or spec.tiling.activation_bytes_per_px is None:
        msg = f"no memory estimate for model {spec.name!r}; give a fixed tile (HxW) instead of a memory limit"
        raise UsageError(msg)
    if not max_memory_mb > 0:
        msg = f"max_memory_mb must be positive, got {max_memory_mb!r}"
        raise UsageError(msg)
    m = spec.size_multiple
    if height % m or width % m:
        msg = f"frame {height}x{width} must be a multiple of {m} for {spec.name}; crop it to multiples of {m}"
        raise UsageError(msg)
    budget_px = max_memory_mb * 2**20 / spec.tiling.activation_bytes_per_px
    if height * width <= budget_px:
        return height, width
    overlap = default_overlap(spec) if overlap is None else overlap
    side = max(m, -(-2 * overlap // m) * m)
    best: tuple[int, int] | None = None
    best_key: tuple[int, int, int] | None = None
    for th in range(min(side, height), height + 1, m):
        for tw in range(min(side, width), min(width, int(budget_px // th) // m * m) + 1, m):
            tiles = len(tile_starts(height, th, overlap, m)) * len(tile_starts(width, tw, overlap, m))
            key = (tiles * th * tw, tiles, -th * tw)
            if best_key is None or key < best_key:
                best, best_key = (th, tw), key
    if best is None:
        sh, sw = min(side, height), min(side, width)
        need = math.ceil(sh * sw * spec.tiling.activation_bytes_per_px / 2**20)
        msg = (
            f"max_memory_mb {max_memory_mb:g} is too small for {spec.name}: its smallest tile "
            f"({sh}x{sw}, twice the {overlap} px overlap) needs about {need} MB; raise max_memory_mb to at least {need}"
        )
        raise UsageError(msg)
    return best


def target_tiling(target: Any, spec: Any, resolution: tuple[int, int]) -> tuple[int, int, int] | None:
    """(tile_h, tile_w, overlap) when ``target`` runs ``spec``'s model tiled at ``resolution``.

    The ``tile`` option as given, or the tile ``runtimes.tiling.tile_for_memory`` picks for
    ``max_memory_mb``, with the model's measured overlap; None when neither option is set or
    the whole frame fits. A tile that does not suit the model is a ConfigError.
    """
    if "tile" not in target.options and "max_memory_mb" not in target.options:
        return None
    key = "tile" if "tile" in target.options else "max_memory_mb"
    if getattr(spec, "whole_image_statistics", False):
        msg = (
            f"target {target.name!r} option {key}: {spec.name} computes whole-image statistics, which no tiling "
            "reproduces; drop the option for this model or bench it at a size that fits whole"
        )
        raise ConfigError(msg)
    try:
        if key == "tile":
            tile = parse_resolution(target.options["tile"])
        else:
            tile = tile_for_memory(spec, *resolution, target.options["max_memory_mb"])
        if tile == resolution:
            return None
        overlap = default_overlap(spec)
        plan_tiles(*resolution, *tile, overlap, spec.size_multiple)  # refuses a tile that does not fit
    except UsageError as err:
        at = f"{resolution[0]}x{resolution[1]}"
        msg = f"target {target.name!r} option {key} for {spec.name} at {at}: {err}"
        raise ConfigError(msg) from err
    return (*tile, overlap)
