"""FP32 PyTorch references, computed once and kept on disk by content (issue 17).

Every drift figure is measured against the FP32 PyTorch output of the same frames, and that
output is expensive (IAT eager: 10.7 s per 400x600 frame on a 2-core host; 1.0 s since it runs with
denormals flushed, lowlight_edge.denormals) and was computed anew
by the ONNX check, the quantize search, the eval check and the bench. ``references`` computes it
once per

- model name and a digest of the module's own parameters and buffers (the weights as loaded:
  folded, permuted, or a seeded random init all hash as what they are),
- the frames' digest (shape, dtype and bytes of every frame: the resolution is in there),
- the zoo's source code (the forward pass) and the torch version,

and stores it as ``<key>.npz`` under ``cache_dir()`` (``LOWLIGHT_EDGE_REF_CACHE``, else
``~/.cache/lowlight-edge/refs``), written atomically with a sha256 of its contents inside. An
entry that does not load, holds another count or shape of arrays, or whose digest does not match
is recomputed and rewritten, never trusted. A cache folder that cannot be written costs only the
recomputation next time (a warning, not an error). ``STATS`` counts hits, misses and corrupt
entries in this process.

The folder is bounded: after each store the least recently used entries (a hit refreshes an
entry's time) are removed until the entries fit ``LOWLIGHT_EDGE_REF_CACHE_MB`` (default
DEFAULT_MAX_MB); the entry just written is never removed. A bad value of the variable is a
UsageError, raised before anything is computed or written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import zipfile
from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.atomic import atomic_path
from lowlight_edge.datasets import frames_digest
from lowlight_edge.denormals import run_flushed
from lowlight_edge.errors import UsageError
from lowlight_edge.hashing import hash_dict

log = logging.getLogger(__name__)

CACHE_ENV = "LOWLIGHT_EDGE_REF_CACHE"
CACHE_VERSION = 1
STATS = {"hits": 0, "misses": 0, "corrupt": 0, "evicted": 0}
SIZE_ENV = "LOWLIGHT_EDGE_REF_CACHE_MB"
# A 400x600 RGB reference set of 8 frames is 23 MB, LLPackNet's 4 full frames 580 MB: a few builds' worth.
DEFAULT_MAX_MB = 2048


def cache_dir() -> Path:
    """Where references are kept: $LOWLIGHT_EDGE_REF_CACHE, else ~/.cache/lowlight-edge/refs."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "lowlight-edge" / "refs"


def max_bytes() -> int:
    """The folder's size bound in bytes: $LOWLIGHT_EDGE_REF_CACHE_MB megabytes, else DEFAULT_MAX_MB."""
    raw = os.environ.get(SIZE_ENV)
    if raw is None:
        return DEFAULT_MAX_MB * 2**20
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = float("nan")
    if not megabytes > 0 or megabytes == float("inf"):
        msg = f"{SIZE_ENV}={raw!r} is not a size; set it to a positive number of megabytes, e.g. {SIZE_ENV}={DEFAULT_MAX_MB}"
        raise UsageError(msg)
    return int(megabytes * 2**20)


def evict(folder: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used entries of ``folder`` until they fit ``limit`` bytes; never ``keep``.

    Returns the removed paths. An entry another process removed first is skipped; one that cannot
    be removed is logged and kept (the bound is then not met, which costs disk, never a result).
    """
    entries = []
    for path in folder.glob("*.npz"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((stat.st_mtime, path.name, stat.st_size, path))
    total = sum(size for _, _, size, _ in entries)
    removed: list[Path] = []
    for _, _, size, path in sorted(entries):
        if total <= limit:
            break
        if keep is not None and path == keep:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("cannot remove FP32 reference cache entry %s (%s)", path, err)
            continue
        total -= size
        removed.append(path)
    STATS["evicted"] += len(removed)
    return removed


def _touch(path: Path) -> None:
    """Mark an entry as used now (its mtime orders eviction); a read-only cache just keeps the old time."""
    try:
        os.utime(path)
    except OSError:
        pass


@lru_cache(maxsize=1)
def zoo_digest() -> str:
    """sha256 over the zoo's source files: a change to any model's forward pass is another reference."""
    root = Path(__file__).resolve().parent / "zoo"
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def module_digest(module: Any) -> str:
    """sha256 over a torch module's state (names, dtypes, shapes and bytes of parameters and buffers)."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _torch_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def reference_key(model: str, weights_digest: str, frames: list[np.ndarray]) -> str:
    """The cache key: contents only (model, weights, frames, zoo code, torch), never paths or times."""
    return hash_dict(
        {
            "version": CACHE_VERSION,
            "model": model,
            "weights": weights_digest,
            "frames": frames_digest(frames),
            "shapes": [list(np.shape(f)) for f in frames],
            "zoo": zoo_digest(),
            "torch": _torch_version(),
        },
        length=40,
    )


def _payload_digest(arrays: list[np.ndarray]) -> str:
    return frames_digest(arrays)


def _load(path: Path, count: int) -> list[np.ndarray] | None:
    """The entry's arrays, or None if it is missing; raises ValueError if it is there but not intact."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            refs = [np.array(data[f"ref_{i}"]) for i in range(count)]
            stored = str(data["digest"])
            extra = set(data.files) - {f"ref_{i}" for i in range(count)} - {"digest"}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        msg = f"unreadable ({err})"
        raise ValueError(msg) from err
    if extra or stored != _payload_digest(refs):
        msg = "contents do not match their digest"
        raise ValueError(msg)
    return refs


def _store(path: Path, refs: list[np.ndarray]) -> bool:
    """Write an entry atomically; False (with a warning) when the folder cannot take it."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, digest=np.array(_payload_digest(refs)), **{f"ref_{i}": r for i, r in enumerate(refs)})
    except OSError as err:
        log.warning("FP32 reference cache %s is not writable (%s); references will be recomputed next time", path.parent, err)
        return False
    return True


def torch_outputs(module: Any, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The module's FP32 outputs, one frame at a time (the computation the cache saves).

    Run with denormals flushed in every thread (lowlight_edge.denormals): IAT 6.7 -> 1.0 s per
    400x600 frame on an Intel host, bit-identical outputs.
    """
    import torch

    def compute() -> list[np.ndarray]:
        with torch.inference_mode():
            return [module(torch.from_numpy(np.ascontiguousarray(f))).numpy() for f in frames]

    return run_flushed(compute)


def references(
    model: str,
    module: Any,
    frames: list[np.ndarray],
    compute: Callable[[Any, list[np.ndarray]], list[np.ndarray]] = torch_outputs,
    folder: str | Path | None = None,
) -> tuple[list[np.ndarray], dict]:
    """(FP32 outputs of ``module`` on ``frames``, what happened): from the cache or computed and stored.

    The record says ``cache`` ("hit", "miss" or "corrupt"), the key, the frame count and the
    seconds taken; STATS counts the same.
    """
    folder = Path(folder) if folder is not None else cache_dir()
    limit = max_bytes()
    key = reference_key(model, module_digest(module), frames)
    path = folder / f"{key}.npz"
    start = time.monotonic()
    outcome = "miss"
    try:
        refs = _load(path, len(frames))
    except ValueError as err:
        log.warning("FP32 reference cache entry %s is %s; recomputing it", path, err)
        refs, outcome = None, "corrupt"
    if refs is not None and all(r.dtype == np.float32 for r in refs):
        STATS["hits"] += 1
        outcome = "hit"
        _touch(path)
    else:
        STATS["corrupt" if outcome == "corrupt" else "misses"] += 1
        refs = [np.asarray(r, dtype=np.float32) for r in compute(module, frames)]
        if _store(path, refs):
            evict(folder, limit, keep=path)
    record = {"cache": outcome, "key": key, "frames": len(frames), "seconds": round(time.monotonic() - start, 2)}
    return refs, record
