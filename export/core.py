"""What a pipeline stage is, and how its outputs are reused.

A stage is a small callable: ``stage.key(ctx)`` lists everything its outputs depend on, and
``stage(ctx)`` does the work, writes its files atomically under the model's folder and returns
their records. The pipeline stores each stage's key and records in a stamp file; when the key
and the files' sha256 still match on a rerun, the stage is skipped (Olive's hashed pass cache).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from export.config import ExportRequest, parse_resolution
from export.manifest import source_digest
from lowlight_edge import refcache, zoo
from lowlight_edge.atomic import write_json
from lowlight_edge.datasets import SCENES, Frames, eval_frames, folder_digest, frames_digest
from lowlight_edge.errors import DataError, UsageError
from lowlight_edge.hashing import hash_dict, sha256_file
from lowlight_edge.memory import peak_rss_mb, reset_peak_rss
from lowlight_edge.scenes import RECIPE_VERSION

log = logging.getLogger(__name__)

# Pixels of eval frames a reduced precision is confirmed on (Context.wide_size): 48 frames at 400x600
WIDE_EVAL_PIXELS = 12_000_000


@dataclass
class FileRecord:
    """One file a stage produced, as the manifest lists it."""

    path: str  # relative to the model folder
    stage: str
    precision: str
    role: str  # e.g. "onnx", "simplified", "ir_fp32", "ir_int8", "qdq_onnx", "plan"
    sha256: str = ""
    bytes: int = 0
    fidelity: dict | None = None  # {"runtime", "images", "psnr_db": {mean, min}, "max_abs_err", ...}
    notes: list[str] = field(default_factory=list)

    def fill_digest(self, root: Path) -> FileRecord:
        file = root / self.path
        self.sha256 = sha256_file(file)
        self.bytes = file.stat().st_size
        return self


class Context:
    """Shared state of one pipeline run: the request, the model and its reference outputs.

    Everything expensive (the torch module, the eval frames, the FP32 reference outputs) is built
    on first use and then shared by every stage's verification.
    """

    def __init__(self, request: ExportRequest, target: Any) -> None:
        self.request = request
        self.target = target
        self.spec = zoo.get_spec(request.model)
        self.weights = zoo.weights_info(request.model, request.weights)
        self.resolution = request.resolution or self._target_resolution() or self.spec.default_resolution
        self.spec.check_resolution(*self.resolution)
        self.model_dir = Path(request.out) / target.name / request.model
        self.records: dict[str, FileRecord] = {}  # by role
        self.notes: list[str] = []
        self.stage_runs: dict[str, dict] = {}  # by stage name: seconds and peak RSS, or reused
        self.preflight_run: dict = {}  # seconds of the input checks before the first stage (export.pipeline.preflight)
        self.created: list[Path] = []  # folders this run created (removed again if it fails leaving them empty)
        self.reference_seconds = 0.0  # PyTorch references computed (not read from the cache) so far
        self._lock: int | None = None  # fd of model_dir, flocked while this run writes into it

    def _target_resolution(self) -> tuple[int, int] | None:
        table = getattr(self.target, "resolutions", None) or {}
        text = table.get(self.request.model) or (table.get("default") if self.spec.input_kind == "rgb" else None)
        if not text:
            return None
        return tuple(text) if isinstance(text, (tuple, list)) else parse_resolution(text)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.spec.channels, *self.resolution)

    @cached_property
    def module(self):
        return zoo.get_model(self.request.model, self.request.weights)

    def frames(self, resolution: tuple[int, int] | None = None, size: int | None = None) -> list[np.ndarray]:
        """Real eval images (RAW models: synthetic Bayer from them) at a resolution, as NCHW.

        ``size``: how many (default ``verify_images``); a larger set is the same seeded draw, longer.
        """
        resolution = resolution or self.resolution
        size = size or self.request.verify_images
        if (resolution, size) not in self._frames:

            frames = eval_frames(self.request.eval_folder, self.spec, resolution, size=size, seed=0)
            scenes = [i["scene"] for i in frames.info if i["scene"]]
            amps = ", amplification " + ", ".join(f"{s['amp']:g}" for s in scenes) if scenes and "amp" in scenes[0] else ""
            self.notes.append(
                f"eval frames at {resolution[0]}x{resolution[1]}: {', '.join(frames.labels)} "
                f"({len(scenes)} {SCENES} v{RECIPE_VERSION} light-source scenes{amps}; frames sha256 {frames_digest(frames)[:16]})"
            )
            self._frames[(resolution, size)] = frames
        return self._frames[(resolution, size)]

    def wide_size(self, resolution: tuple[int, int] | None = None) -> int:
        """How many eval frames a reduced precision (INT8, BF16 float layers) is judged on: as many as
        fit WIDE_EVAL_PIXELS (the whole shared eval set at 400x600), never fewer than ``verify_images``.
        Measured on 4 frames vs all 48: the student's FP32 IR in BF16 45.3/41.6 vs 41.2/32.0 dB; IAT
        INT8 42.5/41.3 vs 41.2/24.2 dB (8 frames under 38 dB, lamps or not)."""
        h, w = resolution or self.resolution
        return max(self.request.verify_images, int(WIDE_EVAL_PIXELS // (h * w)))

    def wide_eval(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(frames, FP32 references) of the wider eval set (``wide_size``) at the deployed size."""
        size = self.wide_size()
        return self.frames(size=size), self.references(size=size)

    def references(self, resolution: tuple[int, int] | None = None, size: int | None = None) -> list[np.ndarray]:
        """The FP32 PyTorch outputs for frames(resolution): the ground truth of every drift figure.

        Computed once per weights, frames, resolution and model and kept on disk by content
        (lowlight_edge.refcache); a ``Frames`` list carrying the frames' labels, so a fidelity
        check can name its worst frame. What it cost and whether the cache had it is in the notes.
        A non-finite reference is a DataError here, before any stage blames its own output for it.
        """
        resolution = resolution or self.resolution
        size = size or self.request.verify_images
        if (resolution, size) not in self._refs:
            frames = self.frames(resolution, size)
            refs, record = refcache.references(self.spec.name, self.module, frames)
            if record["cache"] != "hit":
                self.reference_seconds += float(record["seconds"])
            self.notes.append(
                f"FP32 PyTorch references at {resolution[0]}x{resolution[1]}: {record['frames']} frames, "
                f"cache {record['cache']} ({record['seconds']} s, key {record['key'][:16]})"
            )
            refs = Frames(refs, labels=getattr(frames, "labels", None))
            bad = sum(int(np.count_nonzero(~np.isfinite(r))) for r in refs)
            if bad:
                msg = (
                    f"the PyTorch FP32 output of {self.spec.name} ({self.weights.get('name')} weights) holds {bad} "
                    "NaN/Inf value(s) on the eval images: the weights are broken; use the original checkpoint"
                )
                raise DataError(msg)
            self._refs[(resolution, size)] = refs
        return self._refs[(resolution, size)]

    @cached_property
    def eval_digest(self) -> str:
        """Content digest of the eval folder: every stage verifies on these images, so it is in every key."""
        return folder_digest(self.request.eval_folder)

    def prepare_folder(self) -> None:
        """Before this run's first write: a writable, locked model folder with nothing stale in it.

        Creates model_dir (remembering what it created), takes an exclusive lock on it (a second
        export into the same folder is refused, not interleaved), removes the ``.tmp-*`` leftovers of
        a killed run, and removes manifest.json: from here on it would describe files being
        rewritten, so it exists again only when the run completes.
        """
        if self._lock is not None:
            return
        missing = [p for p in (self.model_dir, *self.model_dir.parents) if not p.exists()]
        ancestor = next(p for p in (self.model_dir, *self.model_dir.parents) if p.exists())
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            msg = f"cannot write into {ancestor} (not a writable folder); choose another --out"
            raise UsageError(msg)
        try:
            self.model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            msg = f"cannot create {self.model_dir}: {err.strerror}; choose another --out"
            raise UsageError(msg) from err
        self.created = sorted(missing, key=lambda p: len(p.parts), reverse=True)  # deepest first
        fd = os.open(self.model_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(fd)
            msg = f"another export is writing {self.model_dir}; wait for it to finish or use another --out"
            raise UsageError(msg) from err
        self._lock = fd
        for leftover in sorted(self.model_dir.rglob(".tmp-*"), key=lambda p: len(p.parts), reverse=True):
            log.info("removing %s, left by an interrupted run", leftover)
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink(missing_ok=True)
        (self.model_dir / "manifest.json").unlink(missing_ok=True)

    def release(self, failed: bool) -> None:
        """Unlock the folder; after a failure, remove the folders this run created if nothing is in them."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        if failed:
            for folder in self.created:  # deepest first: a model folder left empty, then its empty parents
                stamps = folder / ".stamps"
                if stamps.is_dir() and not any(stamps.iterdir()):
                    stamps.rmdir()
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()

    @cached_property
    def _frames(self) -> dict:
        return {}

    @cached_property
    def _refs(self) -> dict:
        return {}


class Stage:
    """Base of the pipeline stages. Subclasses set ``name`` and implement key() and run()."""

    name = "stage"

    def key(self, ctx: Context) -> dict:
        raise NotImplementedError

    def run(self, ctx: Context) -> list[FileRecord]:
        raise NotImplementedError

    def __call__(self, ctx: Context) -> list[FileRecord]:
        """Reuse the stamped outputs if the key matches and the files are intact, else run."""
        # contents, not paths: the eval images every stage verifies on, and this project's own code
        key = hash_dict({**self.key(ctx), "eval": ctx.eval_digest, "source": source_digest()})
        stamp = ctx.model_dir / ".stamps" / f"{self.name}.json"
        cached = _load_stamp(stamp, key, ctx.model_dir)
        if cached is not None:
            log.info("%s: reusing outputs (key %s)", self.name, key)
            records, run = cached
            ctx.stage_runs[self.name] = {"reused": True, **run}  # figures of the run that made them
            return records
        ctx.prepare_folder()
        reset = reset_peak_rss()
        start, refs_before = time.monotonic(), ctx.reference_seconds
        records = self.run(ctx)
        run = {
            "seconds": round(time.monotonic() - start, 1),
            # of those, computing PyTorch references the cache (refcache) did not hold: once per weights and frames
            "references_seconds": round(ctx.reference_seconds - refs_before, 1),
            "peak_rss_mb": round(peak_rss_mb()),
            "peak_rss_scope": "this stage" if reset else "the process so far",
        }
        ctx.stage_runs[self.name] = run
        log.info("%s: done in %.0f s, peak RSS %d MB", self.name, run["seconds"], run["peak_rss_mb"])
        write_json(stamp, {"key": key, "records": [asdict(r) for r in records], "run": run})
        return records


def _load_stamp(stamp: Path, key: str, root: Path) -> tuple[list[FileRecord], dict] | None:
    """(records, the run's time and peak RSS) if the stamp matches key and its files are intact."""
    if not stamp.is_file():
        return None
    try:
        data = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("key") != key:
        return None
    records = [FileRecord(**r) for r in data.get("records", [])]
    for record in records:
        file = root / record.path
        if not file.is_file() or file.stat().st_size != record.bytes or sha256_file(file) != record.sha256:
            return None
    return records, dict(data.get("run") or {})
