"""export.fold: a conv folded into the 1x1 conv that reads it gives the same outputs with fewer nodes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from export.fold import fold_linear_convs
from lowlight_edge import zoo


def export(module: nn.Module, x: torch.Tensor, path: Path) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    return onnx.load(str(path))


def run(model: onnx.ModelProto, x: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.numpy()})


class Pairs(nn.Module):
    """Foldable and unfoldable pairs side by side (each branch says which)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a3 = nn.Conv2d(8, 8, 3, padding=1)  # 3x3 -> 1x1 narrowing: folds (8*8*9 <= 8*8*9 + 4*8)
        self.b1 = nn.Conv2d(8, 4, 1)
        self.c1 = nn.Conv2d(8, 8, 1, bias=False)  # 1x1 -> 1x1 -> 1x1 chain: both fold
        self.d1 = nn.Conv2d(8, 8, 1)
        self.e1 = nn.Conv2d(8, 8, 1)
        self.widen3 = nn.Conv2d(8, 8, 3, padding=1)  # 3x3 8->8 then 1x1 8->32: folding costs more, kept
        self.widen1 = nn.Conv2d(8, 32, 1)
        self.shared = nn.Conv2d(8, 8, 1)  # read twice: kept
        self.r1 = nn.Conv2d(8, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 1, groups=2)  # grouped: kept
        self.g1 = nn.Conv2d(8, 8, 1)
        self.strided = nn.Conv2d(8, 8, 1, stride=2)  # the reader would be strided: kept
        self.s0 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor):
        y = self.b1(self.a3(x))
        z = self.e1(self.d1(self.c1(x)))
        w = self.widen1(self.widen3(x))
        s = self.shared(x)
        r = self.r1(s) + s
        g = self.g1(self.grouped(x))
        t = self.strided(self.s0(x))
        return y, z, w, r, g, t


def conv_count(model: onnx.ModelProto) -> int:
    return sum(n.op_type == "Conv" for n in model.graph.node)


def test_foldable_pairs_fold_and_others_stay(tmp_path: Path) -> None:
    x = torch.rand(1, 8, 20, 24, generator=torch.Generator().manual_seed(1))
    model = export(Pairs(), x, tmp_path / "pairs.onnx")
    before = run(model, x)
    convs = conv_count(model)
    folded_model, folded = fold_linear_convs(model)
    assert len(folded) == 3  # a3 into b1; c1 into d1, then that into e1
    assert conv_count(folded_model) == convs - 3
    onnx.checker.check_model(folded_model)
    after = run(folded_model, x)
    for a, b in zip(before, after, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() < 1e-5
    used = {name for n in folded_model.graph.node for name in n.input}
    assert all(i.name in used for i in folded_model.graph.initializer)  # the removed convs' weights are gone


def test_iat_blocks_fold_and_match_pytorch(tmp_path: Path) -> None:
    import onnxsim

    module = zoo.get_model("iat")
    x = torch.rand(1, 3, 48, 72, generator=torch.Generator().manual_seed(2)) * 0.3
    simplified, ok = onnxsim.simplify(export(module, x, tmp_path / "iat.onnx"), check_n=0)
    assert ok
    convs = conv_count(simplified)
    folded_model, folded = fold_linear_convs(simplified)
    # each of the 6 blocks: the channel-mixing norm into conv1, and norm2 into the MLP's fc1
    assert len(folded) == 12 and conv_count(folded_model) == convs - 12
    with torch.no_grad():
        ref = module(x).numpy()
    assert np.abs(run(folded_model, x)[0] - ref).max() < 1e-5
