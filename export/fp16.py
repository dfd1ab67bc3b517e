"""FP16 ONNX with FP32 I/O: what a strongly typed TensorRT engine builds as "fp16".

TensorRT 11 and TensorRT-RTX have no FP16 builder flag: precision comes from the ONNX's tensors.
onnxconverter-common casts initializers and activations to float16 and keeps the graph's inputs
and outputs float32; the nodes named in ``keep_fp32`` (the precision plan's fragile nodes) stay
FP32 with casts around them.
"""

from __future__ import annotations

import warnings
from pathlib import Path


def convert_to_fp16(source: Path, dest: Path, keep_fp32: list[str]) -> dict:
    """Write the FP16 ONNX of ``source`` to ``dest``; returns what was kept FP32."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    names = {n.name for n in model.graph.node}
    kept = [n for n in keep_fp32 if n in names]
    with warnings.catch_warnings():  # "the float32 number ... will be truncated": FP16's own range
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=kept)
    onnx.save(converted, str(dest))
    return {"fp32_nodes": kept, "io": "float32"}
