"""LLPackNet (BMVC 2020, 2022 network.py), re-written from docs/models.md section 2.6 for deployment.

Input: the 1x1xHxW RGGB Bayer plane, black/white-level normalized and amplified (values up to
~300); H and W multiples of 16. Output: sRGB in (0, 1) at full resolution.

The authors' graph packs and unpacks with 6-D reshapes and wraps every conv in weight_norm. The
deployed module computes the same function with export-friendly pieces:

- Pack: 2x then 8x space-to-depth, each a 5-D reshape/transpose, giving each colour plane's 64
  channels contiguously so the four plane convs (RDBr, RDBg1, RDBg2, RDBb) run as one grouped conv.
- weight_norm is folded (w = g * v / ||v||) when the checkpoint is loaded.
- UnPack 8x is DepthToSpace in DCR order (channel (i*8 + j)*3 + c); the last conv's 192 output
  channels are permuted at load time so that nn.PixelShuffle(8) (CRD, one DepthToSpace op) gives
  exactly that result.
"""

from __future__ import annotations

import torch
from torch import nn

from lowlight_edge.zoo._api import ModelSpec, QuantPreset, Tiling, Weights, register
from lowlight_edge.zoo.weights import check_keys

REPO, COMMIT = "MohitLamba94/LLPackNet", "42f0f2cd6a51613cbbea49146f65ff07546075cb"
PLANES = ("RDBr", "RDBg1", "RDBg2", "RDBb")  # RGGB: R, G1, G2, B after the 2x pack
DENSE_LAYERS, GROWTH = 6, 32


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int = GROWTH) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.relu(self.conv(x))], dim=1)


class RDB(nn.Module):
    """Residual dense block: six dense 3x3 layers (growth 32), a 1x1 fuse, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dense_layers = nn.Sequential(*(DenseLayer(channels + GROWTH * i) for i in range(DENSE_LAYERS)))
        self.conv_1x1 = nn.Conv2d(channels + GROWTH * DENSE_LAYERS, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(self.dense_layers(x)) + x


def pack(raw: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) Bayer -> (B,256,H/16,W/16), channel = plane*64 + i*8 + j; tensors stay <= 5-D.

    Same result as pixel_unshuffle(2) followed by pixel_unshuffle(8) on each of the four planes.
    """
    h, w = raw.shape[2], raw.shape[3]
    x = raw.reshape(-1, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3)  # (B, 2, 2, H/2, W/2)
    x = x.reshape(-1, h // 16, 8, w // 16, 8).permute(0, 2, 4, 1, 3)  # (B*4, 8, 8, H/16, W/16)
    return x.reshape(-1, 256, h // 16, w // 16)


def dcr_to_crd(channels: int = 192, block: int = 8) -> torch.Tensor:
    """Index p with p[c*b*b + i*b + j] = (i*b + j)*C + c: reorders DCR channels for PixelShuffle (CRD)."""
    colours = channels // (block * block)
    c, ij = torch.meshgrid(torch.arange(colours), torch.arange(block * block), indexing="ij")
    return (ij * colours + c).reshape(-1)


class LLPackNet(nn.Module):
    """Deployable LLPackNet with folded weight norm; see the module docstring for the exact rewrites."""

    def __init__(self) -> None:
        super().__init__()
        self.planes = nn.Conv2d(256, 256, 3, padding=1, groups=4)
        self.relu = nn.ReLU()
        self.before_identity = nn.Conv2d(256, 64, 1, bias=False)
        self.RDB1, self.RDB2, self.RDB3 = RDB(64), RDB(64), RDB(64)
        self.after_rdb = nn.Conv2d(192, 64, 1, bias=False)
        self.up2 = nn.PixelShuffle(2)
        self.final_rdb = RDB(16)
        self.final_conv = nn.Conv2d(16, 192, 3, padding=1)  # output channels in CRD order
        self.unpack = nn.PixelShuffle(8)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        a = self.before_identity(self.relu(self.planes(pack(raw))))
        r1 = self.RDB1(a)
        r2 = self.RDB2(r1)
        r3 = self.RDB3(r2)
        a = self.after_rdb(torch.cat([r1, r2, r3], dim=1)) + a
        y = self.final_conv(self.final_rdb(self.up2(a)))
        return torch.sigmoid(self.unpack(y))


def _checkpoint_convs() -> list[tuple[str, int, int, int, bool]]:
    """(name, cin, cout, kernel, bias) of the authors' 35 weight-normed convs, in checkpoint order."""
    convs = [(p, 64, 64, 3, True) for p in PLANES]
    convs += [("before_identity", 256, 64, 1, False), ("after_rdb", 192, 64, 1, False)]
    for rdb, ch in (("RDB1", 64), ("RDB2", 64), ("RDB3", 64), ("final.1", 16)):
        convs += [
            (f"{rdb}.dense_layers.{i}.conv", ch + GROWTH * i, GROWTH, 3, False) for i in range(DENSE_LAYERS)
        ]
        convs.append((f"{rdb}.conv_1x1", ch + GROWTH * DENSE_LAYERS, ch, 1, False))
    convs.append(("final.2", 16, 192, 3, True))
    return convs


def checkpoint_layout() -> dict[str, tuple[int, ...]]:
    """The 75 keys and shapes of the authors' state dict (old-style weight_norm names)."""
    layout: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, k, bias in _checkpoint_convs():
        if bias:
            layout[f"{name}.0.bias"] = (cout,)
        layout[f"{name}.0.weight_g"] = (cout, 1, 1, 1)
        layout[f"{name}.0.weight_v"] = (cout, cin, k, k)
    return layout


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """w = g * v / ||v||, the norm over (Cin, kh, kw) per output channel (weight_norm with dim=0)."""
    return v * (g / v.norm(2, dim=(1, 2, 3), keepdim=True))


def deployed_state(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the authors' 75-key state dict (layout as checkpoint_layout()) to LLPackNet's."""
    w = {
        name: fold_weight_norm(checkpoint[f"{name}.0.weight_g"], checkpoint[f"{name}.0.weight_v"])
        for name, *_ in _checkpoint_convs()
    }
    out = {
        "planes.weight": torch.cat([w[p] for p in PLANES]),
        "planes.bias": torch.cat([checkpoint[f"{p}.0.bias"] for p in PLANES]),
        "before_identity.weight": w["before_identity"],
        "after_rdb.weight": w["after_rdb"],
    }
    for name, weight in w.items():
        if name.startswith("RDB") and name not in PLANES:
            out[f"{name}.weight"] = weight
        elif name.startswith("final.1."):
            out[f"final_rdb.{name.removeprefix('final.1.')}.weight"] = weight
    perm = dcr_to_crd()
    out["final_conv.weight"] = w["final.2"][perm]
    out["final_conv.bias"] = checkpoint["final.2.0.bias"][perm]
    return out


def load_state(model: LLPackNet, checkpoint: dict[str, torch.Tensor]) -> None:
    """Check an authors'-layout state dict strictly, then fold and permute it into ``model``."""

    check_keys(checkpoint_layout(), checkpoint, "llpacknet")
    model.load_state_dict(deployed_state(checkpoint), strict=True)


def build(weights: Weights | None = None) -> LLPackNet:
    return LLPackNet().eval()


WEIGHTS = {
    "synthetic": Weights(
        name="synthetic",
        file="llpacknet_synthetic.pth",
        url="",
        sha256="8c75d9f032eee39881431e4b75d56c67b5fa008af727588c66d666c645d4025c",
        license="non-commercial research (same as the SICE images it was trained on)",
        description="NOT the authors' weights (theirs are unavailable): trained by this project for 45 min on "
        "synthetic RAW unprocessed from SICE images; never saw real RAW. Upstream layout {'model': state_dict}",
        trained_range=(0.0, 300.0),
    ),
}

SPEC = ModelSpec(
    name="llpacknet",
    title="LLPackNet: fast light-weight restoration of dark RAW images",
    input_kind="raw_bayer",
    channels=1,
    value_range=(0.0, 300.0),
    size_multiple=16,
    default_resolution=(2848, 4256),
    params=1_169_088,
    license="MIT",
    source=f"{REPO} @ {COMMIT}",
    paper="Lamba, Balaji, Mitra, 'Towards Fast and Light-Weight Restoration of Dark Images', BMVC 2020",
    weights=WEIGHTS,
    default_weights="synthetic",
    bayer_pattern="RGGB",
    reference=(
        "SID Sony 2848x4256: ~3 s per image on a CPU; 3 GB memory; 1.1 M params (README)",
        "SID Sony PSNR/SSIM: 23.27/0.69 with its own amplifier; 27.83/0.75 with GT exposure (comparison table)",
        "2022 code, GT amplification <= 300, 93 test scenes, skimage PSNR/SSIM on uint8: 27.9418 / 0.7588 (inference.txt)",
        "Numbers are for the authors' weights; the shipped synthetic weights are not theirs.",
    ),
    notes=(
        "Input: max(raw - 512, 0) / (16383 - 512) * min(exposure ratio, 300) for Sony ARW; not clipped, values exceed 1.",
        "params counts the deployed network after folding weight norm (the checkpoint holds 1,170,640).",
        "Default weights llpacknet_synthetic.pth are this project's synthetic-RAW training, not the authors'; "
        "without the file the model is randomly initialized (with a warning): latency only, no quality.",
        "Activations are large: the last conv output is 192x356x532 (~145 MB FP32) at full resolution.",
    ),
    preset=QuantPreset(
        quantize_ops=("Conv",),
        float_first_conv="the first conv reads the amplified Bayer input (values up to ~300); "
        "INT8 there cost 3.5 dB (measured at 512x768)",
    ),
    # runtimes.tiling's docstrings hold the measurements: 128 px keeps seams >= 50 dB; 64 B/px is
    # the slope of peak RSS against tile pixels (OpenVINO CPU FP32 IR), rounded up
    tiling=Tiling(overlap=128, activation_bytes_per_px=64.0),
)

register(SPEC, build, load_state)
