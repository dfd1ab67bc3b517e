"""Stage 1: PyTorch module -> ONNX, verified in ONNX Runtime on real frames.

torch 2.13's default (dynamo) exporter is used: it exports every zoo model, including the
dynamic-shape variants, once the zoo modules are written export-friendly (exact fixed-window
pooling, DepthToSpace unpacking, folded weight norm, batched colour matrix). The legacy
TorchScript exporter is kept as a fallback and the manifest records which one ran.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from export.core import Context, FileRecord, Stage
from export.manifest import source_digest
from export.verify import verify_onnx_stage
from lowlight_edge.atomic import atomic_path
from lowlight_edge.errors import UsageError
from lowlight_edge.versions import versions
from lowlight_edge.zoo import exposing_global_params

log = logging.getLogger(__name__)

MAX_DYNAMIC_SIDE = 8192



class ExportOnnx(Stage):
    name = "onnx"

    def key(self, ctx: Context) -> dict:
        req = ctx.request
        return {
            "stage": self.name,
            "model": req.model,
            "weights": ctx.weights.get("sha256") or ctx.weights.get("name"),
            "resolution": ctx.resolution,
            "dynamic": req.dynamic,
            "opset": req.opset,
            "verify_images": req.verify_images,
            "source": source_digest(),
            "versions": {k: versions()[k] for k in ("torch", "onnx", "onnxscript", "openvino")},
        }

    def run(self, ctx: Context) -> list[FileRecord]:
        if ctx.request.dynamic and not ctx.spec.dynamic_hw:
            msg = (
                f"{ctx.spec.name} cannot be exported with dynamic H/W: {ctx.spec.dynamic_hw_reason}; "
                "export one static file per resolution with --resolution HxW instead"
            )
            raise UsageError(msg)
        name = f"{ctx.spec.name}.onnx"
        target = ctx.model_dir / name
        with atomic_path(target) as tmp:
            exporter = export_module(ctx, tmp)
            check_opset(tmp, ctx.request.opset, exporter)
            fid = verify_onnx_stage(ctx, tmp, self.name, runtime="openvino")  # export.verify.ONNX_CHECKERS
        record = FileRecord(name, self.name, "fp32", "onnx", fidelity=fid, notes=[f"exporter: {exporter}"])
        return [record.fill_digest(ctx.model_dir)]


def check_opset(path: Path, requested: int, exporter: str) -> None:
    """UsageError unless the file holds the requested default-domain opset (exporters may not honour it)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != requested:
        msg = (
            f"--opset {requested} was asked for but {exporter} wrote opset {written}; "
            f"pass --opset {written} (or another opset this exporter supports)"
        )
        raise UsageError(msg)


def _os_error(err: BaseException | None) -> OSError | None:
    """The OSError in an exception's chain (the exporter wraps a failed write), or None."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def export_module(ctx: Context, path: Path) -> str:
    """Export ctx.module to path; returns which exporter produced it."""
    module = ctx.module.eval()
    params = ctx.spec.global_params
    # IAT's gamma and colour matrix ride along as extra outputs after the image (zoo.GlobalParams),
    # so a video runner can smooth them over time; every runner returns output 0, the image.
    names = ["output", *(params.outputs if params else ())]
    with exposing_global_params(module, params) if params else contextlib.nullcontext():
        return _export(ctx, module, names, path)


def _export(ctx: Context, module, names: list[str], path: Path) -> str:
    """torch.onnx.export with the dynamo exporter, falling back to TorchScript; returns which ran."""
    import torch

    params = ctx.spec.global_params
    example = torch.from_numpy(ctx.frames()[0])
    dynamic_shapes = None
    if ctx.request.dynamic:
        m = ctx.spec.size_multiple
        h = torch.export.Dim("h", min=1, max=MAX_DYNAMIC_SIDE // m)
        w = torch.export.Dim("w", min=1, max=MAX_DYNAMIC_SIDE // m)
        dynamic_shapes = ({2: h * m if m > 1 else h, 3: w * m if m > 1 else w},)
    quiet = io.StringIO()
    # Below opset 18 the exporter converts down and, when that fails, logs a traceback and keeps 18;
    # check_opset reports the outcome in one line instead.
    logging.getLogger("onnxscript.version_converter").setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(quiet), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                opset_version=ctx.request.opset,
                input_names=["input"],
                output_names=names,
                dynamic_shapes=dynamic_shapes,
                external_data=False,
                verbose=False,
            )
        module.eval()  # the exporter restores the training flag; make sure BN stays in eval mode
        return f"torch.onnx.export(dynamo=True) torch {torch.__version__}"
    except Exception as err:  # noqa: BLE001 - any exporter failure falls back, and says so
        cause = _os_error(err)
        if cause is not None:  # a full disk or a read-only folder is the user's to fix, not the exporter's
            raise cause from err
        log.warning("dynamo exporter failed (%s); trying the TorchScript exporter", str(err).splitlines()[0])
    image_axes = {2: "height", 3: "width"}
    dynamic_axes = {"input": image_axes, "output": image_axes} if dynamic_shapes else None
    if dynamic_axes is not None and params:
        dynamic_axes["img_local"] = image_axes
    with contextlib.redirect_stdout(quiet), torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=min(ctx.request.opset, 17),
            input_names=["input"],
            output_names=names,
            dynamic_axes=dynamic_axes,
        )
    module.eval()
    return f"torch.onnx.export(dynamo=False) torch {torch.__version__} (dynamo exporter failed)"
