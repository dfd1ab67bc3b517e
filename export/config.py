"""The typed, validated request behind `python -m export`.

Validation happens once, here, against the model's input contract, so the stages can trust
their inputs and a bad option fails before any work starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lowlight_edge.datasets import check_not_eval
from lowlight_edge.errors import DataError, UsageError
from lowlight_edge.targets import parse_resolution

__all__ = ["DEFAULT_OPSET", "STAGES", "ExportRequest", "default_data_dir", "parse_resolution", "require_data_dir"]

STAGES = ("onnx", "simplify", "quantize", "engine")
DEFAULT_OPSET = 20  # what torch 2.13's dynamo exporter emits natively
DATA_ENV = "LOWLIGHT_EDGE_DATA"
MIN_BUDGET_DB, MAX_BUDGET_DB = 10.0, 99.0  # below 10 dB an image is unrecognisable; 99 dB is the PSNR cap


def default_data_dir() -> Path | None:
    """The folder holding eval/ and calib/ when no --eval/--calib is given, or None.

    $LOWLIGHT_EDGE_DATA; else, when running from a source checkout (pyproject.toml beside the
    packages), ``../shared/data`` beside the repository; else None: an installed wheel has no
    repository, and a folder next to site-packages would be a guess.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[1]  # the folder that holds the export package
    if (root / "pyproject.toml").is_file():
        return root.parent / "shared" / "data"
    return None


def require_data_dir(what: str, option: str = "") -> Path:
    """default_data_dir(), or a one-line DataError (exit 2): ``what`` has no folder, and the fix.

    ``option`` names the command-line alternative to the variable, e.g. "pass --eval DIR".
    """
    folder = default_data_dir()
    if folder is None:
        alternative = f", or {option}" if option else ""
        msg = (
            f"no folder of {what}: {DATA_ENV} is not set and this is not a source checkout; "
            f"set {DATA_ENV} to a folder with eval/ and calib/{alternative}"
        )
        raise DataError(msg)
    return folder


@dataclass(frozen=True)
class ExportRequest:
    model: str
    weights: str | None = "default"
    resolution: tuple[int, int] | None = None  # None: the target's or the model's default
    dynamic: bool = False
    opset: int = DEFAULT_OPSET
    target: str = "x86-cpu"
    targets_file: Path | None = None  # None: lowlight_edge.targets.DEFAULT_PATH, the packaged targets.yaml
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
    ship: str = "auto"  # auto: the ship rule decides INT8 vs FP32; int8 | fp32: the user pins it (quantize.search.decide)

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
        if self.ship not in ("auto", "int8", "fp32"):
            msg = f"--ship {self.ship!r} is unknown; choose auto, int8 or fp32"
            raise UsageError(msg)
        if self.ship != "auto" and STAGES.index(self.until) < STAGES.index("quantize"):
            msg = f"--ship {self.ship} decides the quantize stage, which --until {self.until} does not run; drop one of them"
            raise UsageError(msg)
        if self.budget_db is not None and not (MIN_BUDGET_DB <= self.budget_db <= MAX_BUDGET_DB):
            msg = (
                f"--budget-db {self.budget_db} is not a PSNR budget; give a number of dB between "
                f"{MIN_BUDGET_DB:g} and {MAX_BUDGET_DB:g} (e.g. 40)"
            )
            raise UsageError(msg)
        if self.calib_max_mean is not None and not (0.0 < self.calib_max_mean <= 1.0):
            msg = f"--calib-max-mean {self.calib_max_mean} must be a mean sRGB level in (0, 1], e.g. 0.25"
            raise UsageError(msg)
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            msg = f"--out {out} is a file, not a folder; pass a folder for the artifacts"
            raise UsageError(msg)
        folders = self.image_folders()  # after the options, so a bad option is named first
        for role, folder in folders.items():
            if not Path(folder).is_dir():
                option = "--eval" if role == "eval" else "--calib"
                msg = f"{role} folder {folder} does not exist; pass {option} with a folder of real images (PNG/JPEG)"
                raise DataError(msg)
        if "calib" in folders:
            check_not_eval(folders["calib"], folders["eval"])  # never calibrate on the images drift is measured on

    def image_folders(self) -> dict[str, Path]:
        """The image folders this request reads: eval always, calib when it runs the quantize stage.

        A DataError (exit 2) when one of them was not given and there is no default data folder.
        """
        folders = {"eval": self.eval_folder}
        if STAGES.index(self.until) >= STAGES.index("quantize"):
            folders["calib"] = self.calib_folder
        return folders

    @property
    def eval_folder(self) -> Path:
        """--eval, else <data folder>/eval; a DataError when there is neither."""
        return self.eval_dir or require_data_dir("eval images", "pass --eval DIR") / "eval"

    @property
    def calib_folder(self) -> Path:
        """--calib, else <data folder>/calib; a DataError when there is neither."""
        return self.calib_dir or require_data_dir("calibration images", "pass --calib DIR") / "calib"
