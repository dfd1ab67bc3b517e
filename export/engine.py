"""Stage 4: the deployable engine for the target, built through the runtimes interface.

- openvino targets: the FP32 IR from the simplified ONNX (verified in OpenVINO); the INT8 IR
  comes from the quantize stage and is listed beside it.
- tensorrt targets: one engine per precision when TensorRT and a GPU are here; otherwise the
  stage says plainly that the (QDQ) ONNX is the artifact to build on the device.
- onnxruntime targets: the simplified ONNX is the artifact; nothing to build.
"""

from __future__ import annotations

import logging
from pathlib import Path

from export.core import Context, FileRecord, Stage
from export.fp16 import convert_to_fp16
from export.verify import checker_name, measure, require, run_frames, verify_onnx, within_budget
from lowlight_edge.atomic import atomic_path
from lowlight_edge.errors import CheckFailed
from lowlight_edge.plan import load_plan
from lowlight_edge.versions import versions
from runtimes import get_backend
from runtimes.backend_openvino import reduces_precision
from runtimes.backend_tensorrt import DEFAULT_FLAVOUR, builder_version, gpu_present
from runtimes.base import BuildConfig

log = logging.getLogger(__name__)


class BuildEngine(Stage):
    name = "engine"

    def key(self, ctx: Context) -> dict:
        inputs = {role: r.sha256 for role, r in sorted(ctx.records.items())}
        return {
            "stage": self.name,
            "runtime": ctx.target.runtime,
            "precisions": list(ctx.target.precisions),
            "inputs": inputs,
            "shape": ctx.input_shape,
            "dynamic": ctx.request.dynamic,
            "versions": {k: versions()[k] for k in ("openvino", "onnxruntime")},
            "trt": _trt_identity(ctx) if ctx.target.runtime == "tensorrt" else None,
            "options": dict(ctx.target.options or {}),  # workspace_mb, dla_core, builder change the engine
            "budget": [ctx.target.budget.psnr_mean_db, ctx.target.budget.psnr_min_db],  # the FP16 ONNX gate
        }

    def run(self, ctx: Context) -> list[FileRecord]:
        runtime = ctx.target.runtime
        if runtime == "openvino":
            return self._openvino(ctx)
        if runtime == "tensorrt":
            return self._tensorrt(ctx)
        ctx.notes.append(f"{runtime}: the simplified ONNX is the deployable artifact; no engine to build")
        return []

    def _openvino(self, ctx: Context) -> list[FileRecord]:
        backend = get_backend("openvino")
        source = ctx.model_dir / ctx.records["simplified"].path
        config = BuildConfig(
            precision="fp32",
            input_shape=None if ctx.request.dynamic else ctx.input_shape,
            threads=ctx.target.threads,
            torch_fallback=lambda: ctx.module,
        )
        artifact = backend.build(source, config, ctx.model_dir / "openvino" / "fp32")
        # The graph is checked in f32 against the float-stage floor, whatever its sidecar says
        fid = self._ir_fidelity(artifact.path, {"threads": ctx.target.threads, "precision": "f32"}, ctx.frames(), ctx.references())
        require(fid, self.name, what=" (OpenVINO FP32 IR)")
        notes = [f"{k}: {v}" for k, v in sorted(artifact.meta.items())]
        options = artifact.meta.get("runtime_options") or {}
        if reduces_precision(options):
            # ... and as it ships, on the wider eval set the decision was confirmed on: held to the budget
            shipped = self._ir_fidelity(artifact.path, {"threads": ctx.target.threads}, *ctx.wide_eval())
            budget = ctx.target.budget
            if not within_budget(shipped, budget.psnr_mean_db, budget.psnr_min_db):
                msg = (f"stage {self.name!r} (OpenVINO FP32 IR with its runtime options {options}): "
                       f"{shipped['psnr_db']['mean']}/{shipped['psnr_db']['min']} dB vs PyTorch FP32 misses the budget "
                       f"{budget.psnr_mean_db}/{budget.psnr_min_db} dB; the artifact was not kept")
                raise CheckFailed(msg)
            notes.append(f"runs its float layers in {options['precision']} (runtime options {options}): "
                         f"{shipped['psnr_db']['mean']}/{shipped['psnr_db']['min']} dB vs PyTorch FP32 (budget "
                         f"{budget.psnr_mean_db}/{budget.psnr_min_db}); in f32 {fid['psnr_db']['mean']}/{fid['psnr_db']['min']} dB")
            # the record's fidelity stays the FP32 graph's (>= 60 dB); how it runs as shipped is beside it
            fid["as_shipped"] = {k: shipped[k] for k in ("runtime_options", "psnr_db", "max_abs_err", "nonfinite", "worst") if k in shipped}
            fid["as_shipped"]["frames"] = len(shipped["per_frame"])
        xml = FileRecord(_rel(ctx, artifact.path), self.name, "fp32", "ir_fp32", fidelity=fid, notes=notes)
        weights = FileRecord(_rel(ctx, artifact.path.with_suffix(".bin")), self.name, "fp32", "ir_fp32_bin")
        sidecar = FileRecord(_rel(ctx, artifact.path) + ".json", self.name, "fp32", "ir_fp32_json")
        return [r.fill_digest(ctx.model_dir) for r in (xml, weights, sidecar)]

    @staticmethod
    def _ir_fidelity(xml: Path, options: dict, frames: list, refs: list) -> dict:
        with get_backend("openvino").load(xml, device="CPU", options=options) as runner:
            fid = measure(run_frames(runner, frames), refs)
        return {**fid, "runtime": "openvino", "runtime_options": runner.runtime_options}

    def _tensorrt(self, ctx: Context) -> list[FileRecord]:
        """One strongly typed engine per precision, built here (TensorRT-RTX needs no GPU).

        fp32 builds the simplified ONNX, fp16 an FP16 ONNX made and gated here, int8 the QDQ
        ONNX of the quantize stage (when INT8 shipped). Without a GPU the engine is not run: its
        fidelity is the ONNX's in ONNX Runtime, and the record says so.
        """

        backend = get_backend("tensorrt")
        flavour = _flavour(ctx)
        available, reason = backend.is_available(flavour)
        if not available:
            note = (
                f"TensorRT engine not built here ({reason}); the artifacts to build on the device are the "
                "FP16 ONNX / simplified ONNX and the QDQ ONNX (int8) with `python -m export "
                f"{ctx.spec.name} --target {ctx.target.name}` run on the target"
            )
            ctx.notes.append(note)
            log.warning(note)
            return []

        plan = ctx.records.get("plan")
        shape, profile = self._shapes(ctx)
        records: list[FileRecord] = []
        for precision in ctx.target.precisions:
            if precision == "int8" and "qdq_onnx" not in ctx.records:
                why = plan.notes[0] if plan and plan.notes else "no quantize stage ran"
                ctx.notes.append(f"int8 engine not built: INT8 did not ship ({why})")
                continue
            if precision == "fp16":
                fp16 = self._fp16_onnx(ctx)
                if fp16 is None:
                    continue
                records.append(fp16)
                source = fp16
            else:
                source = ctx.records["qdq_onnx" if precision == "int8" else "simplified"]
            config = BuildConfig(
                precision=precision,
                input_shape=shape,
                profile=profile,
                plan=ctx.model_dir / plan.path if plan else None,
                workspace_mb=(ctx.target.options or {}).get("workspace_mb") or 2048,
                dla_core=(ctx.target.options or {}).get("dla_core"),
                flavour=flavour,
            )
            artifact = backend.build(ctx.model_dir / source.path, config, ctx.model_dir / "tensorrt")
            if gpu_present(ctx.target.device):
                frames, refs = ctx.wide_eval()  # the frames its source was judged on
                with backend.load(artifact.path, device=ctx.target.device) as runner:
                    fid = measure(run_frames(runner, frames), refs)
                fid["runtime"] = "tensorrt"
                fid["numerics"] = "the engine on this GPU"
            else:
                fid = dict(source.fidelity or {})
                fid["numerics"] = f"{source.path} in {checker_name(fid.get('runtime'))} on this CPU; the engine itself was not run (no GPU here)"
            notes = [f"built by {artifact.meta.get('builder')} from {source.path}", f"targets compute capability {artifact.meta.get('compute_capabilities')}"]
            record = FileRecord(_rel(ctx, artifact.path), self.name, precision, f"engine_{precision}", fidelity=fid, notes=notes)
            sidecar = FileRecord(_rel(ctx, artifact.path) + ".json", self.name, precision, f"engine_{precision}_json")
            records += [record.fill_digest(ctx.model_dir), sidecar.fill_digest(ctx.model_dir)]
        return records

    def _shapes(self, ctx: Context):
        """(static input shape, None) or, for --dynamic, (None, a min/opt/max profile)."""
        if not ctx.request.dynamic:
            return ctx.input_shape, None
        m = ctx.spec.size_multiple
        h, w = ctx.resolution

        def up(v: int) -> int:
            return max(m, -(-v // m) * m)

        n, c = ctx.input_shape[:2]
        return None, {"min": (n, c, up(h // 4), up(w // 4)), "opt": ctx.input_shape, "max": (n, c, up(2 * h), up(2 * w))}

    def _fp16_onnx(self, ctx: Context) -> FileRecord | None:
        """The FP16 ONNX (plan's float nodes kept FP32), gated on the budget in ONNX Runtime."""
        plan = ctx.records.get("plan")
        loaded = load_plan(ctx.model_dir / plan.path) if plan else None
        # the INT8 search's float nodes are its measured fragile layers only when INT8 ships; a plan that
        # ships FP32 because no layer stayed INT8 lists every node, which would leave no FP16 at all
        keep = loaded.float_names if loaded is not None and loaded.decision == "int8" else []
        name = f"{ctx.spec.name}.fp16.onnx"
        budget = ctx.target.budget
        try:
            with atomic_path(ctx.model_dir / name) as tmp:  # an exception leaves no file behind
                info = convert_to_fp16(ctx.model_dir / ctx.records["simplified"].path, tmp, keep)
                fid = verify_onnx(tmp, *ctx.wide_eval())  # a reduced precision: judged on the wide eval set
                if not within_budget(fid, budget.psnr_mean_db, budget.psnr_min_db):
                    raise _MissedBudget
        except _MissedBudget:
            psnr = fid["psnr_db"]
            note = f"fp16 engine not built: the FP16 ONNX misses the budget in ONNX Runtime ({psnr['mean']}/{psnr['min']} dB)"
            ctx.notes.append(note)
            log.warning(note)
            return None
        fid["numerics"] = "ONNX Runtime on this CPU running the FP16 ONNX"
        notes = [f"FP16 with FP32 I/O; {len(info['fp32_nodes'])} plan node(s) kept FP32"]
        return FileRecord(name, self.name, "fp16", "fp16_onnx", fidelity=fid, notes=notes).fill_digest(ctx.model_dir)


class _MissedBudget(Exception):
    """Raised inside atomic_path so that a failed FP16 ONNX is not kept."""

def _rel(ctx: Context, path) -> str:
    return path.resolve().relative_to(ctx.model_dir.resolve()).as_posix()


def _flavour(ctx: Context) -> str:
    """The target's TensorRT builder (option ``builder``), else the backend's default."""
    return (ctx.target.options or {}).get("builder") or DEFAULT_FLAVOUR


def _trt_identity(ctx: Context) -> str:
    """The builder flavour and version (part of the key: another TensorRT rebuilds)."""
    return builder_version(_flavour(ctx))
