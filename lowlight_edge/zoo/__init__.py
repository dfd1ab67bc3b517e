"""The model zoo: six low-light enhancement networks, their weights and their input contracts.

    >>> from lowlight_edge.zoo import list_models, get_spec, get_model
    >>> model = get_model("iat")              # eval mode, RGB [0,1] in, enhanced RGB [0,1] out
    >>> get_spec("zero_dce_pp").size_multiple
    12

Every network is re-implemented from docs/models.md (no upstream code) with the authors' key
names, so their checkpoints load strictly and give the authors' outputs.
"""

from __future__ import annotations

import os

import torch

from lowlight_edge.console import suggest
from lowlight_edge.errors import UsageError, WeightsError
from lowlight_edge.zoo._api import REGISTRY, GlobalParams, ModelSpec, Weights, exposing_global_params
from lowlight_edge.zoo.weights import check_keys, load_checkpoint, resolve

# The registry is the only list of models, and its order is the zoo's order (list_models, the
# bench's rows, the CLI help): each module registers its models when imported, so these imports
# run in that order on purpose, one per line, outside the import sorter. Add a model by adding
# its module here, where it should appear.
# isort: off
from lowlight_edge.zoo import iat  # noqa: F401  registers iat
from lowlight_edge.zoo import iat_student  # noqa: F401  registers iat_student
from lowlight_edge.zoo import dce  # noqa: F401  registers zero_dce_pp, tinydce, sgz
from lowlight_edge.zoo import llpacknet  # noqa: F401  registers llpacknet
# isort: on

__all__ = ["GlobalParams", "ModelSpec", "Weights", "exposing_global_params", "get_model", "get_spec", "list_models", "weights_info"]


def list_models() -> list[str]:
    """Names of the zoo's models, in registration order (fixed by the imports above; test_models pins it)."""
    return list(REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The input contract of ``name``; UsageError with a suggestion for an unknown name."""
    if name not in REGISTRY:
        msg = (
            f"unknown model {name!r}{suggest(name, list_models())}; choose one of {', '.join(list_models())}"
        )
        raise UsageError(msg)
    return REGISTRY[name].spec


def weights_info(name: str, weights: str | os.PathLike | None = "default") -> dict[str, str | None]:
    """Provenance of the weights ``get_model(name, weights)`` loads: name, path, sha256, license, url."""
    return resolve(get_spec(name), weights).info()


def get_model(name: str, weights: str | os.PathLike | None = "default") -> torch.nn.Module:
    """Build ``name`` in eval mode with its weights, ready to run and export.

    Args:
        name: one of list_models().
        weights: "default", a registered weights name of the model, a checkpoint file path (loaded
            with the default weights' input settings), or None for random init (seeded, reproducible).

    Returns:
        A module taking NCHW float32 (RGB in [0,1], or the amplified Bayer plane for RAW models,
        see get_spec(name).value_range) and returning the enhanced RGB image in [0,1].
    """
    spec = get_spec(name)
    entry = REGISTRY[name]
    resolved = resolve(spec, weights)
    with torch.random.fork_rng(devices=[]):  # seeded random init without disturbing the caller's RNG
        torch.manual_seed(0)
        model = entry.build(resolved.entry)
    if resolved.path is not None:
        state = load_checkpoint(resolved.path)
        try:
            if entry.load_state is not None:  # the checkpoint's layout differs from the deployed module's
                entry.load_state(model, state)
            else:
                check_keys({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, name)
                model.load_state_dict(state, strict=True)
        except WeightsError as err:
            msg = f"{resolved.path}: {err}"
            raise WeightsError(msg) from err
    return model.eval()
