"""The zoo's vocabulary: a model's input contract, its registered weights, and the registry.

Modelled on torchvision's weights enums and timm's pretrained configs: each entry carries its
builder, its weights (URL, sha256, license) and the input contract that every later stage reads
instead of guessing (range, size multiple, default resolution, RAW or RGB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch

from lowlight_edge.errors import UsageError

UPSTREAM = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


@dataclass(frozen=True)
class Weights:
    """One published checkpoint: where it comes from and how to trust it."""

    name: str  # registered name, e.g. "lol_v2"
    file: str  # file name looked up in $LOWLIGHT_EDGE_WEIGHTS and the user cache
    url: str  # upstream raw-file URL at the pinned commit ("" if not downloadable)
    sha256: str
    license: str
    description: str
    trained_range: tuple[float, float] = (0.0, 1.0)  # what the checkpoint was trained on


@dataclass(frozen=True)
class QuantPreset:
    """Where the INT8 search starts for this model: what stays float before any search, and why.

    From measurements on this stack (baseline.md, section 3): elementwise ops (the Zero-DCE curve,
    IAT's gamma and colour matrix) made INT8 slower on CPUs without VNNI and cost fidelity, so by
    default only convolutions are quantized.
    """

    quantize_ops: tuple[str, ...] = ("Conv", "MatMul")  # ONNX op types that may be INT8
    float_modules: tuple[tuple[str, str], ...] = ()  # (module-path prefix, reason)
    float_first_conv: str = ""  # reason, if the conv reading the image stays float
    model_type_transformer: bool = False
    # (module-path prefix, reason): the convolutions that had to stay f32 under BF16 inference, where
    # quantize/f32_layers.py's search starts (it confirms them on the eval frames, or searches them all)
    bf16_f32_modules: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Tiling:
    """Measured facts for running frames in overlapping tiles (runtimes.tiling, runtimes.enhance).

    Tiles are stitched at the middle of each overlap, so each keeps >= overlap/2 px of context on
    every inner edge, and their offsets are multiples of the model's size multiple.
    """

    overlap: int  # px at which tiled and whole-frame outputs agree (>= 50 dB; see each entry's comment)
    activation_bytes_per_px: float | None = None  # peak memory per tile input pixel, OpenVINO CPU FP32 IR; None: not measured
    exact: bool = True  # False: some error is left at any overlap (the entry's comment says why and how much)


@dataclass(frozen=True)
class GlobalParams:
    """Per-image parameters a model applies to the whole frame, exposed by its deployed graph.

    IAT and its student compute one gamma and one 3x3 colour matrix per image and apply them to
    the local branch's output: y = clamp(M p, 1e-8, 1) ** gamma (lowlight_edge.temporal.apply_global).
    Their ONNX graphs carry these tensors as extra outputs after the image, so a video runner can
    smooth them over time before applying them (runtimes enhance --temporal-smoothing).
    """

    outputs: tuple[str, ...] = ("img_local", "gamma", "color")  # graph output names after "output"
    what: str = "gamma and 3x3 colour matrix per frame"


def image_and_params(stages: dict[str, torch.Tensor], exposed: tuple[str, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """A global-parameter model's forward result: the image, then the ``exposed`` stages (if any)."""
    if exposed:
        return (stages["img_high"], *(stages[n] for n in exposed))
    return stages["img_high"]


@contextmanager
def exposing_global_params(module: torch.nn.Module, params: GlobalParams) -> Iterator[torch.nn.Module]:
    """Within the block ``module(x)`` returns (image, *params.outputs), e.g. for the ONNX export.

    A flag on the module rather than a wrapper module, so every node keeps its module path and the
    plan's float-module prefixes (QuantPreset.float_modules, e.g. "global_net") still match.
    """
    module.exposed_outputs = params.outputs
    try:
        yield module
    finally:
        module.exposed_outputs = ()


@dataclass(frozen=True)
class ModelSpec:
    """The machine-readable input contract of one zoo entry.

    The deployed module always takes the ``value_range`` below (RGB in [0, 1], or the amplified
    Bayer plane for RAW models); model-specific normalisation happens inside the module.
    """

    name: str
    title: str
    input_kind: Literal["rgb", "raw_bayer"]
    channels: int  # 3 for RGB, 1 for the Bayer plane
    value_range: tuple[float, float]  # range of the deployed module's input
    size_multiple: int  # H and W must be multiples of this
    default_resolution: tuple[int, int]  # (H, W)
    params: int  # parameter count of the deployed (folded) network
    license: str
    source: str  # upstream repository @ commit
    paper: str
    weights: dict[str, Weights]
    default_weights: str | None
    scale_factor: int | None = None  # Zero-DCE family: curve net runs at 1/s resolution
    bayer_pattern: str | None = None  # "RGGB" for RAW models
    dynamic_hw: bool = True  # whether the exported graph may take dynamic H and W
    dynamic_hw_reason: str = ""  # why not, when dynamic_hw is False
    reference: tuple[str, ...] = ()  # published numbers, quoted with their setting
    notes: tuple[str, ...] = ()
    output_range: tuple[float, float] = (0.0, 1.0)
    preset: QuantPreset = QuantPreset()  # the INT8 search's starting point
    tiling: Tiling | None = None  # None: no tiling facts measured (frames run whole)
    # Why the output depends on statistics of the whole image (e.g. a global gamma from every
    # pixel), so that no tiling or padding can reproduce the full-frame output; "" for local models.
    whole_image_statistics: str = ""
    global_params: GlobalParams | None = None  # per-frame parameters the deployed graph exposes (IAT)

    def check_resolution(self, height: int, width: int) -> None:
        """Raise UsageError unless HxW is positive and a multiple of size_multiple."""

        m = self.size_multiple
        if height <= 0 or width <= 0 or height % m or width % m:
            fit_h, fit_w = max(m, height // m * m), max(m, width // m * m)
            msg = (
                f"{self.name} needs H and W that are multiples of {m}, got {height}x{width}; "
                f"use e.g. --resolution {fit_h}x{fit_w}"
            )
            raise UsageError(msg)


@dataclass(frozen=True)
class Entry:
    spec: ModelSpec
    # random-init deployable module (eval mode), configured for the registered weights it will load
    # (e.g. IAT's input normalization); None means random init or a user file with default settings
    build: Callable[[Weights | None], torch.nn.Module]
    load_state: Callable[[torch.nn.Module, dict], None] = field(default=None)  # type: ignore[assignment]


REGISTRY: dict[str, Entry] = {}


def register(spec: ModelSpec, build: Callable[[Weights | None], torch.nn.Module], load_state=None) -> None:
    REGISTRY[spec.name] = Entry(spec=spec, build=build, load_state=load_state)
