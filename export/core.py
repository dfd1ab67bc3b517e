"""What a pipeline stage is, and how its outputs are reused.

A stage is a small callable: ``stage.key(ctx)`` lists everything its outputs depend on, and
``stage(ctx)`` does the work, writes its files atomically under the model's folder and returns
their records. The pipeline stores each stage's key and records in a stamp file; when the key
and the files' sha256 still match on a rerun, the stage is skipped (Olive's hashed pass cache).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from export.config import ExportRequest, parse_resolution
from lowlight_edge import zoo
from lowlight_edge.atomic import write_json
from lowlight_edge.datasets import eval_frames
from lowlight_edge.hashing import hash_dict, sha256_file
from lowlight_edge.memory import peak_rss_mb, reset_peak_rss

log = logging.getLogger(__name__)


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

    def frames(self, resolution: tuple[int, int] | None = None) -> list[np.ndarray]:
        """Real eval images (RAW models: synthetic Bayer from them) at a resolution, as NCHW."""
        resolution = resolution or self.resolution
        if resolution not in self._frames:

            self._frames[resolution] = eval_frames(
                self.request.eval_folder, self.spec, resolution, size=self.request.verify_images, seed=0
            )
        return self._frames[resolution]

    def references(self, resolution: tuple[int, int] | None = None) -> list[np.ndarray]:
        """The FP32 PyTorch outputs for frames(resolution): the ground truth of every drift figure."""
        import torch

        resolution = resolution or self.resolution
        if resolution not in self._refs:
            with torch.inference_mode():
                self._refs[resolution] = [self.module(torch.from_numpy(f)).numpy() for f in self.frames(resolution)]
        return self._refs[resolution]

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
        key = hash_dict(self.key(ctx))
        stamp = ctx.model_dir / ".stamps" / f"{self.name}.json"
        cached = _load_stamp(stamp, key, ctx.model_dir)
        if cached is not None:
            log.info("%s: reusing outputs (key %s)", self.name, key)
            records, run = cached
            ctx.stage_runs[self.name] = {"reused": True, **run}  # figures of the run that made them
            return records
        reset = reset_peak_rss()
        start = time.monotonic()
        records = self.run(ctx)
        run = {
            "seconds": round(time.monotonic() - start, 1),
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
