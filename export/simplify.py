"""Stage 2: onnxsim on the exported graph, then our graph passes, verified again; the unsimplified file is kept.

onnxsim's own check runs on random inputs; ours runs on real frames against PyTorch, so its
built-in check is switched off (check_n=0) rather than run twice. The passes (export.fold) change
speed, not results: each is exact up to float32 rounding, and the stage's check holds them to the
same bar as onnxsim.
"""

from __future__ import annotations

from export.core import Context, FileRecord, Stage
from export.fold import fold_linear_convs
from export.verify import verify_onnx_stage
from lowlight_edge.atomic import atomic_path
from lowlight_edge.errors import CheckFailed
from lowlight_edge.versions import versions

PASSES = ("fold_linear_convs/1",)  # in the stage key: a changed pass rebuilds the simplified graph


class SimplifyOnnx(Stage):
    name = "simplify"

    def key(self, ctx: Context) -> dict:
        return {
            "stage": self.name,
            "input": ctx.records["onnx"].sha256,
            "verify_images": ctx.request.verify_images,
            "versions": {k: versions()[k] for k in ("onnx", "onnxsim", "onnxruntime")},
            "passes": PASSES,
        }

    def run(self, ctx: Context) -> list[FileRecord]:
        import onnx
        import onnxsim

        source = ctx.model_dir / ctx.records["onnx"].path
        name = f"{ctx.spec.name}.sim.onnx"
        model = onnx.load(str(source))
        simplified, ok = onnxsim.simplify(model, check_n=0)
        if not ok:
            msg = f"onnxsim could not simplify {source.name}; rerun with --until onnx to keep the raw export"
            raise CheckFailed(msg)
        nodes_before, nodes_after = len(model.graph.node), len(simplified.graph.node)
        simplified, folded = fold_linear_convs(simplified)
        with atomic_path(ctx.model_dir / name) as tmp:
            onnx.save(simplified, str(tmp))
            fid = verify_onnx_stage(ctx, tmp, self.name)
        notes = [f"onnxsim {onnxsim.__version__}: {nodes_before} -> {nodes_after} nodes"]
        if folded:
            notes.append(f"export.fold: {len(folded)} convolutions folded into the 1x1 convolutions reading them "
                         f"({len(simplified.graph.node)} nodes)")
        record = FileRecord(name, self.name, "fp32", "simplified", fidelity=fid, notes=notes)
        return [record.fill_digest(ctx.model_dir)]
