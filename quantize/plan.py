"""The precision plan: which nodes stay in float, why, and what the result measured.

Written beside the INT8 artifact as YAML so a person can read it, and read back by the
TensorRT backend so its layer precisions follow the same decisions as the OpenVINO INT8 IR.
Node names are the ONNX node names of the simplified graph (they are also OpenVINO's op names).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from lowlight_edge.errors import ConfigError


@dataclass
class FloatNode:
    name: str  # ONNX node name in the simplified graph
    op: str  # ONNX op type
    module: str  # PyTorch module path it came from ("" if unknown)
    reason: str


@dataclass
class PrecisionPlan:
    model: str
    target: str
    decision: str  # "int8" or "fp32" (the float artifact ships)
    reason: str
    budget: dict  # {"psnr_mean_db": x, "psnr_min_db": y}
    float_nodes: list[FloatNode] = field(default_factory=list)
    quantized_nodes: list[str] = field(default_factory=list)
    fidelity: dict = field(default_factory=dict)  # {"validation": {...}, "eval": {...}}
    latency_ms: dict = field(default_factory=dict)  # {"fp32": x, "int8": y, "ratio": y/x}
    calibration: dict = field(default_factory=dict)  # {"hash", "images", "folder"}
    search: list[dict] = field(default_factory=list)  # each step tried, in order

    @property
    def float_names(self) -> list[str]:
        return [n.name for n in self.float_nodes]


def save_plan(plan: PrecisionPlan, path: str | Path) -> None:
    import yaml

    from lowlight_edge.atomic import write_text

    header = (
        f"# Precision plan for {plan.model} on {plan.target}: {plan.decision}.\n"
        "# float_nodes stay in floating point (NNCF ignored scope; TensorRT layer precision FP16/FP32).\n"
    )
    write_text(path, header + yaml.safe_dump(asdict(plan), sort_keys=False, width=110))


def load_plan(path: str | Path) -> PrecisionPlan:
    """Read a plan written by save_plan (YAML or JSON); a malformed file is a ConfigError."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
        nodes = [FloatNode(**n) for n in data.pop("float_nodes", [])]
        return PrecisionPlan(float_nodes=nodes, **data)
    except (OSError, yaml.YAMLError, TypeError, AttributeError) as err:
        msg = f"precision plan {path} is unreadable ({err}); delete it and rerun the quantize stage"
        raise ConfigError(msg) from err
