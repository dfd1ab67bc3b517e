"""Finding, downloading, verifying and safely loading checkpoints.

A registered checkpoint is looked up as ``$LOWLIGHT_EDGE_WEIGHTS/<file>``, then in the user cache
(``$XDG_CACHE_HOME`` or ``~/.cache``, ``lowlight-edge/weights/<file>``), and is downloaded into the
cache from its pinned upstream URL when absent. Its sha256 is always checked against the registry,
so a cache or folder can never feed the pipeline a different file under a known name.

Loading uses ``torch.load(weights_only=True)``: a pickle that would run code is refused. The only
globals allowed beyond tensors are the NumPy scalar/dtype types that the IAT student's training
checkpoint pickled with its metrics (best_psnr is a numpy.float64).
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lowlight_edge.atomic import atomic_path
from lowlight_edge.console import suggest
from lowlight_edge.errors import WeightsError
from lowlight_edge.hashing import sha256_file
from lowlight_edge.zoo._api import ModelSpec, Weights

log = logging.getLogger(__name__)

ENV_VAR = "LOWLIGHT_EDGE_WEIGHTS"
WRAPPER_KEYS = ("state_dict", "model")  # IAT student training checkpoint; LLPackNet inference.py


@dataclass(frozen=True)
class Resolved:
    """What get_model will load: a registered checkpoint, a user file, or nothing (random init)."""

    name: str  # registered weights name, "file" or "random"
    path: Path | None
    sha256: str | None
    license: str
    url: str
    entry: Weights | None  # the registry entry whose settings (e.g. input range) apply

    def info(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "license": self.license,
            "url": self.url,
        }


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lowlight-edge" / "weights"


def _urlopen(url: str, timeout: float = 60.0):
    """The one network call of the package (tests replace it to stay offline)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (fixed https URLs from the registry)


def download(weights: Weights, dest: Path) -> Path:
    """Fetch ``weights.url`` to a temporary name beside ``dest``, check sha256, then rename."""
    with atomic_path(dest) as tmp:
        log.info("downloading %s from %s", weights.file, weights.url)
        with _urlopen(weights.url) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
        _check_sha(tmp, weights, shown=dest)
    return dest


def _check_sha(path: Path, weights: Weights, shown: Path | None = None) -> str:
    actual = sha256_file(path)
    if actual != weights.sha256:
        msg = (
            f"{shown or path} does not match registered weights {weights.file!r}: sha256 {actual} "
            f"(expected {weights.sha256}); delete it and provide the original file"
            + (f" from {weights.url}" if weights.url else "")
        )
        raise WeightsError(msg)
    return actual


def _offline_message(weights: Weights, reason: str) -> str:
    where = f"download it from {weights.url} and " if weights.url else ""
    return (
        f"weights file {weights.file} not found ({reason}); {where}set {ENV_VAR} to a folder holding "
        f"{weights.file}, or pass --weights PATH"
    )


def locate(weights: Weights, fetch: bool = True) -> Path | None:
    """Path of a verified copy of a registered checkpoint; downloads it into the cache if allowed.

    Returns None only when ``fetch`` is False and no copy exists; raises WeightsError when the file
    cannot be had (no URL, offline) or a copy has the wrong sha256.
    """
    folder = os.environ.get(ENV_VAR)
    candidates = ([Path(folder) / weights.file] if folder else []) + [cache_dir() / weights.file]
    for path in candidates:
        if path.is_file():
            _check_sha(path, weights)
            return path
    if not fetch:
        return None
    if not weights.url:
        raise WeightsError(_offline_message(weights, "it has no public download"))
    try:
        return download(weights, cache_dir() / weights.file)
    except OSError as err:  # URLError, timeouts and disk errors are all OSErrors
        reason = " ".join(f"download failed: {err}".split())
        raise WeightsError(_offline_message(weights, reason)) from err


def resolve(spec: ModelSpec, weights: str | os.PathLike | None = "default") -> Resolved:
    """Turn the user's ``weights`` choice into a Resolved record (downloading if needed).

    ``weights`` is "default", a registered name of ``spec``, a file path, or None (random init).
    Only the implicit "default" of a model whose default file cannot be had falls back to random
    init (LLPackNet), with a warning; an explicit name or path that cannot be loaded is an error.
    """
    if weights is None:
        return Resolved("random", None, None, spec.license, "", None)
    choice = os.fspath(weights)
    if choice in ("default", *spec.weights):
        name = spec.default_weights if choice == "default" else choice
        if name is None:
            return Resolved("random", None, None, spec.license, "", None)
        entry = spec.weights[name]
        if choice == "default" and not entry.url:
            path = locate(entry, fetch=False)
            if path is None:
                msg = (
                    f"{spec.name}: default weights {entry.file} not found ({ENV_VAR} and {cache_dir()}); "
                    "using RANDOM weights: outputs are meaningless, fine for export and latency only"
                )
                log.warning(msg)
                warnings.warn(msg, stacklevel=3)
                return Resolved("random", None, None, spec.license, "", None)
        else:
            path = locate(entry)
        return Resolved(name, path, entry.sha256, entry.license, entry.url, entry)
    path = Path(choice).expanduser()
    if not path.is_file():

        names = ["default", *spec.weights]
        msg = (
            f"{spec.name}: weights {choice!r} is neither a file nor a registered name{suggest(choice, names)}; "
            f"pass one of {', '.join(names)} or the path of a checkpoint file"
        )
        raise WeightsError(msg)
    default = spec.weights.get(spec.default_weights or "")
    return Resolved("file", path.resolve(), sha256_file(path), "unknown (user file)", "", default)


@functools.cache
def _numpy_globals() -> list:
    """NumPy types a metrics entry of a training checkpoint may pickle (np.float64 and its dtype).

    The IAT student's checkpoint needs numpy._core.multiarray.scalar, numpy.dtype and, on NumPy 2,
    numpy.dtypes.Float64DType; the other dtype classes are allowed too (inert type objects), so a
    float32 metric would load as well.
    """
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # NumPy 2 renamed numpy.core to numpy._core
    found = [core.multiarray.scalar, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:  # NumPy >= 1.25 pickles dtypes through these classes
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint file, loaded without executing any pickled code.

    Unwraps ``{'state_dict': ...}`` (training checkpoints) and ``{'model': ...}`` (LLPackNet).
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:200]
        msg = (
            f"refusing to load {path}: it is not a plain weights file ({first}); loading it could run "
            "arbitrary code, so pass a checkpoint that contains only tensors"
        )
        raise WeightsError(msg) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        detail = " ".join(str(err).split())[:160]
        msg = f"cannot read checkpoint {path} ({type(err).__name__}: {detail}); the file is truncated or corrupt, download it again"
        raise WeightsError(msg) from err
    except Exception as err:  # noqa: BLE001 - an untrusted file may break the unpickler in any way (a text file: KeyError)
        msg = f"{path} is not a PyTorch checkpoint (torch.load: {type(err).__name__}); pass a .pth/.pt state-dict file"
        raise WeightsError(msg) from err
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        msg = f"{path} holds a {type(obj).__name__}, not a state dict of tensors; pass a PyTorch state-dict checkpoint"
        raise WeightsError(msg)
    broken = {k: int((~torch.isfinite(v)).sum()) for k, v in obj.items() if v.is_floating_point()}
    broken = {k: n for k, n in broken.items() if n}
    if broken:
        first = next(iter(broken))
        msg = (
            f"{path} holds {sum(broken.values())} NaN/Inf value(s) in {len(broken)} tensor(s) (e.g. {first}); "
            "the checkpoint is corrupt or diverged in training: use the original weights"
        )
        raise WeightsError(msg)
    return obj


def check_keys(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], model: str) -> None:
    """Raise WeightsError listing missing/unexpected/misshapen keys (first few names and counts)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)}!={expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k])
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            problems.append(
                f"{len(items)} {label}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}"
            )
    if problems:
        msg = f"not a {model} checkpoint ({'; '.join(problems)}); pass weights made for {model}"
        raise WeightsError(msg)
