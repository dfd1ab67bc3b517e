"""The PTQ precision search: the most-INT8 plan that keeps the image, and the ship rule.

Starts from the model's preset (its registry entry's QuantPreset), runs NNCF accuracy control when the preset
misses the budget, and decides whether INT8 ships: it must meet the budget on the eval images and,
on a CPU target, be shown at least MIN_SPEEDUP faster than FP32 here (``time_speedup`` and
``speed_verdict``: a confidence interval over interleaved rounds, not one median). Large frames are
searched on a smaller export and calibrated on crops (quantize/crops.py).

Speed first (``probe_speed``): on a CPU target the rule decides INT8's fate by speed before anything
is calibrated. The preset's INT8 graph, the most INT8 the search can reach (accuracy control only
returns layers to float), is built from PROBE_FRAMES frames, since how fast an INT8 graph runs does
not depend on the values of its ranges, and timed against the fastest FP32 (its runtime options are
chosen first, at the deployed size, also when the probe runs on the smaller search export: LLPackNet
on an AMX host, whose INT8 beats default FP32 3.25x and ties BF16). When even it is not shown faster,
no plan would ship, and calibration, accuracy control and the INT8 checks are skipped (IAT on an
AVX2 host without VNNI: a third of its build).

The user may pin the decision (``--ship int8|fp32``, ExportRequest.ship); fidelity and speed are
measured and recorded all the same, and a pinned INT8 that misses the budget still ships FP32
(``decide``).

Runtime options are searched with the precision (``choose_runtime_options``): the options that
change speed and not the graph (OpenVINO's denormal flushing; BF16 inference precision only where
the CPU has native bfloat16) are tried greedily on FP32 first, each candidate measured on the eval
images (denormal flushing is held to the float-stage floor, since it must leave FP32 as it is; BF16
is a reduced precision, held like the INT8 search to the budget plus its margin) and timed against the
options so far in interleaved rounds
(``compare_speed``, the same sign test as the ship rule, with fewer rounds); INT8 is then timed
against the fastest FP32, and when INT8 ships its own options are searched the same way. Options
the target fixes are never searched. What was decided goes into the plan (``runtime``) and each
IR's sidecar, and every OpenVINO runner applies it.
"""

from __future__ import annotations

import logging
import math
import statistics
import time

import numpy as np

from export.core import Context
from export.verify import (
    FP32_MIN_PSNR_DB,
    ONNX_CHECKERS,
    fidelity_summary,
    frame_psnrs,
    measure,
    run_frames,
    within_budget,
)
from lowlight_edge.plan import FloatNode, PrecisionPlan
from lowlight_edge.versions import versions
from quantize import ptq
from quantize.crops import quantize_from_crops
from quantize.f32_layers import find_f32_layers
from quantize.inputs import (
    check_full_size_calibration,
    export_at,
    fp32_runner_for_timing,
    full_size_calibration,
    load_split,
    ov_model,
    search_resolution,
)
from runtimes import get_backend
from runtimes.backend_openvino import BACKEND as openvino  # NNCF quantizes openvino.Models; this runs them
from runtimes.backend_openvino import (
    FP16_FLAGS,
    RUNTIME_OPTIONS,
    SCHEDULING_OPTIONS,
    cpu_capabilities,
    float_compute_ops,
    reduces_precision,
)
from runtimes.base import Runner
from runtimes.isolation import ChildRunner, time_call, timers

log = logging.getLogger(__name__)

SEARCH_MARGIN_DB = 2.0  # the search aims this far above the budget: eval images are not the calibration images
MIN_SPEEDUP = 1.05  # INT8 must be shown at least this much faster than FP32 to ship
# The speed comparison (time_speedup): interleaved FP32/INT8 rounds, the interval looked at after each
# count of rounds here, stopping at the first look that separates it from MIN_SPEEDUP, at the last
# count, or at the time cap (the look then is at the rounds done so far). At most len(SPEED_LOOKS) looks.
SPEED_LOOKS = (10, 20, 40, 80, 160, 320)
SPEED_SECONDS = 20.0  # cap on one comparison's timed rounds (the first look's 10 rounds always run)
SPEED_CONFIDENCE = 0.99  # two-sided, per look: with <= 6 looks each side errs with <= 6 x 0.5% = 3%
# A tie (the interval still holds MIN_SPEEDUP when timing stops) ships FP32: INT8 costs fidelity, and
# it was not shown to pay for it. Reproducible in the direction that matters: a tie and a "not faster"
# ship the same thing, so only a clear, repeatable gain ships INT8.
TIE_SHIPS = "fp32"
SHIP_CHOICES = ("auto", "int8", "fp32")  # ExportRequest.ship / --ship: the rule decides, or the user pins
# Runtime options: each candidate is timed against the options chosen so far; it is adopted only when
# shown OPTION_MIN_SPEEDUP faster (a tie keeps what was there: an option must earn its place). Fewer
# looks and a shorter cap than the ship rule keep the search near a minute for a 400x600 model.
OPTION_MIN_SPEEDUP = 1.02
OPTION_LOOKS = (8, 16, 32)  # 8: the fewest rounds with a 99% sign-test interval (min to max); a 12 MP round is 1.2 s
OPTION_SECONDS = 6.0
# The candidates, in the order they are tried (each on top of those adopted before it). CPU pinning
# off: OpenVINO pins its stream threads by default; on a shared 2-core VM (Intel AMX host, 2026-12-03,
# single request, interleaved rounds) unpinned ran 0.951-0.958x the pinned time on the student and IAT.
OPTION_CANDIDATES = ({"denormals": True}, {"precision": "bf16"}, {"cpu_pinning": False})
# Scheduling settings that are not candidates, with the measurement that says why: one frame is one
# synchronous request (the bench, enhance and a camera loop run frame by frame), so what splits the
# threads between requests never in flight together only lengthens it. Measured on the FP32 IRs of
# iat_student and IAT (Intel AMX host, 2 threads, interleaved rounds, per-round ratio to LATENCY):
NOT_CANDIDATES = (
    ({"hint": "THROUGHPUT"}, "2 streams of 1 thread for one request at a time: 1.87-1.95x the LATENCY hint's time (measured)"),
    ({"streams": 2}, "a second stream takes half the threads from the one request: 1.80-1.93x the time (measured)"),
)
# Fewer threads than the target's: on a host with one thread per core, 1 of 2 threads took 1.75-1.82x the
# time (same IRs and rounds). With SMT, one thread per core might not lose; that was never measured here.
FEWER_THREADS_MEASURED = "1 of 2 threads: 1.75-1.82x the time on a host with one thread per core (measured)"
# OpenVINO's f16 inference precision on an Intel AMX host with AVX512-FP16 and no AMX-FP16 (2026-12-03,
# 2 threads, the FP32 IRs at 400x600, 8 interleaved rounds, twice): no faster than BF16 anywhere, and
# slower than FP32 on the student (``f16_not_a_candidate``)
F16_MEASURED = ("f16 took 1.7-2.8x BF16's time (IAT 131-133 vs 74-79 ms, iat_student 108 vs 39 ms) and 0.91x / 1.51x "
                "FP32's (measured)")


def preset_floats(ctx: Context) -> tuple[list[ptq.NodeInfo], list[FloatNode]]:
    """(all nodes of the simplified graph, the compute nodes the preset keeps float, with reasons)."""
    simplified = ctx.model_dir / ctx.records["simplified"].path
    nodes = ptq.graph_nodes(ctx.model_dir / ctx.records["onnx"].path, simplified)
    return nodes, ptq.preset_float_nodes(nodes, ctx.spec.preset, ptq.first_compute_node(simplified))


def find_float_nodes(ctx: Context, budget: dict, plan: PrecisionPlan):
    """Run the preset, then accuracy control if needed, at ctx's resolution.

    Returns (float nodes with reasons, all graph nodes, the INT8 model, validation PSNRs) and logs
    each step into plan.search.
    """
    preset = ctx.spec.preset
    train, val, val_refs, calib_info = load_split(ctx)
    model = ov_model(ctx)
    nodes, floats = preset_floats(ctx)
    at = f" at {ctx.resolution[0]}x{ctx.resolution[1]}"

    aim = {k: v + SEARCH_MARGIN_DB for k, v in budget.items()}
    scope = ptq.ignored_scope([f.name for f in floats], plan.float_op_types)
    # One NNCF call: it quantizes with the preset, validates that, and reverts layers only when it misses
    # (a separate preset quantization first cost LLPackNet 2.2 s and IAT 3.3 s of every search)
    validations: list[list[float]] = []
    int8 = ptq.accuracy_control_ov(model, train, val, val_refs, scope, preset, aim, max_iterations=12, validations=validations)
    with openvino.runner(int8, ctx.target.threads) as runner:
        psnrs = ptq.evaluate(runner, val, val_refs)
    preset_psnrs = validations[1] if len(validations) > 1 else psnrs  # the FP32 model's validation comes first
    plan.search.append({"step": "preset" + at, "float_nodes": len(floats), "validation": ptq.summary(preset_psnrs)})
    log.info("%s preset plan: %.1f dB mean on validation%s", ctx.spec.name, np.mean(preset_psnrs), at)
    if len(validations) > 2:  # the preset missed: accuracy control ranked and reverted layers
        plan.search.append({"step": "nncf accuracy control" + at, "validation": ptq.summary(psnrs)})

    # What actually stayed float, read off the INT8 model itself.
    by_name = {n.name: n for n in nodes}
    reasons = {f.name: f.reason for f in floats}
    chosen = [
        FloatNode(
            name,
            by_name[name].op if name in by_name else "?",
            by_name[name].module if name in by_name else "",
            reasons.get(name, "reverted to float by accuracy control"),
        )
        for name in float_compute_ops(int8)
    ]
    plan.calibration = calib_info
    return chosen, nodes, int8, psnrs


def preset_f32_layers(ctx: Context, runner: Runner) -> list[str] | None:
    """The OpenVINO compute nodes of ``runner``'s graph that the preset's ``bf16_f32_modules`` name
    (by module-path prefix, as ``float_modules``): where the f32-layer search under BF16 starts;
    None when the preset names none."""
    modules = [m for m, _ in ctx.spec.preset.bf16_f32_modules]
    if not modules:
        return None
    nodes, _ = preset_floats(ctx)
    names = {n.name for n in nodes if any(n.module == m or n.module.startswith(m + ".") for m in modules)}
    return [c for c in runner.compute_nodes() if c.split("/")[0] in names]


PROBE_FRAMES = 2  # calibration frames of the speed probe's INT8 graph (its ranges' values do not change its speed)
# The probe on a smaller search export is a screen, not the ship rule's timing (that one runs at full size
# once a plan exists): its rounds stop at this cap. LLPackNet's INT8 against BF16 at 512x768 (1.05x
# median, a tie) ran the ship rule's whole 20 s cap, a third of the model's build.
SCREEN_SECONDS = 8.0


def speed_first(ctx: Context) -> bool:
    """Whether INT8's speed is probed before calibration: on a CPU target, when the rule decides (no --ship pin)."""
    return cpu_timed(ctx) and ctx.request.ship == "auto"


def probe_speed(ctx: Context, plan: PrecisionPlan, full_size: bool) -> tuple[dict, set[str]]:
    """The preset's INT8 graph, calibrated on PROBE_FRAMES frames, timed against FP32 at ctx's size.

    Returns (the speed record, the names of the float compute nodes of the graph that was timed).
    ``full_size``: ctx is the deployed size, so this is the ship rule's own timing
    (``latency_vs_fp32``: the FP32 runtime options are chosen first and INT8 must beat the fastest
    FP32); else ctx is the smaller search export, and FP32 there runs with the options plan.runtime
    already holds for the deployed size (``search`` chooses them first), OpenVINO's defaults when it
    holds none. Recorded as a step of plan.search.
    """
    _, floats = preset_floats(ctx)
    frames = full_size_calibration(ctx, size=PROBE_FRAMES)
    scope = ptq.ignored_scope([f.name for f in floats], plan.float_op_types)
    int8 = ptq.quantize_ov(ov_model(ctx), frames, scope, ctx.spec.preset, for_timing=True)
    options = {}
    with openvino.runner(int8, ctx.target.threads) as runner:
        if full_size:
            record = latency_vs_fp32(ctx, runner, plan)
        else:
            with fp32_runner_for_timing(ctx) as fp32:
                chosen = fp32_options(ctx, plan, fp32) if plan.runtime else ChosenOptions(fp32, fp32, {})
                options = chosen.options
                try:
                    record = time_speedup(chosen.runner, runner, ctx.frames(), seconds=SCREEN_SECONDS)
                finally:
                    chosen.close_variant()
    timed = set(float_compute_ops(int8))
    against = f" (FP32 with the options chosen at full size: {options})" if options else ""
    plan.search.append({
        "step": f"speed probe: the preset INT8 graph vs FP32 at {ctx.resolution[0]}x{ctx.resolution[1]}{against}",
        "calibration_frames": PROBE_FRAMES, "float_nodes": len(timed), "speedup": record["speedup"],
    })
    return record, timed


def int8_cannot_pay(speed: dict, threshold: float = MIN_SPEEDUP, fp32_options: dict | None = None) -> str | None:
    """Why no INT8 plan can ship, from the probe's speed record ({"speedup": ...}), or None when it may.
    ``fp32_options``: the runtime options the FP32 side ran with (named in the reason)."""
    record = speed["speedup"]
    if record["verdict"] == "faster":
        return None
    fp32 = f"FP32 (runtime options {fp32_options})" if fp32_options else "FP32"
    return (f"the preset INT8 graph, the most INT8 the search can reach, was not shown {threshold}x faster than {fp32} on "
            f"this host ({record['verdict']}, median {record['median']:.3f}x over {record['rounds']} rounds); INT8 "
            "cannot pay here, so it was not calibrated, searched or verified")


def ship_float_unsearched(ctx: Context, plan: PrecisionPlan, probe: dict | None, why: str, budget: dict,
                          probed_at: tuple[int, int] | None, sctx: Context | None = None) -> None:
    """Fill ``plan`` for a float artifact decided before any INT8 plan reached full size: by the
    speed probe alone (``int8_cannot_pay``), or because accuracy control on the search export
    returned every compute layer to float (nothing left to apply, verify or time at full size).

    ``probed_at``: the search size when the probe ran on the smaller export; the deployed FP32's
    runtime options are then still chosen for the full size (CPU targets), timed on ``sctx``, that
    export (at full size, LLPackNet's took 30 s). A ``--ship int8`` pin is refused with the reason.
    """
    if probed_at is not None and cpu_timed(ctx) and ctx.target.runtime == "openvino":
        choose_full_size_fp32_options(ctx, plan, budget, sctx)
    if probe is None:
        plan.latency_ms = {"unmeasured": why}
    else:
        plan.latency_ms = {**probe, "resolution": f"{probed_at[0]}x{probed_at[1]}"} if probed_at is not None else probe
    requested = ctx.request.ship
    plan.decision = "fp32"
    plan.reason = f"--ship int8 refused: {why}; INT8 never ships outside the fidelity budget" if requested == "int8" else why
    plan.ship = {"requested": requested, "pinned": requested != "auto", "rule_decision": "fp32", "rule_reason": why}


def choose_full_size_fp32_options(ctx: Context, plan: PrecisionPlan, budget: dict, sctx: Context | None = None) -> None:
    """The deployed FP32's runtime options at ctx's (full) size, into plan.runtime; once per search.

    ``sctx``: the smaller search export of a 12 MP model, where the candidates are timed: 8 rounds
    of LLPackNet's FP32 at full size took 10.4 s to call denormal flushing a tie, a sixth of its
    build, and an option acts on the arithmetic, not on the frame size. Their fidelity is still
    measured on full-size frames, and the bench times the shipped artifact at full size.
    """
    if "fp32" in plan.runtime.get("options", {}):
        return
    with fp32_runner_for_timing(ctx) as fp32:
        if sctx is None or sctx is ctx:
            choose_runtime_options(ctx, plan, "fp32", fp32, budget).close_variant()
            return
        with fp32_runner_for_timing(sctx) as small:
            size = f"{sctx.resolution[0]}x{sctx.resolution[1]}"
            choose_runtime_options(ctx, plan, "fp32", fp32, budget, timing=(small, sctx.frames(), size)).close_variant()


def search(ctx: Context, budget: dict) -> tuple[PrecisionPlan, object | None]:
    """Find the most-INT8 plan meeting the budget; returns the plan and the INT8 model (or None)."""
    plan = PrecisionPlan(ctx.spec.name, ctx.target.name, "fp32", "", budget, quantize_ops=list(ctx.spec.preset.quantize_ops))
    small = search_resolution(ctx)
    if small is not None:  # search on a smaller export of the same model, then quantize the full frame with that plan
        check_full_size_calibration(ctx)  # images too small for the full frame: fail now, not after the search
    sctx = ctx if small is None else export_at(ctx, small, dynamic=False, folder=".search")
    probe, probed_floats = None, None
    if speed_first(ctx):
        if small is not None and ctx.target.runtime == "openvino":
            # INT8 must beat the FP32 that would ship, not OpenVINO's defaults: LLPackNet's INT8 ran 3.25x
            # faster than default FP32 at 512x768, BF16 3.2x at full size, and the 45 s INT8 search that
            # followed was futile. The FP32 options are chosen at full size either way (the float artifact
            # ships them; an INT8 plan is timed against them), so choosing them first costs nothing.
            choose_full_size_fp32_options(ctx, plan, budget, sctx)
        probe, probed_floats = probe_speed(sctx, plan, full_size=small is None)
        why = int8_cannot_pay(probe, fp32_options=plan.runtime.get("options", {}).get("fp32"))
        if why:
            ship_float_unsearched(ctx, plan, probe, why, budget, small, sctx)
            log.info("%s: fp32 (%s)", ctx.spec.name, why)
            return plan, None
    floats, nodes, int8, psnrs = find_float_nodes(sctx, budget, plan)
    plan.fidelity["validation"] = ptq.summary(psnrs)
    float_names = {f.name for f in floats}
    quantized = sorted(n.name for n in nodes if n.op in ptq.COMPUTE_OPS and n.name not in float_names)
    if small is not None:
        plan.fidelity["validation"]["resolution"] = f"{small[0]}x{small[1]}"
        if not quantized:
            plan.float_nodes = floats  # accuracy control returned every compute layer to float
            why = (f"no layer could stay INT8 within the budget: accuracy control at {small[0]}x{small[1]} returned every "
                   "compute layer to float, so no INT8 plan was applied at full size, verified or timed")
            ship_float_unsearched(ctx, plan, probe, why, budget, small, sctx)
            return plan, None
        del sctx
        from_crops = quantize_from_crops(ctx, [f.name for f in floats], plan, small)
        if from_crops is not None:
            int8, info = from_crops
            plan.calibration.update(info)
        else:
            calib = full_size_calibration(ctx)
            scope = ptq.ignored_scope([f.name for f in floats], plan.float_op_types)
            int8 = ptq.quantize_ov(ov_model(ctx), calib, scope, ctx.spec.preset)
            plan.calibration["full_size_images"] = len(calib)
            plan.calibration["ranges_from"] = "full-size frames"
            del calib
        plan.search.append(
            {"step": f"plan applied at {ctx.resolution[0]}x{ctx.resolution[1]}", "float_nodes": len(floats)}
        )
    plan.float_nodes, plan.quantized_nodes = floats, quantized

    with openvino.runner(int8, ctx.target.threads) as int8_runner:
        # the ship rule's fidelity on the wider eval set (Context.wide_size): 4 frames missed IAT INT8's 24 dB ones
        wide_frames, wide_refs = ctx.wide_eval()
        plan.fidelity["eval"] = {**measure(run_frames(int8_runner, wide_frames), wide_refs), "runtime": "openvino"}
        if probe is not None and small is None and float_names == probed_floats:
            # the graph the probe timed at this size, the same float nodes: its timing is the ship rule's
            plan.latency_ms = {**probe, "timed": "the speed probe's graph (the same float nodes as this plan)"}
        else:
            plan.latency_ms = latency_vs_fp32(ctx, int8_runner, plan)
        decide(plan, budget, ship=ctx.request.ship)
        if plan.decision == "int8" and plan.runtime:
            choose_runtime_options(ctx, plan, "int8", int8_runner, budget).close_variant()

    log.info("%s: %s (%s)", ctx.spec.name, plan.decision, plan.reason)
    return plan, int8 if plan.decision == "int8" else None


def latency_vs_fp32(ctx: Context, int8_runner: Runner, plan: PrecisionPlan | None = None) -> dict:
    """FP32 vs INT8 speed on this host (``time_speedup``); unmeasured for a GPU target.

    With ``plan`` (an OpenVINO target), the FP32 runtime options are searched first
    (``choose_runtime_options``, recorded in plan.runtime) and INT8, with OpenVINO's default
    options, must beat the fastest FP32 (INT8's own options are searched only once it ships).
    Without ``plan`` FP32 runs as loaded.
    """
    if not cpu_timed(ctx):
        why = f"{ctx.target.runtime} on {ctx.target.device}: a CPU runtime's timing says nothing about it; the bench on the device measures it"
        return {"unmeasured": why}
    with fp32_runner_for_timing(ctx) as fp32_runner:
        if plan is not None and ctx.target.runtime == "openvino":
            chosen = fp32_options(ctx, plan, fp32_runner)
            try:  # the FP32 side's options: plan.runtime["options"]["fp32"]
                return time_speedup(chosen.runner, int8_runner, ctx.frames())
            finally:
                chosen.close_variant()
        return time_speedup(fp32_runner, int8_runner, ctx.frames())


def fp32_options(ctx: Context, plan: PrecisionPlan, base: Runner) -> ChosenOptions:
    """The FP32 runtime options: those plan.runtime already holds (the speed probe chose them), else searched now."""
    options = plan.runtime.get("options", {}).get("fp32")
    if options is None:
        return choose_runtime_options(ctx, plan, "fp32", base, plan.budget)
    return ChosenOptions(base, base.variant({**plan.runtime["pinned"], **options}) if options else base, options)


class ChosenOptions:
    """The outcome of ``choose_runtime_options``: the options and a runner compiled with them
    (the base runner itself when nothing was adopted; ``close_variant`` closes only a variant)."""

    def __init__(self, base: Runner, runner: Runner, options: dict) -> None:
        self.base, self.runner, self.options = base, runner, options

    def close_variant(self) -> None:
        if self.runner is not self.base:
            self.runner.close()


def runtime_host(ctx: Context) -> dict:
    """The host a runtime-option decision is made on (it holds for that CPU and thread count only)."""
    caps = cpu_capabilities()
    return {"cpu": caps["cpu"], "machine": caps["machine"], "flags": caps["flags"], "threads": ctx.target.resolved_threads(),
            "openvino": versions().get("openvino")}


def fewer_threads_not_a_candidate(caps: dict) -> str:
    """Why fewer threads than the target's are not searched: the target fixes the count, and what was measured."""
    why = f"the target fixes its thread count (targets.yaml); {FEWER_THREADS_MEASURED}"
    if (caps.get("threads_per_core") or 1) > 1:
        why += (f"; this host runs {caps['threads_per_core']} threads per core, where one thread per core was not measured: "
                "set threads in the target to try it")
    return why


def f16_not_a_candidate(caps: dict) -> str:
    """Why OpenVINO's f16 inference precision is not searched on this host (``cpu_capabilities``)."""
    if not caps.get("fp16"):
        return f"the CPU has no native FP16 arithmetic ({' / '.join(FP16_FLAGS)} not in /proc/cpuinfo flags)"
    if "amx_fp16" not in caps["fp16"] and caps["bf16"]:
        return (f"AVX512-FP16 without AMX-FP16, next to native BF16: {F16_MEASURED}; BF16 is this host's reduced "
                "precision (it has the same 8-bit exponent as FP32, and its f32-layer search keeps the image)")
    host = "an AMX-FP16 host" if "amx_fp16" in caps["fp16"] else "a host with AVX512-FP16 and no native BF16"
    return (f"{host}: not searched, since this project has not measured f16 on one; pin "
            "`precision: f16` in the target's options to use it")


def not_candidates(caps: dict, pinned: dict) -> list[tuple[dict, str]]:
    """(options, why) of every setting the FP32 search records as not a candidate on this host:
    NOT_CANDIDATES, fewer threads and, unless the target pins the precision, f16."""
    records = [*NOT_CANDIDATES, ({"threads": "fewer than the target's"}, fewer_threads_not_a_candidate(caps))]
    if "precision" not in pinned:
        records.append(({"precision": "f16"}, f16_not_a_candidate(caps)))
    return records


def option_candidates(target, precision: str, caps: dict | None = None) -> tuple[list[dict], list[dict], dict]:
    """(candidate option sets to try in order, records of those that are not candidates and why,
    the options the target fixes). A target option (targets.yaml ``options``) is the user's:
    never searched, never changed. ``caps``: ``cpu_capabilities()`` of this host by default."""
    pinned = {k: v for k, v in target.load_options().items() if k in RUNTIME_OPTIONS}
    caps = caps or cpu_capabilities()
    tried, skipped = [], []
    for candidate in OPTION_CANDIDATES:
        fixed = [k for k in candidate if k in pinned]
        if candidate.get("precision") == "bf16" and not caps["bf16"]:
            skipped.append({"precision": precision, "options": dict(candidate), "not_a_candidate": caps["bf16_why"]})
        elif fixed:
            skipped.append({"precision": precision, "options": dict(candidate), "not_a_candidate":
                            f"target {target.name} sets {', '.join(f'{k}: {pinned[k]}' for k in fixed)} (its options are never searched)"})
        else:
            tried.append(dict(candidate))
    if precision == "fp32":  # recorded once per plan, with the FP32 search
        skipped += [{"precision": precision, "options": dict(options), "not_a_candidate": why}
                    for options, why in not_candidates(caps, pinned)]
    return tried, skipped, pinned


def choose_runtime_options(ctx: Context, plan: PrecisionPlan, precision: str, base: Runner, budget: dict,
                           seconds: float = OPTION_SECONDS, looks: tuple[int, ...] = OPTION_LOOKS,
                           timing: tuple[Runner, list[np.ndarray], str] | None = None) -> ChosenOptions:
    """The fastest runtime options for ``precision`` within the budget, greedily; recorded in plan.runtime.

    ``base`` runs with no runtime option set (OpenVINO's defaults, f32). Each candidate of
    ``option_candidates`` is added to the options adopted so far: its runner (``base.variant``)
    is measured on the eval images against ``option_floor`` and, if it passes, timed against the
    current runner (``compare_speed``, threshold OPTION_MIN_SPEEDUP); it is adopted when shown
    faster. A tie or a slower candidate keeps the current options.

    ``timing``: (the same graph's FP32 runner at a smaller size, its frames, that size) to time the
    candidates on instead (``choose_full_size_fp32_options``: a 12 MP model), before their fidelity,
    which is measured at ctx's size and only for a candidate shown faster.
    """
    frames, refs = ctx.frames(), ctx.references()
    tried, skipped, pinned = option_candidates(ctx.target, precision)
    runtime = plan.runtime
    if not runtime:
        runtime.update(host=runtime_host(ctx), source_sha256=ctx.records["simplified"].sha256, options={},
                       pinned=pinned, candidates=[])
    if precision != "fp32":  # an option that did not pay on the all-float graph will not on a mostly-INT8 one
        reasons = [_lost_on_fp32(runtime["candidates"], c) for c in tried]
        skipped += [{"precision": precision, "options": dict(c), "not_a_candidate": why}
                    for c, why in zip(tried, reasons, strict=True) if why]
        tried = [c for c, why in zip(tried, reasons, strict=True) if not why]
    runtime["candidates"] += skipped
    original = base
    if base.runtime_options != {"precision": "f32", **pinned}:
        # e.g. an IR whose sidecar carries an earlier decision: start from the defaults (and the target's pins)
        base = base.variant(pinned)
    current, options = base, {}
    for candidate in tried:
        trial = {**options, **candidate}
        record: dict = {"precision": precision, "options": trial, "against": dict(options)}
        speed = None
        if timing is not None:
            # timed first: on the smaller export a timing is cheap, and a candidate that is not faster
            # needs no fidelity at full size (LLPackNet: 4 frames of 12 MP, 3 s, for denormal flushing's tie)
            speed = _compare_smaller(timing, {**pinned, **options}, {**pinned, **trial}, seconds, looks)
            if speed["speedup"]["verdict"] != "faster":
                record["speed"] = speed
                record["verdict"] = f"kept the current options ({speed['speedup']['verdict']}; its fidelity was not measured)"
                runtime["candidates"].append(record)
                log.info("%s %s runtime options %s: %s", ctx.spec.name, precision, trial, record["verdict"])
                continue
        runner = base.variant({**pinned, **trial})
        wide_psnrs = None
        scheduling = set(candidate) <= set(SCHEDULING_OPTIONS)
        if scheduling:
            # where the threads run changes no result (tests/test_runtime_options.py: bit-identical outputs),
            # so the options adopted so far keep the fidelity they were measured at: a BF16 plan's 48-frame
            # check again was most of this candidate's cost (IAT: 13 s of a 54 s build)
            record["fidelity"] = "unchanged: a scheduling option only (the options adopted before it were measured)"
            passed = True
        else:
            fid = measure(run_frames(runner, frames), refs)
            floor, why = option_floor(precision, trial, budget)
            record["fidelity"] = {"psnr_db": fid["psnr_db"], "nonfinite": fid["nonfinite"], "floor_db": list(floor),
                                  "floor": why, "worst": fid.get("worst")}
            passed = within_budget(fid, *floor)
        if passed and not scheduling and reduces_precision(trial) and ctx.wide_size() > len(frames):
            # a reduced precision's error varies from frame to frame: confirmed on the wider eval set
            record["fidelity"]["wide"], wide_psnrs = _wide_fidelity(ctx, runner)
            passed = within_budget(record["fidelity"]["wide"], *floor)
        if not passed and reduces_precision(trial) and precision == "fp32":
            # the error may sit in a few layers: keep the fewest in f32 that bring it to the floor
            wide_frames, wide_refs = ctx.wide_eval()
            layers, f32_search = find_f32_layers(base, {**pinned, **trial}, wide_frames, wide_refs, floor, reduced=wide_psnrs,
                                                 start=preset_f32_layers(ctx, base))
            record["f32_layers_search"] = f32_search
            if layers:
                runner.close()
                trial = {**trial, "f32_layers": layers}
                record["options"] = trial
                runner = base.variant({**pinned, **trial})
                record["fidelity"]["wide"] = f32_search["whole_set"]  # measured by the search with these layers
                passed = within_budget(record["fidelity"]["wide"], *floor)
        if not passed:
            record["verdict"] = "misses the fidelity floor"
            runner.close()
        else:
            if timing is None:
                speed = compare_speed(current, runner, frames, seconds=seconds, looks=looks,
                                      threshold=OPTION_MIN_SPEEDUP, labels=("current", "candidate"))
            elif "f32_layers" in trial:  # timed again with the layers the fidelity search kept in f32
                speed = _compare_smaller(timing, {**pinned, **options}, {**pinned, **trial}, seconds, looks)
            record["speed"] = speed
            adopted = speed["speedup"]["verdict"] == "faster"
            record["verdict"] = "adopted" if adopted else f"kept the current options ({speed['speedup']['verdict']})"
            if adopted:
                if current is not original:
                    current.close()
                current, options = runner, trial
            else:
                runner.close()
        runtime["candidates"].append(record)
        log.info("%s %s runtime options %s: %s", ctx.spec.name, precision, trial, record["verdict"])
    if base is not original and base is not current:
        base.close()
    runtime["options"][precision] = options
    if precision == "fp32" and ctx.target.runtime == "openvino":
        runtime["other_runtimes"] = [onnxruntime_candidate(ctx, current, options)]
    return ChosenOptions(original, current, options)


ORT_SCREEN_RATIO = 1.5  # ONNX Runtime is timed side by side only when its verification runs were within this of OpenVINO


def onnxruntime_candidate(ctx: Context, openvino_fp32: Runner, options: dict) -> dict:
    """ONNX Runtime as a candidate runtime for the FP32 graph, against OpenVINO with the chosen options.

    A screen first, at no cost: the simplify stage verified the same ONNX file in ONNX Runtime on the
    eval frames (denormals flushed, the target's threads) and recorded each call's time; when their
    median (the first call left out) is more than ORT_SCREEN_RATIO x OpenVINO's, the record says so
    with both figures (IAT on an Intel AMX host: 0.8 s a frame against 0.06 s). Otherwise the two
    are timed side by side (``compare_speed``). ONNX Runtime ships on the target that names it
    (x86-cpu-ort): when it is faster here the record and the notes say so; this target's artifact
    stays the OpenVINO IR.
    """
    record: dict = {"runtime": "onnxruntime", "precision": "fp32", "options": dict(ONNX_CHECKERS["onnxruntime"]),
                    "against": {"runtime": "openvino", "options": dict(options)}}
    verified = ctx.records["simplified"].fidelity or {}
    calls = verified.get("ms_per_frame") or []
    ort_calls = calls[1:] or calls  # the first call sets up
    if verified.get("runtime") != "onnxruntime" or not ort_calls:
        record["verdict"] = "not measured: the simplified ONNX was not verified in ONNX Runtime with timings"
        return record
    frames = ctx.frames()
    openvino_fp32(frames[0])  # untimed: a first call
    ov_ms = statistics.median(time_call(openvino_fp32, frames[i % len(frames)]) for i in range(3))
    ort_ms = statistics.median(ort_calls)
    record["screen"] = {"onnxruntime_ms": round(ort_ms, 2), "openvino_ms": round(ov_ms, 2), "ratio": ORT_SCREEN_RATIO,
                        "onnxruntime_from": "the simplify stage's verification calls (the first left out)"}
    if ort_ms > ORT_SCREEN_RATIO * ov_ms:
        record["verdict"] = f"not a candidate: {ort_ms / ov_ms:.1f}x slower than OpenVINO in the screen"
        return record
    simplified = ctx.model_dir / ctx.records["simplified"].path
    load = {**ONNX_CHECKERS["onnxruntime"], "threads": ctx.target.resolved_threads()}
    with get_backend("onnxruntime").load(simplified, device="cpu", options=load) as ort:
        speed = compare_speed(openvino_fp32, ort, frames, seconds=OPTION_SECONDS, looks=OPTION_LOOKS,
                              threshold=OPTION_MIN_SPEEDUP, labels=("openvino", "onnxruntime"))
    record["speed"] = speed
    if speed["speedup"]["verdict"] == "faster":
        record["verdict"] = "faster than OpenVINO here: the x86-cpu-ort target ships it"
        ctx.notes.append(f"ONNX Runtime ran the FP32 graph {speed['speedup']['median']:.2f}x faster than OpenVINO on this host "
                         "(precision_plan.yaml runtime.other_runtimes); build for target x86-cpu-ort to ship it")
    else:
        record["verdict"] = f"OpenVINO kept ({speed['speedup']['verdict']})"
    return record


def _compare_smaller(timing: tuple[Runner, list[np.ndarray], str], current: dict, candidate: dict, seconds: float,
                     looks: tuple[int, ...]) -> dict:
    """``compare_speed`` of two option sets on the smaller export of ``timing`` (runner, frames, size)."""
    small, frames, size = timing
    a = small.variant(current) if current else small
    b = small.variant(candidate)
    try:
        speed = compare_speed(a, b, frames, seconds=seconds, looks=looks, threshold=OPTION_MIN_SPEEDUP,
                              labels=("current", "candidate"))
    finally:
        b.close()
        if a is not small:
            a.close()
    speed["timed_at"] = f"{size}: the search export of the same graph (fidelity at full size)"
    return speed


def _wide_fidelity(ctx: Context, runner: Runner) -> tuple[dict, list[float]]:
    """(a candidate's fidelity on the wider eval set (Context.wide_eval) as a candidate records it, each frame's PSNR)."""
    wide_frames, wide_refs = ctx.wide_eval()
    wide = measure(run_frames(runner, wide_frames), wide_refs)
    return fidelity_summary(wide), frame_psnrs(wide)


def option_floor(precision: str, options: dict, budget: dict) -> tuple[tuple[float, float], str]:
    """((mean, min) PSNR floor, why) a runtime-option candidate must meet on the eval images.

    An option that keeps the arithmetic's precision (denormal flushing) must leave an FP32 IR
    what the export verified it to be: the float-stage FP32_MIN_PSNR_DB, and an INT8 IR within the
    budget. One that lowers it (BF16) is a reduced precision, held like the INT8 search to the
    budget plus SEARCH_MARGIN_DB (the worst frame included: the budget's min): the eval frames
    are a sample of what the bench and the camera see, and BF16's error is spread over every layer.
    """
    floor = (budget["psnr_mean_db"], budget["psnr_min_db"])
    if reduces_precision(options):
        return ((floor[0] + SEARCH_MARGIN_DB, floor[1] + SEARCH_MARGIN_DB),
                f"{options['precision']} float layers: a reduced precision, held to the budget plus the {SEARCH_MARGIN_DB:g} dB search margin")
    if precision == "fp32":
        exact = (max(floor[0], FP32_MIN_PSNR_DB), max(floor[1], FP32_MIN_PSNR_DB))
        return exact, "keeps FP32: the float-stage floor"
    return floor, "the target budget"


def _lost_on_fp32(records: list[dict], candidate: dict) -> str | None:
    """Why ``candidate`` is not worth timing on INT8: it was timed on FP32 and not shown faster.

    Denormal flushing and BF16 act on the float operations, and an INT8 graph has fewer of them
    than the FP32 one, so a tie there is a tie here; CPU pinning acts on the same threads either way.
    A candidate that missed the FP32 floor (the stricter float-stage floor) is still tried: INT8 is
    held to the target budget only.
    """
    for record in records:
        if record.get("precision") != "fp32" or "speed" not in record:
            continue
        if all(record["options"].get(k) == v for k, v in candidate.items()):
            verdict = record["speed"]["speedup"]["verdict"]
            if verdict != "faster":
                return f"not shown faster on FP32 on this host ({verdict}); it acts on float operations, which INT8 has fewer of"
    return None


def cpu_timed(ctx: Context) -> bool:
    """Whether this host can time the target's runtime: CPU targets yes; GPU targets never here."""
    return ctx.target.runtime in ("openvino", "onnxruntime")


def time_speedup(fp32: Runner, int8: Runner, frames: list[np.ndarray], seconds: float = SPEED_SECONDS,
                 looks: tuple[int, ...] = SPEED_LOOKS) -> dict:
    """FP32 vs INT8 for the ship rule: ``compare_speed`` at MIN_SPEEDUP, recorded as fp32/int8."""
    return compare_speed(fp32, int8, frames, seconds=seconds, looks=looks)


def compare_speed(fp32: Runner, int8: Runner, frames: list[np.ndarray], seconds: float = SPEED_SECONDS,
                  looks: tuple[int, ...] = SPEED_LOOKS, threshold: float = MIN_SPEEDUP,
                  labels: tuple[str, str] = ("fp32", "int8")) -> dict:
    """Interleaved A/B rounds until the speed-up's interval clears ``threshold``, or a tie at the cap.

    A is ``fp32`` (the baseline), B ``int8`` (the candidate); ``labels`` name them in the record.

    Each round times one FP32 and one INT8 run on the same frame (ptq.paired_rounds: the order
    alternates), both in this process or, when their denormal modes differ, each in its own
    (runtimes.isolation.timers; the record's ``processes`` says which). After looks[0] rounds,
    then looks[1], ... the interval of ``speed_verdict`` is
    checked; timing stops at the first look that separates it from MIN_SPEEDUP, after looks[-1]
    rounds, or when ``seconds`` have passed (looks[0] rounds always run). At most len(looks) looks.
    Returns ``speed_record`` of the rounds, with the stopping reason and the time taken.
    """
    with timers({"a": fp32, "b": int8}, frames) as calls:
        record = _compare_rounds(calls["a"], calls["b"], seconds, looks, threshold, labels)
    children = [call for call in calls.values() if isinstance(call, ChildRunner)]
    record["processes"] = (
        "one per side: their denormal modes differ, which one process cannot keep apart (runtimes.isolation)"
        if children else "one"
    )
    if children:  # memory the timing processes held beside this one's
        record["processes_peak_rss_mb"] = [child.peak_rss_mb for child in children]
    return record


def _compare_rounds(fp32, int8, seconds: float, looks: tuple[int, ...], threshold: float, labels: tuple[str, str]) -> dict:
    """``compare_speed``'s rounds and looks, on two timed calls (frame index -> ms)."""
    ptq.warm_up((fp32, int8))
    fp32_ms: list[float] = []
    int8_ms: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    record: dict = {}
    for number, count in enumerate(looks, 1):
        ptq.paired_rounds(fp32, int8, fp32_ms, int8_ms, count, None if number == 1 else deadline)
        capped = len(fp32_ms) < count or (time.perf_counter() >= deadline and count < looks[-1])
        final = capped or count == looks[-1]
        record = speed_record(fp32_ms, int8_ms, final=final, threshold=threshold, labels=labels)
        speed = record["speedup"]
        speed["looks"] = number
        if speed["verdict"] in ("faster", "not_faster"):
            side = "above" if speed["verdict"] == "faster" else "below"
            speed["stopped"] = f"the interval lay wholly {side} {threshold}x after {speed['rounds']} rounds"
            break
        if final:
            speed["stopped"] = (
                f"time cap ({seconds:g} s) after {speed['rounds']} rounds" if capped else f"round cap ({count} rounds)"
            )
            break
    record["speedup"]["seconds"] = round(time.perf_counter() - start, 2)
    return record


def median_interval(values: list[float], confidence: float = SPEED_CONFIDENCE) -> tuple[float, float] | None:
    """Distribution-free confidence interval for the median: the sign test's order statistics.

    With n values, the count below the true median is Binomial(n, 1/2) whatever the distribution
    (only independence is assumed), so [x_(k), x_(n+1-k)] of the sorted values covers the median
    with probability 1 - 2 P(Binomial(n, 1/2) <= k - 1); k is the largest for which that is at least
    ``confidence``. None when n is too small for that confidence (at 0.99: fewer than 8 values).
    Deterministic: the same samples give the same interval (no resampling, unlike a bootstrap).
    """
    n = len(values)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0
    while k < n and below + math.comb(n, k) / 2**n <= tail:
        below += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k]


def speed_verdict(fp32_ms: list[float], int8_ms: list[float], final: bool = True,
                  threshold: float = MIN_SPEEDUP, confidence: float = SPEED_CONFIDENCE) -> dict:
    """Whether INT8 is shown ``threshold`` x faster than FP32, from paired per-round times (no timing here).

    The statistic is the median of the per-round ratios FP32 ms / INT8 ms: each round's two runs
    share that moment's load, so a burst of load moves both and cancels in the ratio, and the
    median ignores the rounds a burst hit on one side only. Its interval is ``median_interval``
    (sign test, distribution-free). Verdict: "faster" when the whole interval is >= threshold,
    "not_faster" when it is all below, else "undecided" (more rounds may separate it) or, with
    ``final``, "tie" (timing stopped first; a tie ships TIE_SHIPS).
    """
    if len(fp32_ms) != len(int8_ms) or not fp32_ms:
        msg = f"speed_verdict needs paired rounds: {len(fp32_ms)} FP32 and {len(int8_ms)} INT8 times"
        raise ValueError(msg)
    ratios = [float(f) / max(float(i), 1e-6) for f, i in zip(fp32_ms, int8_ms, strict=True)]
    interval = median_interval(ratios, confidence)
    if interval is not None and interval[0] >= threshold:
        verdict = "faster"
    elif interval is not None and interval[1] < threshold:
        verdict = "not_faster"
    else:
        verdict = "tie" if final else "undecided"
    return {
        "statistic": "median of per-round FP32/INT8 time ratios",
        "median": round(statistics.median(ratios), 4),
        "interval": [round(interval[0], 4), round(interval[1], 4)] if interval else None,
        "interval_method": "sign test (binomial order statistics), distribution-free",
        "confidence": confidence,
        "threshold": threshold,
        "rounds": len(ratios),
        "verdict": verdict,
        "tie_ships": TIE_SHIPS,
    }


def speed_record(fp32_ms: list[float], int8_ms: list[float], final: bool = True, threshold: float = MIN_SPEEDUP,
                 labels: tuple[str, str] = ("fp32", "int8")) -> dict:
    """The plan's latency_ms: medians, the speed verdict and every round's times (ms, 3 decimals).

    The verdict is computed from the rounded times that are recorded, so the plan's samples
    reproduce its decision exactly (``speed_verdict(**plan.latency_ms["samples_ms"])`` for the
    ship rule's fp32/int8 labels; other labels record the two sides under their own names).
    """
    fp32 = [round(float(t), 3) for t in fp32_ms]
    int8 = [round(float(t), 3) for t in int8_ms]
    a, b = labels
    speed = speed_verdict(fp32, int8, final=final, threshold=threshold)
    if labels != ("fp32", "int8"):
        speed["statistic"] = f"median of per-round {a}/{b} time ratios"
        speed["tie_ships"] = a
    return {
        a: round(statistics.median(fp32), 2),
        b: round(statistics.median(int8), 2),
        "speedup": speed,
        "samples_ms": {f"{a}_ms": fp32, f"{b}_ms": int8},
        "order": f"round i runs eval frame i (cycling); {a} first in even rounds, {b} first in odd ones",
    }


def ship_rule(plan: PrecisionPlan, budget: dict, method: str = "INT8") -> tuple[str, str, bool]:
    """(decision, reason, fidelity ok) of the rule alone: INT8 meets the budget and is shown faster.

    For a GPU target (latency unmeasured here) the decision is on fidelity alone, and says so.
    """
    result, latency = plan.fidelity["eval"], plan.latency_ms
    psnr = result["psnr_db"]
    if not plan.quantized_nodes:
        return "fp32", "no layer could stay INT8 within the budget", False
    if result["nonfinite"] or psnr["mean"] < budget["psnr_mean_db"] or psnr["min"] < budget["psnr_min_db"]:
        return "fp32", f"{method} misses the budget on the eval images ({psnr['mean']}/{psnr['min']} dB)", False
    speed = latency.get("speedup")
    if speed is None:
        return "int8", f"{method} meets the budget; decided on fidelity alone (speed on the target is unmeasured here)", True
    lo_hi = (
        f"{speed['confidence']:.0%} interval {speed['interval'][0]:.3f}-{speed['interval'][1]:.3f}x"
        if speed["interval"] else "too few rounds for an interval"
    )
    figures = f"median {speed['median']:.3f}x over {speed['rounds']} rounds, {lo_hi}"
    fp32_options = (plan.runtime.get("options") or {}).get("fp32") or {}
    fp32 = f"FP32 (runtime options {fp32_options})" if fp32_options else "FP32"  # e.g. its float layers in BF16
    if speed["verdict"] == "faster":
        return "int8", f"{method} meets the budget and runs {speed['median']:.2f}x faster than {fp32} ({figures})", True
    if speed["verdict"] == "not_faster":
        why = f"{method} is not {speed['threshold']}x faster than {fp32} on this host ({figures})"
    else:
        why = (
            f"{method} was not shown {speed['threshold']}x faster than {fp32} on this host: a tie ({figures}); "
            f"a tie ships {TIE_SHIPS.upper()}"
        )
    return "fp32", why, True


def decide(plan: PrecisionPlan, budget: dict, method: str = "INT8", ship: str = "auto") -> None:
    """Set plan.decision, plan.reason and plan.ship: the ship rule's decision, or the user's pin.

    ``ship``: "auto" ships what ``ship_rule`` decides. "fp32" ships FP32. "int8" ships INT8 even
    when it was not shown faster, but never outside the fidelity budget: a pinned INT8 that misses
    it ships FP32 with the reason (not an error: the float artifact is verified and shipped). Either
    way plan.ship records the request, whether it was pinned, and what the rule alone decided.
    """
    if ship not in SHIP_CHOICES:
        msg = f"ship must be one of {', '.join(SHIP_CHOICES)}, got {ship!r}"
        raise ValueError(msg)
    rule, why, fidelity_ok = ship_rule(plan, budget, method)
    plan.ship = {"requested": ship, "pinned": ship != "auto", "rule_decision": rule, "rule_reason": why}
    if ship == "auto":
        plan.decision, plan.reason = rule, why
    elif ship == "fp32":
        plan.decision, plan.reason = "fp32", f"pinned to FP32 by the user (--ship fp32); the ship rule alone: {rule} ({why})"
    elif fidelity_ok:
        plan.decision = "int8"
        plan.reason = f"pinned to INT8 by the user (--ship int8): {why}" if rule == "int8" else (
            f"pinned to INT8 by the user (--ship int8): {method} meets the budget; the ship rule alone would ship "
            f"FP32 ({why})"
        )
    else:
        plan.decision, plan.reason = "fp32", f"--ship int8 refused: {why}; INT8 never ships outside the fidelity budget"
