"""Stage 4: the deployable engine for the target, built through the runtimes interface.

- openvino targets: the FP32 IR from the simplified ONNX (verified in OpenVINO); the INT8 IR
  comes from the quantize stage and is listed beside it.
- tensorrt targets: one engine per precision when TensorRT and a GPU are here; otherwise the
  stage says plainly that the (QDQ) ONNX is the artifact to build on the device.
- onnxruntime targets: the simplified ONNX is the artifact; nothing to build.
"""

from __future__ import annotations

import logging

from export.stages import Context, FileRecord, Stage
from export.verify import fidelity, require, run_frames

log = logging.getLogger(__name__)


class BuildEngine(Stage):
    name = "engine"

    def key(self, ctx: Context) -> dict:
        from export.manifest import versions

        inputs = {role: r.sha256 for role, r in sorted(ctx.records.items())}
        return {
            "stage": self.name,
            "runtime": ctx.target.runtime,
            "precisions": list(ctx.target.precisions),
            "inputs": inputs,
            "shape": ctx.input_shape,
            "dynamic": ctx.request.dynamic,
            "versions": {k: versions()[k] for k in ("openvino", "onnxruntime")},
            "trt": _trt_identity() if ctx.target.runtime == "tensorrt" else None,
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
        from runtimes import get_backend
        from runtimes.base import BuildConfig

        backend = get_backend("openvino")
        source = ctx.model_dir / ctx.records["simplified"].path
        config = BuildConfig(
            precision="fp32",
            input_shape=None if ctx.request.dynamic else ctx.input_shape,
            threads=ctx.target.threads,
            torch_fallback=lambda: ctx.module,
        )
        artifact = backend.build(source, config, ctx.model_dir / "openvino" / "fp32")
        with backend.load(artifact.path, device="CPU", options={"threads": ctx.target.threads}) as runner:
            fid = fidelity(run_frames(runner, ctx.frames()), ctx.references())
        fid["runtime"] = "openvino"
        require(fid, self.name, what=" (OpenVINO FP32 IR)")
        notes = [f"{k}: {v}" for k, v in sorted(artifact.meta.items())]
        xml = FileRecord(_rel(ctx, artifact.path), self.name, "fp32", "ir_fp32", fidelity=fid, notes=notes)
        weights = FileRecord(_rel(ctx, artifact.path.with_suffix(".bin")), self.name, "fp32", "ir_fp32_bin")
        return [xml.fill_digest(ctx.model_dir), weights.fill_digest(ctx.model_dir)]

    def _tensorrt(self, ctx: Context) -> list[FileRecord]:
        from runtimes import get_backend
        from runtimes.base import BuildConfig

        backend = get_backend("tensorrt")
        available, reason = backend.is_available()
        if not available:
            note = (
                f"TensorRT engine not built here ({reason}); the artifacts to build on the device are the "
                "simplified ONNX (fp16) and the QDQ ONNX (int8) with `python -m export "
                f"{ctx.spec.name} --target {ctx.target.name}` run on the target"
            )
            ctx.notes.append(note)
            log.warning(note)
            return []
        records = []
        for precision in ctx.target.precisions:
            role = "qdq_onnx" if precision == "int8" and "qdq_onnx" in ctx.records else "simplified"
            plan = ctx.records.get("plan")
            config = BuildConfig(
                precision=precision,
                input_shape=None if ctx.request.dynamic else ctx.input_shape,
                plan=ctx.model_dir / plan.path if plan else None,
                dla_core=(ctx.target.options or {}).get("dla_core"),
            )
            artifact = backend.build(ctx.model_dir / ctx.records[role].path, config, ctx.model_dir / "tensorrt")
            with backend.load(artifact.path, device=ctx.target.device) as runner:
                fid = fidelity(run_frames(runner, ctx.frames()), ctx.references())
            fid["runtime"] = "tensorrt"
            record = FileRecord(_rel(ctx, artifact.path), self.name, precision, f"engine_{precision}", fidelity=fid)
            sidecar = FileRecord(_rel(ctx, artifact.path) + ".json", self.name, precision, f"engine_{precision}_json")
            records += [record.fill_digest(ctx.model_dir), sidecar.fill_digest(ctx.model_dir)]
        return records


def _rel(ctx: Context, path) -> str:
    return path.resolve().relative_to(ctx.model_dir.resolve()).as_posix()


def _trt_identity() -> str:
    import importlib.util

    return "tensorrt present" if importlib.util.find_spec("tensorrt") else "tensorrt absent"
