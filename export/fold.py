"""Graph pass of the simplify stage: fold a convolution into the 1x1 convolution that reads it.

A Conv whose only reader is a 1x1 Conv (group 1, stride 1, no padding) with nothing between them
is one linear map: W = W_b @ W_a over the middle channels, b = W_b @ b_a + b_b. IAT's blocks have
two such pairs each (the channel-mixing "Aff_channel" norm, then a 1x1 conv): 12 of its 36 1x1
convolutions, each a full pass over the activations. onnxsim and OpenVINO fold constants and
element-wise scales into a convolution, not a convolution into another. A pair is folded only
when the folded convolution does no more multiply-adds than the two (so never a wider k x k conv
replacing a cheap 1x1), and only when the first conv's output is read by nothing else.

The products are taken in float64 and stored as float32: the folded graph agrees with the
unfolded one to float32 rounding (the simplify stage verifies it against PyTorch as always).
"""

from __future__ import annotations

import numpy as np


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _plain(node, kernel_1x1: bool) -> bool:
    """Conv with group 1, unit dilations, and (for the reader) stride 1, no padding, a 1x1 kernel."""
    if node.op_type != "Conv" or _attr(node, "group", 1) != 1:
        return False
    if any(d != 1 for d in _attr(node, "dilations", [1, 1])):
        return False
    if not kernel_1x1:
        return _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    return (
        all(s == 1 for s in _attr(node, "strides", [1, 1]))
        and not any(_attr(node, "pads", [0, 0, 0, 0]))
        and _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET", b"VALID", "VALID")
    )


def fold_linear_convs(model) -> tuple[object, list[str]]:
    """Fold every eligible Conv -> 1x1 Conv pair in place; returns (model, names of the folded readers).

    The reader keeps its name (the node it was, now reading the first conv's input); the first
    conv is removed. Unused initializers are left for onnxsim or the caller to drop.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    producer = {out: node for node in graph.node for out in node.output}

    def weights(node):
        if node.input[1] not in inits or (len(node.input) > 2 and node.input[2] and node.input[2] not in inits):
            return None
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.dtype != np.float32:
            return None
        b = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0], np.float32)
        return w.astype(np.float64), b.astype(np.float64)

    removed, folded = set(), []
    for reader in list(graph.node):
        first = producer.get(reader.input[0]) if reader.input else None
        if first is None or id(first) in removed or id(reader) in removed:
            continue
        if not (_plain(reader, kernel_1x1=True) and _plain(first, kernel_1x1=False)):
            continue
        if len(readers.get(first.output[0], [])) != 1 or first.output[0] in outputs:
            continue
        reader_weights, first_weights = weights(reader), weights(first)
        if reader_weights is None or first_weights is None:
            continue
        (wb, bb), (wa, ba) = reader_weights, first_weights
        if wb.shape[2:] != (1, 1) or wb.shape[1] != wa.shape[0]:
            continue
        cout, cmid, cin = wb.shape[0], wa.shape[0], wa.shape[1]
        taps = wa.shape[2] * wa.shape[3]
        if cout * cin * taps > cmid * cin * taps + cout * cmid:
            continue  # folding would do more work than the pair
        w = np.einsum("om,mikl->oikl", wb[:, :, 0, 0], wa)
        b = wb[:, :, 0, 0] @ ba + bb
        w_name, b_name = f"{reader.name}.folded_weight", f"{reader.name}.folded_bias"
        for array, name in ((w, w_name), (b, b_name)):
            inits[name] = numpy_helper.from_array(array.astype(np.float32), name)
            graph.initializer.append(inits[name])
        del reader.input[:]
        reader.input.extend([first.input[0], w_name, b_name])
        for attribute in list(reader.attribute):
            if attribute.name in ("kernel_shape", "pads", "strides", "auto_pad"):
                reader.attribute.remove(attribute)
        for attribute in first.attribute:
            if attribute.name in ("kernel_shape", "pads", "strides", "auto_pad"):
                reader.attribute.append(attribute)
        removed.add(id(first))
        source = readers.setdefault(first.input[0], [])
        source[next(i for i, n in enumerate(source) if n is first)] = reader  # it reads what the first conv read
        folded.append(reader.name)
    if removed:
        kept = [n for n in graph.node if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(kept)
        used = {name for n in graph.node for name in n.input}
        dead = [i for i in graph.initializer if i.name not in used]
        for init in dead:
            graph.initializer.remove(init)
    return model, folded
