"""runtimes.tiling: the seam check on the real LLPackNet, tile plans, and the memory-bounded tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lowlight_edge import zoo
from lowlight_edge.datasets import eval_frames
from lowlight_edge.errors import UsageError
from lowlight_edge.metrics import psnr
from runtimes.tiling import (
    plan_tiles,
    run_tiled,
    tile_for_memory,
)

FRAME, TILE = (384, 576), (192, 288)  # small, but the default 128 px overlap still fits in a tile
FULL = (2848, 4256)


@pytest.fixture(scope="module")
def llpacknet(eval_dir: Path):
    """(run, frame, full-frame output) for the shipped LLPackNet on one synthetic RAW eval frame."""
    spec = zoo.get_spec("llpacknet")
    net = zoo.get_model("llpacknet")
    frame = eval_frames(eval_dir, spec, FRAME, size=1)[0]

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    return run, frame, run(frame)


def test_tiled_llpacknet_matches_the_full_frame_with_the_default_overlap(llpacknet) -> None:
    run, frame, full = llpacknet
    tiled = run_tiled(run, frame, TILE, zoo.get_spec("llpacknet").tiling.overlap)
    assert tiled.shape == full.shape == (1, 3, *FRAME)
    good = psnr(tiled, full)
    assert good >= 50.0
    bare = psnr(run_tiled(run, frame, TILE, 0), full)  # no context across the seams
    assert bare < good - 10.0


def test_plan_covers_the_frame_once_on_the_16_px_grid() -> None:
    spec = zoo.get_spec("llpacknet")
    cases = [(*FRAME, *TILE, 128), (*FULL, *tile_for_memory(spec, *FULL, 64), 128), (*FULL, 1024, 1536, 96)]
    for height, width, th, tw, overlap in cases:
        tiles = plan_tiles(height, width, th, tw, overlap, 16)
        owner = np.zeros((height, width), dtype=np.uint8)
        for t in tiles:
            assert all(v % 16 == 0 for v in (t.y, t.x, t.h, t.w))
            assert (t.h, t.w) == (th, tw) and t.y + t.h <= height and t.x + t.w <= width
            ya, yb, xa, xb = t.keep
            assert t.y <= ya < yb <= t.y + t.h and t.x <= xa < xb <= t.x + t.w
            owner[ya:yb, xa:xb] += 1
        assert (owner == 1).all()
        for starts, size in ((sorted({t.y for t in tiles}), th), (sorted({t.x for t in tiles}), tw)):
            assert all(a + size - b >= overlap for a, b in zip(starts, starts[1:], strict=False))
    x = np.random.default_rng(0).random((1, 1, 64, 96), dtype=np.float32)
    np.testing.assert_array_equal(
        run_tiled(lambda t: np.repeat(t, 3, axis=1), x, (32, 48), 16), np.repeat(x, 3, 1)
    )


def test_plan_refuses_tiles_off_the_grid_or_larger_than_the_frame() -> None:
    with pytest.raises(UsageError, match="must be multiples of 16"):
        plan_tiles(384, 576, 200, 288, 64, 16)
    with pytest.raises(UsageError, match="larger than the 384x576 frame"):
        plan_tiles(384, 576, 400, 288, 64, 16)
    with pytest.raises(UsageError, match="overlap must be between 0 and 191"):
        plan_tiles(384, 576, 192, 288, 192, 16)


def test_tile_for_memory_grows_with_the_limit_and_refuses_too_little() -> None:
    spec = zoo.get_spec("llpacknet")
    per_px = zoo.get_spec("llpacknet").tiling.activation_bytes_per_px
    areas = []
    for limit in (4, 8, 16, 32, 64, 128, 256, 512, 768):
        th, tw = tile_for_memory(spec, *FULL, limit)
        assert th % 16 == 0 and tw % 16 == 0 and th <= FULL[0] and tw <= FULL[1]
        assert th * tw * per_px <= limit * 2**20
        areas.append(th * tw)
    assert areas == sorted(areas) and areas[0] < areas[-1]
    assert tile_for_memory(spec, *FULL, 4096) == FULL  # the whole frame fits: no tiling
    with pytest.raises(UsageError, match="too small for llpacknet.*raise max_memory_mb to at least 4"):
        tile_for_memory(spec, *FULL, 3)
    with pytest.raises(UsageError, match="no memory estimate for model 'tinydce'"):
        tile_for_memory(zoo.get_spec("tinydce"), 400, 600, 64)


def test_bench_worker_runs_each_frame_tiled(llpacknet, tmp_path: Path) -> None:
    """The worker's tiled row: whole frames in and out, fidelity = the seam check, tiling recorded."""
    from bench.worker import run_worker

    _, frame, full = llpacknet
    np.save(tmp_path / "frames.npy", frame)
    np.save(tmp_path / "refs.npy", full)
    spec = {
        "backend": "torch",
        "artifact": "llpacknet",
        "device": "cpu",
        "options": {"threads": 2},
        "warmup": 0,
        "iterations": 1,
        "frames": str(tmp_path / "frames.npy"),
        "reference": str(tmp_path / "refs.npy"),
        "tile": [*TILE, zoo.get_spec("llpacknet").tiling.overlap, 16],
        "save_outputs": str(tmp_path / "out.npy"),
    }
    row = run_worker(spec)
    assert row["tiled"] == {"tile": "192x288", "overlap": 128, "tiles": 12}
    assert row["input_shape"] == [1, *FRAME] and row["output_shape"] == [3, *FRAME]
    assert row["psnr_db"]["min"] >= 50.0
    assert row["psnr_db"]["min"] == pytest.approx(psnr(np.load(tmp_path / "out.npy"), full), abs=0.01)
