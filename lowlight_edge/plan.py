"""The precision plan: which nodes stay in float, why, and what the result measured.

One format, one reader: the quantize stage writes it beside the INT8 artifact as YAML (a person
can read it), and every backend that follows a plan (NNCF's ignored scope for OpenVINO and the
QDQ ONNX, TensorRT's FP16 ONNX) reads it back with ``load_plan``. Node names are the ONNX node
names of the simplified graph (they are also OpenVINO's op names).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from lowlight_edge.atomic import write_text
from lowlight_edge.errors import ConfigError

# The one list of ONNX op types NNCF may quantize besides the compute ops: a plan keeps float every
# type here that its quantize_ops do not name (each backend translates these names to its own).
QUANTIZABLE_OPS = (
    "Conv", "ConvTranspose", "MatMul", "Gemm", "Mul", "Add", "Sub", "Div", "Pow", "Tanh", "Sigmoid", "Clip",
    "Resize", "CumSum", "ReduceMean", "AveragePool", "GlobalAveragePool", "LayerNormalization",
)  # fmt: skip
# LayerNormalization: NNCF quantizes the input of OpenVINO's MVN (through the reshapes before it);
# in IAT's global branch that alone cost 9 dB (38.96 -> 48.2 dB on validation once reverted, 2026-12-01).
FLOAT_PRECISIONS = ("fp32", "fp16")
PLAN_FILE = "precision_plan.yaml"  # the plan's name in a model folder, beside the simplified ONNX


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
    quantize_ops: list[str] = field(default_factory=lambda: ["Conv"])  # ONNX op types that may be INT8
    float_nodes: list[FloatNode] = field(default_factory=list)
    float_precision: str = "fp32"  # what float nodes run in inside an INT8/FP16 TensorRT engine
    quantized_nodes: list[str] = field(default_factory=list)
    fidelity: dict = field(default_factory=dict)  # {"validation": {...}, "eval": {...}}
    # CPU targets: {"fp32", "int8": medians, "speedup": the interval and verdict, "samples_ms": every round's
    # times, "order"} (quantize.search.speed_record); GPU targets: {"unmeasured": why}
    latency_ms: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)  # {"hash", "images", "folder"}
    search: list[dict] = field(default_factory=list)  # each step tried, in order
    # {"requested": auto|int8|fp32, "pinned": bool, "rule_decision", "rule_reason"}: what the user asked
    # (--ship) and what the ship rule alone decided; empty in plans written before --ship existed
    ship: dict = field(default_factory=dict)
    # CPU targets: the runtime options searched with the precision (quantize.search.choose_runtime_options):
    # {"host": {cpu, flags, threads, openvino}, "source_sha256": the simplified ONNX they were decided on,
    #  "options": {"fp32": {...}, "int8": {...}} (what each IR's sidecar carries), "pinned": options the
    #  target/user fixed, "candidates": [each candidate: options, fidelity, speed record, verdict, or why
    #  it was not a candidate]}; empty for GPU targets and in plans written before the search existed
    runtime: dict = field(default_factory=dict)

    @property
    def float_names(self) -> list[str]:
        return [n.name for n in self.float_nodes]

    @property
    def float_op_types(self) -> list[str]:
        """ONNX op types whose inputs stay float (QUANTIZABLE_OPS less quantize_ops)."""
        return [op for op in QUANTIZABLE_OPS if op not in self.quantize_ops]


class _PlanDumper(yaml.SafeDumper):
    """Block style, except lists of numbers (the per-round timings), which stay on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    numbers = bool(data) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=numbers)


_PlanDumper.add_representer(list, _represent_list)


def save_plan(plan: PrecisionPlan, path: str | Path) -> None:
    if plan.ship.get("pinned") and plan.ship["requested"] != plan.decision:
        how = f"--ship {plan.ship['requested']} refused (see reason)"
    elif plan.ship.get("pinned"):
        how = f"pinned by the user (--ship {plan.ship['requested']}); the ship rule alone: {plan.ship['rule_decision']}"
    else:
        how = "decided by the ship rule (reason; latency_ms.speedup for the speed verdict and what a tie ships)"
    header = (
        f"# Precision plan for {plan.model} on {plan.target}: {plan.decision}, {how}.\n"
        "# float_nodes stay in floating point (NNCF ignored scope; FP32 nodes of TensorRT's FP16 ONNX).\n"
    )
    body = yaml.dump(asdict(plan), Dumper=_PlanDumper, sort_keys=False, width=110)
    write_text(path, header + body)


def load_plan(path: str | Path) -> PrecisionPlan:
    """Read a plan written by save_plan; a missing or malformed file is a ConfigError."""
    path = Path(path)
    fix = "regenerate it with python -m quantize"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        msg = f"precision plan {path} does not exist; pass the plan the quantize stage wrote"
        raise ConfigError(msg) from err
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        msg = f"precision plan {path} is unreadable (not valid YAML: {str(err).splitlines()[0]}); {fix}"
        raise ConfigError(msg) from err
    nodes = data.get("float_nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        msg = f"precision plan {path} needs float_nodes: a list of records (name, op, module, reason); {fix}"
        raise ConfigError(msg)
    try:
        plan = PrecisionPlan(**{**data, "float_nodes": [FloatNode(**n) for n in nodes]})
    except TypeError as err:
        msg = f"precision plan {path} has unexpected or missing fields ({err}); {fix}"
        raise ConfigError(msg) from err
    if plan.float_precision not in FLOAT_PRECISIONS:
        msg = f"precision plan {path}: float_precision must be fp32 or fp16, got {plan.float_precision!r}"
        raise ConfigError(msg)
    options = plan.runtime.get("options", {}) if isinstance(plan.runtime, dict) else None
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        msg = f"precision plan {path}: runtime.options must map a precision to its runtime options, got {options!r}; {fix}"
        raise ConfigError(msg)
    unknown = [op for op in plan.quantize_ops if op not in QUANTIZABLE_OPS]
    if unknown:
        msg = f"precision plan {path}: quantize_ops {unknown} are not op types NNCF quantizes ({', '.join(QUANTIZABLE_OPS)})"
        raise ConfigError(msg)
    return plan
