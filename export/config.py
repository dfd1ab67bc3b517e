"""The typed, validated request behind `python -m export`.

Validation happens once, here, against the model's input contract, so the stages can trust
their inputs and a bad option fails before any work starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lowlight_edge.errors import UsageError

STAGES = ("onnx", "simplify", "quantize", "engine")
DEFAULT_OPSET = 20  # what torch 2.13's dynamo exporter emits natively


def parse_resolution(text: str) -> tuple[int, int]:
    """'400x600' -> (400, 600); anything else is a UsageError naming the expected form."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        msg = f"resolution {text!r} is not of the form HxW, e.g. 400x600"
        raise UsageError(msg)
    return int(parts[0]), int(parts[1])


def default_data_dir() -> Path:
    """$LOWLIGHT_EDGE_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("LOWLIGHT_EDGE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class ExportRequest:
    model: str
    weights: str | None = "default"
    resolution: tuple[int, int] | None = None  # None: the target's or the model's default
    dynamic: bool = False
    opset: int = DEFAULT_OPSET
    target: str = "x86-cpu"
    targets_file: Path | None = None  # None: the repository's targets.yaml
    until: str = "engine"
    out: Path = Path("artifacts")
    eval_dir: Path | None = None  # real images for verification; None: default_data_dir()/eval
    calib_dir: Path | None = None  # calibration images; None: default_data_dir()/calib
    calib_size: int | None = None  # None: 32, or as many frames as fit the quantize stage's memory budget
    calib_max_mean: float | None = 0.25  # low-light frames only (RGB); None or 1.0 keeps every image
    verify_images: int = 4
    method: str = "ptq"  # ptq | qat
    qat_seconds: float = 240.0  # QAT fine-tuning wall-clock budget
    budget_db: float | None = None  # None: the target's budget
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.until not in STAGES:
            msg = f"--until {self.until!r} is not a stage; choose one of {', '.join(STAGES)}"
            raise UsageError(msg)
        if not 7 <= self.opset <= 23:
            msg = f"--opset {self.opset} is outside the supported range 7..23; 17 or 20 are safe choices"
            raise UsageError(msg)
        if self.verify_images < 1:
            msg = f"--verify-images must be at least 1, got {self.verify_images}"
            raise UsageError(msg)
        if self.method not in ("ptq", "qat"):
            msg = f"--method {self.method!r} is unknown; choose ptq or qat"
            raise UsageError(msg)
        if not self.qat_seconds > 0:
            msg = f"--qat-seconds must be positive, got {self.qat_seconds}"
            raise UsageError(msg)
        if self.calib_size is not None and self.calib_size < 1:
            msg = f"--calib-size must be at least 1, got {self.calib_size}"
            raise UsageError(msg)

    @property
    def eval_folder(self) -> Path:
        return self.eval_dir or default_data_dir() / "eval"

    @property
    def calib_folder(self) -> Path:
        return self.calib_dir or default_data_dir() / "calib"
