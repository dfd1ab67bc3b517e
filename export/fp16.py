"""FP16 ONNX with FP32 I/O: what a strongly typed TensorRT engine builds as "fp16".

TensorRT 11 and TensorRT-RTX have no FP16 builder flag: precision comes from the ONNX's tensors.
onnxconverter-common casts initializers and activations to float16 and keeps the graph's inputs
and outputs float32; the nodes named in ``keep_fp32`` (the precision plan's fragile nodes) stay
FP32 with casts around them.
"""

from __future__ import annotations

import warnings
from pathlib import Path


def separate_outputs(model) -> int:
    """Give each graph output that other nodes also read its own Identity node; returns how many.

    onnxconverter-common's keep_io_types casts a graph output back to float32 in place, which
    breaks the nodes that read the same tensor as float16 (IAT's gamma and colour matrix are graph
    outputs and feed the final Pow/MatMul): "Type (tensor(float16)) of output arg ... does not match".
    After this the producer writes ``<name>__inner`` and only the Identity writes the output itself.
    """
    from onnx import helper

    graph = model.graph
    read = {name for node in graph.node for name in node.input}
    outputs = {o.name for o in graph.output} & read
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name in outputs:
                node.output[i] = f"{name}__inner"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in outputs:
                node.input[i] = f"{name}__inner"
    for name in sorted(outputs):
        graph.node.append(helper.make_node("Identity", [f"{name}__inner"], [name], name=f"{name}__output"))
    return len(outputs)


def convert_to_fp16(source: Path, dest: Path, keep_fp32: list[str]) -> dict:
    """Write the FP16 ONNX of ``source`` to ``dest``; returns what was kept FP32."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    separate_outputs(model)
    names = {n.name for n in model.graph.node}
    kept = [n for n in keep_fp32 if n in names]
    with warnings.catch_warnings():  # "the float32 number ... will be truncated": FP16's own range
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=kept)
    onnx.save(converted, str(dest))
    return {"fp32_nodes": kept, "io": "float32"}
