"""manifest.json: what was built, from what, with which tools, and how faithful each file is."""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from lowlight_edge.atomic import write_json
from lowlight_edge.hashing import sha256_bytes
from lowlight_edge.versions import versions

_PACKAGES = ("lowlight_edge", "export", "quantize", "runtimes")


@lru_cache(maxsize=1)
def source_digest() -> str:
    """Hash of this project's own source, so a code change invalidates cached stage outputs."""
    root = Path(__file__).resolve().parents[1]
    parts = []
    for package in _PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            parts.append(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes())
    return sha256_bytes(b"\0".join(parts))[:16]


def input_contract(spec) -> dict:
    return {
        "kind": spec.input_kind,
        "channels": spec.channels,
        "value_range": list(spec.value_range),
        "size_multiple": spec.size_multiple,
        "bayer_pattern": spec.bayer_pattern,
        "scale_factor": spec.scale_factor,
        "layout": "NCHW",
        "dtype": "float32",
        "output_range": list(spec.output_range),
    }


def input_shape(ctx) -> dict:
    n, c, h, w = ctx.input_shape
    if not ctx.request.dynamic:
        return {"static": [n, c, h, w]}
    m = ctx.spec.size_multiple
    return {"dynamic": {"batch": 1, "channels": c, "height": f"{m}*k", "width": f"{m}*k", "opt": [n, c, h, w]}}


def build_manifest(ctx, records) -> dict:
    return {
        "model": ctx.spec.name,
        "target": ctx.target.name,
        "weights": ctx.weights,
        "input": input_contract(ctx.spec),
        "input_shape": input_shape(ctx),
        "opset": ctx.request.opset,  # what the ONNX holds: the onnx stage refuses a file with another opset
        "eval": {"folder": str(ctx.request.eval_folder), "sha256": ctx.eval_digest, "images": ctx.request.verify_images},
        "files": [asdict(r) for r in records],
        "notes": ctx.notes,
        "preflight": ctx.preflight_run,  # seconds of the input checks (eval frames, references) before the stages
        "stages": ctx.stage_runs,  # seconds and peak RSS of each stage run (process-wide, this host)
        "versions": versions(),
    }


def write_manifest(ctx, records) -> Path:
    path = ctx.model_dir / "manifest.json"
    write_json(path, build_manifest(ctx, records))
    return path
