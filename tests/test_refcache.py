"""lowlight_edge/refcache.py: FP32 references computed once per weights, frames and model, kept by content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.config import ExportRequest
from export.core import Context
from lowlight_edge import refcache, zoo
from lowlight_edge.datasets import eval_frames
from lowlight_edge.targets import get_target

RES = (48, 72)


@pytest.fixture(scope="module")
def frames(eval_dir):
    return eval_frames(eval_dir, zoo.get_spec("tinydce"), RES, size=2)


def direct(module, frames):
    with torch.inference_mode():
        return [module(torch.from_numpy(f)).numpy() for f in frames]


def test_computed_once_then_read_back_identical(tmp_path, frames) -> None:
    module = zoo.get_model("tinydce")
    calls = []

    def compute(m, f):
        calls.append(len(f))
        return refcache.torch_outputs(m, f)

    before = dict(refcache.STATS)
    first, rec1 = refcache.references("tinydce", module, frames, compute=compute, folder=tmp_path)
    second, rec2 = refcache.references("tinydce", module, frames, compute=compute, folder=tmp_path)
    assert calls == [2] and rec1["cache"] == "miss" and rec2["cache"] == "hit" and rec1["key"] == rec2["key"]
    assert refcache.STATS["hits"] == before["hits"] + 1 and refcache.STATS["misses"] == before["misses"] + 1
    for a, b, c in zip(first, second, direct(module, frames), strict=True):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]  # one entry, no temporary left


def test_key_holds_weights_frames_and_model(tmp_path, frames) -> None:
    module = zoo.get_model("tinydce")
    key = refcache.reference_key("tinydce", refcache.module_digest(module), frames)
    other = zoo.get_model("tinydce")
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)  # the same file name, other weights
    assert refcache.module_digest(other) != refcache.module_digest(module)
    assert refcache.reference_key("tinydce", refcache.module_digest(other), frames) != key
    assert refcache.reference_key("tinydce", refcache.module_digest(module), frames[:1]) != key
    shifted = [f.copy() for f in frames]
    shifted[1][0, 0, 0, 0] += 1 / 255
    assert refcache.reference_key("tinydce", refcache.module_digest(module), shifted) != key
    assert refcache.reference_key("zero_dce_pp", refcache.module_digest(module), frames) != key
    refs, rec = refcache.references("tinydce", other, frames, folder=tmp_path)
    np.testing.assert_array_equal(refs[0], direct(other, frames)[0])  # never the first module's outputs


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_entry_is_recomputed_never_trusted(tmp_path, frames, damage) -> None:
    module = zoo.get_model("tinydce")
    good, _ = refcache.references("tinydce", module, frames, folder=tmp_path)
    entry = next(tmp_path.iterdir())
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "garbage":
        entry.write_bytes(b"not an npz")
    else:  # a flipped bit inside an array: the file still loads, its digest does not match
        with np.load(entry) as npz:
            stored = {k: np.array(npz[k]) for k in npz.files}
        stored["ref_1"][0, 0, 0, 0] += 0.5
        with open(entry, "wb") as handle:
            np.savez(handle, **stored)
    refs, rec = refcache.references("tinydce", module, frames, folder=tmp_path)
    assert rec["cache"] == "corrupt"
    for a, b in zip(refs, good, strict=True):
        np.testing.assert_array_equal(a, b)
    assert refcache.references("tinydce", module, frames, folder=tmp_path)[1]["cache"] == "hit"  # rewritten


def test_unwritable_cache_still_answers(tmp_path, frames) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    module = zoo.get_model("tinydce")
    refs, rec = refcache.references("tinydce", module, frames, folder=blocker / "refs")
    assert rec["cache"] == "miss" and len(refs) == 2


def test_env_override_and_the_pipeline_context_use_it(tmp_path, monkeypatch, eval_dir) -> None:
    monkeypatch.setenv(refcache.CACHE_ENV, str(tmp_path / "refs"))
    assert refcache.cache_dir() == tmp_path / "refs"
    request = ExportRequest(model="tinydce", resolution=RES, out=tmp_path / "out", verify_images=2, eval_dir=eval_dir)
    ctx = Context(request, get_target("x86-cpu"))
    refs = ctx.references()
    assert len(list((tmp_path / "refs").iterdir())) == 1
    assert refs.labels == ctx.frames().labels and refs.labels[1].endswith("+night_lights")
    assert "cache miss" in ctx.notes[-1]
    again = Context(request, get_target("x86-cpu"))
    for a, b in zip(again.references(), refs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert "cache hit" in again.notes[-1]


def test_the_folder_is_bounded_least_recently_used_first(tmp_path, frames, monkeypatch) -> None:
    import os

    module = zoo.get_model("tinydce")
    sets = [[f + np.float32(i / 255) for f in frames] for i in range(3)]
    paths = []
    for i, frame_set in enumerate(sets):
        _, rec = refcache.references("tinydce", module, frame_set, folder=tmp_path)
        paths.append(tmp_path / f"{rec['key']}.npz")
        os.utime(paths[-1], (1_000_000 + i, 1_000_000 + i))  # distinct ages: set 0 oldest
    entry = paths[0].stat().st_size
    _, rec = refcache.references("tinydce", module, sets[0], folder=tmp_path)  # a hit makes set 0 the newest
    assert rec["cache"] == "hit" and paths[0].stat().st_mtime > paths[2].stat().st_mtime
    monkeypatch.setenv(refcache.SIZE_ENV, str(2.5 * entry / 2**20))  # room for two entries
    fourth = [f + np.float32(9 / 255) for f in frames]
    _, rec = refcache.references("tinydce", module, fourth, folder=tmp_path)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {paths[0].name, f"{rec['key']}.npz"}  # sets 1 and 2 (least recently used) went, the new entry stayed
    monkeypatch.setenv(refcache.SIZE_ENV, str(0.1 * entry / 2**20))  # smaller than one entry: the new one still stays
    _, rec = refcache.references("tinydce", module, sets[1], folder=tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {f"{rec['key']}.npz"}


@pytest.mark.parametrize("value", ["0", "-5", "lots", "nan", "inf"])
def test_a_bad_size_bound_is_refused_before_anything_is_computed(tmp_path, frames, monkeypatch, value) -> None:
    from lowlight_edge.errors import UsageError

    monkeypatch.setenv(refcache.SIZE_ENV, value)
    calls = []
    with pytest.raises(UsageError, match=refcache.SIZE_ENV):
        refcache.references("tinydce", zoo.get_model("tinydce"), frames, compute=lambda m, f: calls.append(1), folder=tmp_path)
    assert not calls and not list(tmp_path.iterdir())
