"""Stage 3 of the pipeline: INT8 that keeps the image, and only where it pays.

For OpenVINO targets the output is an INT8 IR plus its precision plan; for TensorRT targets a
QDQ ONNX (symmetric, per-channel weights) made with the same plan. When no INT8 plan meets the
budget and beats FP32 on this host, the plan says so and the float artifact is what ships.
"""

from __future__ import annotations

from export.core import Context, FileRecord, Stage
from export.manifest import source_digest
from lowlight_edge.datasets import folder_digest
from lowlight_edge.plan import PLAN_FILE
from lowlight_edge.versions import versions
from quantize.inputs import budget_of
from quantize.outputs import write_outputs
from quantize.qat import qat_stage
from quantize.search import cpu_timed, runtime_host, search


class QuantizeStage(Stage):
    name = "quantize"

    def key(self, ctx: Context) -> dict:
        return {
            "stage": self.name,
            "input": ctx.records["simplified"].sha256,
            "runtime": ctx.target.runtime,
            "budget": budget_of(ctx),
            "method": ctx.request.method,
            "ship": ctx.request.ship,  # a new pin is a new decision, never answered from the cache
            "qat_seconds": ctx.request.qat_seconds if ctx.request.method == "qat" else None,
            "calib": folder_digest(ctx.request.calib_folder),  # the images, not the path
            "calib_size": ctx.request.calib_size,
            "calib_max_mean": ctx.request.calib_max_mean,
            "threads": ctx.target.threads,
            "source": source_digest(),
            "versions": {k: versions()[k] for k in ("nncf", "openvino", "onnxruntime", "torch")},
            # a CPU target's plan is timed on this host (ship rule, runtime options): another CPU decides anew
            "host": runtime_host(ctx) if cpu_timed(ctx) else None,
        }

    def run(self, ctx: Context) -> list[FileRecord]:
        # A previous run's plan is stale from here (this run decides anew, or decides nothing): an
        # OpenVINO build applies the plan beside the ONNX it was decided on, and the ONNX is the same.
        (ctx.model_dir / PLAN_FILE).unlink(missing_ok=True)
        if "int8" not in ctx.target.precisions:
            ctx.notes.append(f"target {ctx.target.name} lists no int8 precision; quantize stage skipped")
            return []
        if ctx.request.method == "qat":
            return qat_stage(ctx, budget_of(ctx))
        plan, int8_model = search(ctx, budget_of(ctx))
        return write_outputs(ctx, plan, int8_model)
