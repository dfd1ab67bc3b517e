"""targets.yaml -> typed, validated `Target` records.

A target names a runtime, a device, the precisions to measure, the fidelity budget and the
per-model resolutions. The file is a contract, so it is checked strictly when loaded: an unknown
key, a wrong type, an unknown runtime or precision, a bad "HxW" string or a duplicated key is a
ConfigError naming the file and the line (taken from PyYAML's node marks via ``yaml.compose``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lowlight_edge.console import suggest
from lowlight_edge.errors import ConfigError, UsageError

DEFAULT_PATH = Path(__file__).resolve().with_name("targets.yaml")  # packaged; the repository root links to it

RUNTIMES = ("openvino", "onnxruntime", "tensorrt", "torch")
PRECISIONS = ("fp32", "fp16", "int8")
REQUIREMENTS = ("cpu", "x86_64", "openvino", "onnxruntime", "tensorrt", "cuda", "jetson")

# Precisions each runtime can build; a target asking for another one is a config error.
RUNTIME_PRECISIONS: dict[str, tuple[str, ...]] = {
    "openvino": ("fp32", "fp16", "int8"),
    "onnxruntime": ("fp32", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
    "torch": ("fp32",),
}

# Runtime options a target may set: name -> (accepted types, one-line meaning). The load-time
# names are those of runtimes/backend_<name>.py, which rejects any other key.
_RUNTIME_OPTIONS: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "openvino": {
        "hint": ((str,), "performance hint, LATENCY | THROUGHPUT | CUMULATIVE_THROUGHPUT"),
        "precision": ((str,), "OpenVINO inference precision hint for float layers, f32 | f16 | bf16"),
    },
    "onnxruntime": {},
    "tensorrt": {
        "workspace_mb": ((int,), "builder workspace limit (build time)"),
        "builder": ((str,), "rtx (TensorRT for RTX: builds without a GPU, runs on RTX/Ampere+) | tensorrt (build time)"),
        "dla_core": ((int, type(None)), "DLA core index, null = GPU (build time)"),
        "power_mode": ((str, type(None)), "expected `nvpmodel -q` mode on a Jetson, null = not checked"),
        "tegrastats_interval_ms": ((int, type(None)), "tegrastats sampling period, null = off"),
    },
    "torch": {
        "compile": ((bool, str), "torch.compile mode: true | default | reduce-overhead | max-autotune"),
    },
}
# Memory-bounded runs, on any runtime (one of the two): the model is built at the tile size and
# every frame runs in overlapping tiles (runtimes.tiling), so the figures cover the whole frame.
TILING_OPTIONS: dict[str, tuple[tuple[type, ...], str]] = {
    "tile": ((str,), '"HxW" tile size, multiples of the model\'s size multiple'),
    "max_memory_mb": ((int,), "activation memory limit in MB; runtimes.tiling.tile_for_memory picks the tile"),
}
OPTION_KEYS = {runtime: {**keys, **TILING_OPTIONS} for runtime, keys in _RUNTIME_OPTIONS.items()}

# Options read by the export pipeline when it builds, and by the bench itself; neither kind is
# passed to the runtime's load().
BUILD_OPTIONS = frozenset({"workspace_mb", "dla_core", "builder"})
CPU_RUNTIMES = ("openvino", "onnxruntime")  # the runtimes that take a CPU thread count
BENCH_ONLY_OPTIONS = frozenset({"power_mode", "tegrastats_interval_ms", *TILING_OPTIONS})

_TOP_KEYS = ("version", "targets")
_TARGET_KEYS = (
    "description",
    "runtime",
    "device",
    "precisions",
    "threads",
    "budget",
    "warmup",
    "iterations",
    "timeout_s",
    "resolutions",
    "requires",
    "options",
    "remote",
)
_REQUIRED_TARGET_KEYS = ("runtime", "device", "precisions", "resolutions")
_BUDGET_KEYS = ("psnr_mean_db", "psnr_min_db")


@dataclass(frozen=True)
class Budget:
    """Fidelity budget vs the FP32 PyTorch output (issue 4 default: 40 dB mean, 38 dB min)."""

    psnr_mean_db: float = 40.0
    psnr_min_db: float = 38.0


@dataclass(frozen=True)
class Target:
    """One benchmark target, as validated from targets.yaml."""

    name: str
    runtime: str  # one of RUNTIMES
    device: str  # "CPU" (OpenVINO), "cpu" (ORT/torch), "cuda:0" (TensorRT)
    precisions: tuple[str, ...]
    resolutions: dict[str, tuple[int, int]]  # model -> (H, W); "default" for RGB models
    description: str = ""
    threads: int | None = None  # None = all cores of the host
    budget: Budget = field(default_factory=Budget)
    warmup: int = 3
    iterations: int = 20
    timeout_s: int = 900
    requires: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    remote: str | None = None  # ssh://[user@]host[:port]: `python -m bench` measures there (bench.remote)

    def resolution_for(self, model: str, raw: bool = False) -> tuple[int, int]:
        """(H, W) for ``model``: its own entry, else ``default`` for RGB models.

        RAW (Bayer) models never fall back to the RGB default: their input is a different kind
        of plane, so a missing entry is a ConfigError rather than a silent 400x600 Bayer run.
        """
        if model in self.resolutions:
            return self.resolutions[model]
        if raw:
            msg = (
                f"target {self.name!r} has no resolution for RAW model {model!r}; "
                f"add `{model}: HxW` under its resolutions in targets.yaml"
            )
            raise ConfigError(msg)
        if "default" not in self.resolutions:
            msg = (
                f"target {self.name!r} has no resolution for {model!r} and no default; "
                f"add `{model}: HxW` or `default: HxW` under its resolutions in targets.yaml"
            )
            raise ConfigError(msg)
        return self.resolutions["default"]

    def resolved_threads(self) -> int:
        """``threads``, or every core this process may run on when it is null."""
        if self.threads is not None:
            return self.threads
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1

    def load_options(self) -> dict[str, Any]:
        """Options for ``Backend.load``: runtime options plus an explicit ``threads`` count.

        Build-time (workspace_mb, dla_core) and bench-only (power_mode, tegrastats_interval_ms,
        tile, max_memory_mb) keys are left out; ``threads`` is always
        a number so that the row, the runtime and the benchmark_app cross-check all use the same one.
        """
        opts = {k: v for k, v in self.options.items() if k not in BENCH_ONLY_OPTIONS | BUILD_OPTIONS}
        if self.runtime in CPU_RUNTIMES:  # TensorRT runs on the GPU and refuses a threads option
            opts["threads"] = self.resolved_threads()
        return opts


# --------------------------------------------------------------------------------------------
# Loading


def load_targets(path: str | Path | None = None) -> dict[str, Target]:
    """Read and validate a targets file (default: DEFAULT_PATH, the targets.yaml packaged with lowlight_edge)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        text = path.read_text()
    except OSError as err:
        msg = f"cannot read targets file {path}: {err.strerror or err}; pass an existing targets.yaml"
        raise ConfigError(msg) from err
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        msg = f"{where}: not valid YAML ({problem}); fix the syntax at that line"
        raise ConfigError(msg) from err
    return _Parser(path).parse(root)


def get_target(name: str, path: str | Path | None = None) -> Target:
    """The target called ``name``; an unknown name is a UsageError with a suggestion."""
    targets = load_targets(path)
    if name not in targets:
        msg = f"unknown target {name!r}{suggest(name, list(targets))}; choose one of {', '.join(targets)}"
        raise UsageError(msg)
    return targets[name]


def parse_resolution(text: str) -> tuple[int, int]:
    """'400x600' -> (400, 600), case and spaces ignored; anything else is a UsageError naming the text.

    The one parser of "HxW" strings: --resolution on every command line, and the resolutions and
    tile option of targets.yaml (whose loader turns the error into a ConfigError with the line).
    """
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        msg = f"resolution {text!r} is not of the form HxW with positive integers, e.g. 400x600"
        raise UsageError(msg)
    return int(parts[0]), int(parts[1])


class _Parser:
    """Walks the composed YAML node tree, so every complaint can name its line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._constructor = yaml.constructor.SafeConstructor()

    # -- helpers ---------------------------------------------------------------------------

    def fail(self, node: Any, problem: str, fix: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else 1
        return ConfigError(f"{self.path}:{line}: {problem}; {fix}")

    def scalar(self, node: Any) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return _NOT_SCALAR
        return self._constructor.construct_object(node, deep=True)

    def mapping(self, node: Any, what: str, allowed: tuple[str, ...] | None) -> dict[str, tuple[Any, Any]]:
        """key -> (key_node, value_node), rejecting non-mappings, duplicates and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(
                node, f"{what} must be a mapping of `key: value` lines", "indent its keys under it"
            )
        out: dict[str, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if not isinstance(key, str):
                raise self.fail(key_node, f"key {key!r} in {what} is not a name", "use a plain text key")
            if key in out:
                raise self.fail(key_node, f"duplicate key {key!r} in {what}", "keep only one of them")
            if allowed is not None and key not in allowed:
                raise self.fail(
                    key_node,
                    f"unknown key {key!r} in {what}{suggest(key, allowed)}",
                    f"allowed keys: {', '.join(allowed)}",
                )
            out[key] = (key_node, value_node)
        return out

    def typed(self, node: Any, what: str, kinds: tuple[type, ...], expected: str) -> Any:
        value = self.scalar(node)
        ok = value is not _NOT_SCALAR and isinstance(value, kinds)
        if ok and isinstance(value, bool) and bool not in kinds:
            ok = False  # YAML `yes`/`true` must not pass as an int
        if not ok:
            shown = "a list or mapping" if value is _NOT_SCALAR else f"{value!r}"
            raise self.fail(node, f"{what} must be {expected}, got {shown}", f"write {what} as {expected}")
        return value

    def int_at_least(self, node: Any, what: str, low: int) -> int:
        value = self.typed(node, what, (int,), f"an integer >= {low}")
        if value < low:
            raise self.fail(node, f"{what} must be an integer >= {low}, got {value}", f"use a value >= {low}")
        return value

    def str_list(self, node: Any, what: str, choices: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(
                node, f"{what} must be a non-empty list", f"write it as [{', '.join(choices[:2])}]"
            )
        items: list[str] = []
        for item in node.value:
            value = self.typed(item, f"an entry of {what}", (str,), "a name")
            if value not in choices:
                raise self.fail(
                    item,
                    f"unknown {what} entry {value!r}{suggest(value, choices)}",
                    f"choose from {', '.join(choices)}",
                )
            if value in items:
                raise self.fail(item, f"{value!r} is listed twice in {what}", "list it once")
            items.append(value)
        return tuple(items)

    # -- schema ----------------------------------------------------------------------------

    def parse(self, root: Any) -> dict[str, Target]:
        if root is None:
            msg = f"{self.path}: the file is empty; add a `targets:` mapping (see the packaged lowlight_edge/targets.yaml)"
            raise ConfigError(msg)
        top = self.mapping(root, "the top level", _TOP_KEYS)
        if "version" in top:
            version = self.typed(top["version"][1], "version", (int,), "an integer")
            if version != 1:
                raise self.fail(top["version"][1], f"version {version} is not supported", "use version: 1")
        if "targets" not in top:
            raise self.fail(root, "no `targets:` mapping", "add `targets:` with one entry per target")
        entries = self.mapping(top["targets"][1], "targets", None)
        if not entries:
            raise self.fail(top["targets"][1], "`targets:` is empty", "add at least one target")
        return {name: self.target(name, key_node, node) for name, (key_node, node) in entries.items()}

    def target(self, name: str, key_node: Any, node: Any) -> Target:
        what = f"target {name!r}"
        keys = self.mapping(node, what, _TARGET_KEYS)
        for required in _REQUIRED_TARGET_KEYS:
            if required not in keys:
                raise self.fail(key_node, f"{what} has no `{required}`", f"add `{required}:` to it")

        def value(key: str) -> Any:
            return keys[key][1]

        runtime = self.typed(value("runtime"), f"{what} runtime", (str,), "a runtime name")
        if runtime not in RUNTIMES:
            raise self.fail(
                value("runtime"),
                f"unknown runtime {runtime!r} in {what}{suggest(runtime, RUNTIMES)}",
                f"choose one of {', '.join(RUNTIMES)}",
            )
        fields: dict[str, Any] = {"name": name, "runtime": runtime}
        fields["device"] = self.typed(
            value("device"), f"{what} device", (str,), 'a device string such as "CPU"'
        )
        precisions = self.str_list(value("precisions"), f"{what} precisions", PRECISIONS)
        for p, item in zip(precisions, value("precisions").value):
            if p not in RUNTIME_PRECISIONS[runtime]:
                raise self.fail(
                    item,
                    f"precision {p!r} is not available with {runtime} in {what}",
                    f"choose from {', '.join(RUNTIME_PRECISIONS[runtime])}",
                )
        fields["precisions"] = precisions
        fields["resolutions"] = self.resolutions(value("resolutions"), what)
        if "description" in keys:
            fields["description"] = self.typed(value("description"), f"{what} description", (str,), "text")
        if "threads" in keys:
            threads = self.typed(
                value("threads"), f"{what} threads", (int, type(None)), "an integer >= 1 or null"
            )
            if threads is not None and threads < 1:
                raise self.fail(
                    value("threads"), f"{what} threads must be >= 1, got {threads}", "use null for all cores"
                )
            fields["threads"] = threads
        if "warmup" in keys:
            fields["warmup"] = self.int_at_least(value("warmup"), f"{what} warmup", 0)
        if "iterations" in keys:
            fields["iterations"] = self.int_at_least(value("iterations"), f"{what} iterations", 1)
        if "timeout_s" in keys:
            fields["timeout_s"] = self.int_at_least(value("timeout_s"), f"{what} timeout_s", 1)
        if "budget" in keys:
            fields["budget"] = self.budget(value("budget"), what)
        if "requires" in keys:
            fields["requires"] = self.str_list(value("requires"), f"{what} requires", REQUIREMENTS)
        if "options" in keys:
            fields["options"] = self.options(value("options"), what, runtime)
        if "remote" in keys:
            remote = self.typed(value("remote"), f"{what} remote", (str, type(None)), "ssh://[user@]host[:port] or null")
            if remote is not None and not remote.startswith("ssh://"):
                raise self.fail(value("remote"), f"{what} remote {remote!r} is not an ssh:// address", "write ssh://[user@]host[:port]")
            fields["remote"] = remote
        return Target(**fields)

    def budget(self, node: Any, what: str) -> Budget:
        keys = self.mapping(node, f"{what} budget", _BUDGET_KEYS)
        values: dict[str, float] = {}
        for key, (_, value_node) in keys.items():
            number = self.typed(value_node, f"{what} budget {key}", (int, float), "a number of dB")
            if not math.isfinite(number):
                raise self.fail(
                    value_node, f"{what} budget {key} is not finite", "use a number of dB such as 40"
                )
            values[key] = float(number)
        return Budget(**values)

    def resolutions(self, node: Any, what: str) -> dict[str, tuple[int, int]]:
        keys = self.mapping(node, f"{what} resolutions", None)
        if not keys:
            raise self.fail(node, f"{what} resolutions is empty", "add `default: HxW` and per-model entries")
        out: dict[str, tuple[int, int]] = {}
        for model, (_, value_node) in keys.items():
            text = self.typed(
                value_node, f"{what} resolution of {model}", (str,), 'a "HxW" string such as 400x600'
            )
            try:
                parsed = parse_resolution(text)
            except UsageError:
                raise self.fail(
                    value_node,
                    f"{what} resolution of {model} is {text!r}, not HxW",
                    "write it as HxW with positive integers, e.g. 400x600",
                ) from None
            out[model] = parsed
        return out

    def options(self, node: Any, what: str, runtime: str) -> dict[str, Any]:
        allowed = OPTION_KEYS[runtime]
        keys = self.mapping(node, f"{what} options for {runtime}", tuple(allowed) or ("(none)",))
        out: dict[str, Any] = {}
        for key, (_, value_node) in keys.items():
            kinds, meaning = allowed[key]
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            value = self.typed(value_node, f"{what} option {key}", kinds, f"{names} ({meaning})")
            problem = _option_problem(key, value)
            if problem:
                raise self.fail(value_node, f"{what} option {key} is {value!r}", problem)
            out[key] = value
        if set(TILING_OPTIONS) <= set(out):
            both = f"{what} options give both tile and max_memory_mb"
            raise self.fail(keys["max_memory_mb"][0], both, "keep one of them")
        return out


def _option_problem(key: str, value: Any) -> str:
    """The fix for a well-typed but out-of-range option value, or '' when it is fine."""
    choices = {
        "hint": ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"),
        "precision": ("f32", "f16", "bf16"),
        "compile": (True, False, "default", "reduce-overhead", "max-autotune"),
        "builder": ("rtx", "tensorrt"),
    }
    if key in choices and value not in choices[key]:
        return "use one of " + ", ".join(str(c) for c in choices[key])
    if key == "dla_core" and value is not None and value < 0:
        return "use 0, 1 or null for the GPU"
    if key == "tile":
        try:
            parse_resolution(value)
        except UsageError:
            return "write it as HxW with positive integers, e.g. 1024x1536"
    if key in ("workspace_mb", "tegrastats_interval_ms", "max_memory_mb") and value is not None and value < 1:
        return "use a positive integer"
    return ""


class _NotScalar:
    def __repr__(self) -> str:
        return "<not a scalar>"


_NOT_SCALAR = _NotScalar()
