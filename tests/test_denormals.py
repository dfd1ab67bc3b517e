"""run_flushed: denormals flushed on the work's thread and its OpenMP workers, the caller's threads untouched."""

from __future__ import annotations

import pytest
import torch

from lowlight_edge.denormals import run_flushed

# float32 subnormals made from their bit pattern (no float arithmetic, which FTZ would already flush);
# large enough that PyTorch splits a product of them over its threads
SUBNORMALS = torch.full((1 << 22,), 1000, dtype=torch.int32).view(torch.float32)


def subnormals_left() -> int:
    """How many products of subnormals stay nonzero: zero only when every thread that took part flushes."""
    return int(torch.count_nonzero(SUBNORMALS * 3.0))


def test_work_runs_flushed_on_every_thread_and_the_caller_keeps_its_own():
    if not _can_flush():
        pytest.skip("this CPU has no FTZ/DAZ")
    torch.set_num_threads(2)
    assert subnormals_left() > 0  # the caller does not flush
    left, threads = run_flushed(lambda: (subnormals_left(), torch.get_num_threads()))
    assert left == 0
    assert threads == 2  # the caller's thread count, not OpenMP's default
    assert subnormals_left() > 0  # still not flushed here afterwards


def test_result_and_exception_come_back():
    assert run_flushed(lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        run_flushed(lambda: 1 / 0)


def _can_flush() -> bool:
    return run_flushed(lambda: torch.set_flush_denormal(True))
