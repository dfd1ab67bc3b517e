"""The curve-estimation family: Zero-DCE++ (TPAMI 2021), TinyDCE (2025) and SGZ (WACV 2022).

Re-written from docs/models.md sections 2.3-2.5. A small net of depthwise-separable convs predicts
a 3-channel curve map r in [-1, 1]; the image is then brightened by iterating
LE(x) = x + r * (x^2 - x). With scale factor s > 1 the net runs on a 1/s bilinear downsample
(align_corners=False) and r is upsampled back with align_corners=True, exactly as the authors'
test scripts do (s = 12 for Zero-DCE++ and SGZ, so H and W must be multiples of 12).
The deployed module returns the enhanced image only; ``stages`` also gives the curve map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lowlight_edge.zoo._api import UPSTREAM, ModelSpec, QuantPreset, Tiling, Weights, register


class DSConv(nn.Module):
    """Depthwise 3x3 (with bias) then pointwise 1x1 (the authors' CSDN_Tem)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depth_conv = nn.Conv2d(cin, cin, 3, padding=1, groups=cin)
        self.point_conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class CurveNet(nn.Module):
    """Shared base: resampling around ``curve_map`` and the iterated light-enhancement curve."""

    def __init__(self, scale_factor: int, iterations: int) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.iterations = iterations

    def curve_map(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.scale_factor
        small = x if s == 1 else F.interpolate(x, scale_factor=1 / s, mode="bilinear", align_corners=False)
        r = self.curve_map(small)
        if s != 1:
            r = F.interpolate(r, scale_factor=s, mode="bilinear", align_corners=True)
        y = x
        for _ in range(self.iterations):
            y = y + r * (y * y - y)
        return {"curve": r, "enhanced": y}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)["enhanced"]


class ZeroDCEpp(CurveNet):
    """Seven DS blocks with U-Net-like concatenations (the authors' enhance_net_nopool); 10,561 params."""

    def __init__(self, scale_factor: int = 12, iterations: int = 8, width: int = 32) -> None:
        super().__init__(scale_factor, iterations)
        self.relu = nn.ReLU()
        self.e_conv1 = DSConv(3, width)
        self.e_conv2 = DSConv(width, width)
        self.e_conv3 = DSConv(width, width)
        self.e_conv4 = DSConv(width, width)
        self.e_conv5 = DSConv(2 * width, width)
        self.e_conv6 = DSConv(2 * width, width)
        self.e_conv7 = DSConv(2 * width, 3)

    def curve_map(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.relu(self.e_conv1(x))
        x2 = self.relu(self.e_conv2(x1))
        x3 = self.relu(self.e_conv3(x2))
        x4 = self.relu(self.e_conv4(x3))
        x5 = self.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = self.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        return torch.tanh(self.e_conv7(torch.cat([x1, x6], 1)))


class TinyDCE(CurveNet):
    """Three DS blocks 3->4->4->3, no concatenations; 161 params."""

    def __init__(self, scale_factor: int = 1, iterations: int = 4) -> None:
        super().__init__(scale_factor, iterations)
        self.relu = nn.ReLU()
        self.e_conv1 = DSConv(3, 4)
        self.e_conv2 = DSConv(4, 4)
        self.e_conv3 = DSConv(4, 3)

    def curve_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.e_conv1(x))
        x = self.relu(self.e_conv2(x))
        return torch.tanh(self.e_conv3(x))


ZDCE_REPO, ZDCE_COMMIT = "Li-Chongyi/Zero-DCE_extension", "09f202b690f82da939b8e6ec8535960ae97ad8bd"
TINY_REPO, TINY_COMMIT = "Ashok-19/TinyDCE", "456394c2ba6b0678568cbf00cb517957bc322234"
SGZ_REPO, SGZ_COMMIT = (
    "ShenZheng2000/Semantic-Guided-Low-Light-Image-Enhancement",
    "94dedc53c17989e58bd0b9f236f6abfc72db4c92",
)
ZDCE_LICENSE = "CC-BY-NC-4.0 (upstream README: non-commercial research only; no LICENSE file)"
TINY_LICENSE = "MIT (but a student of the CC-BY-NC-4.0 Zero-DCE++: treat as non-commercial if in doubt)"

NOTE_12 = "default_resolution is 396x600, not 400x600: the scale factor 12 needs H and W multiples of 12 (LOL 600x400 cropped as in SGZ's lowCUT)."
NOTE_CURVE = "The iterated curve amplifies quantization error in dark inputs: keep the curve in FP16/FP32."
NOTE_RESIZE = "Resize modes differ: half_pixel (align_corners=False) down, align_corners=True up; both must survive conversion."

ZERO_DCE_PP = ModelSpec(
    name="zero_dce_pp",
    title="Zero-DCE++",
    input_kind="rgb",
    channels=3,
    value_range=(0.0, 1.0),
    size_multiple=12,
    default_resolution=(396, 600),
    params=10_561,
    license=ZDCE_LICENSE,
    source=f"{ZDCE_REPO} @ {ZDCE_COMMIT}",
    paper="Li, Guo, Loy, 'Learning to Enhance Low-Light Image via Zero-Reference Deep Curve Estimation', TPAMI 2021",
    weights={
        "default": Weights(
            name="default",
            file="zero_dce_pp.pth",
            url=UPSTREAM.format(
                repo=ZDCE_REPO, commit=ZDCE_COMMIT, path="Zero-DCE++/snapshots_Zero_DCE++/Epoch99.pth"
            ),
            sha256="ca8855b90df9a80fa4195a831f33d3476b1964f787eb70602797c773067f3b84",
            license=ZDCE_LICENSE,
            description="official Epoch99 snapshot (SICE multi-exposure training set)",
        )
    },
    default_weights="default",
    scale_factor=12,
    reference=(
        "repository README: no numbers",
        "project page / paper: 10K params; 1000 FPS GPU / 11 FPS CPU for a 1200x900x3 image (paper Table 7: 1.2 ms GPU)",
    ),
    notes=(NOTE_12, NOTE_CURVE, NOTE_RESIZE),
    preset=QuantPreset(
        quantize_ops=("Conv",),
        float_first_conv="the first conv reads the dark input image",
        # NNCF accuracy control reverted it at 396x600 on x86-cpu (2026-12-01): in the preset, a build skips that search
        float_modules=(("e_conv3.point_conv", "third block's pointwise conv (measured)"),),
    ),
    # Measured 2026-12-01, PyTorch FP32, official checkpoint, CPU: the 12 eval scenes fitted to
    # (2T - ov) frames cut into 2x2 tiles of T = 192x288 and 288x432 overlapping by exactly ov,
    # offsets multiples of 12, worst scene (table in runtimes.tiling). >= 50 dB needs 120 px
    # (192x288 tiles) to 144 px (288x432); 192 px is the curve net's whole receptive field (8 px at
    # 1/12, x 12): with a shift-invariant upsample the tiles are then exact (99 dB). They are not
    # exact here: the curve map's align_corners=True upsample scales by (h-1)/(H-1), which depends
    # on the input size, so a tile reads the curve up to ~1 low-res px off the full frame's spot;
    # at 192 px that leaves 61.2 dB, max 1.5/255 (288x432 tiles).
    tiling=Tiling(overlap=192, exact=False),
)

TINYDCE = ModelSpec(
    name="tinydce",
    title="TinyDCE (161-parameter student of Zero-DCE++)",
    input_kind="rgb",
    channels=3,
    value_range=(0.0, 1.0),
    size_multiple=1,
    default_resolution=(400, 600),
    params=161,
    license=TINY_LICENSE,
    source=f"{TINY_REPO} @ {TINY_COMMIT}",
    paper="TinyDCE: knowledge-distilled Zero-DCE++ student (Ashok-19/TinyDCE README, 2025)",
    weights={
        "default": Weights(
            name="default",
            file="tinydce.pth",
            url=UPSTREAM.format(
                repo=TINY_REPO,
                commit=TINY_COMMIT,
                path="models/snapshots_student_enhanced_kd/Student_Epoch100.pth",
            ),
            sha256="1f6f6976e815168d8bc6b049a5be8cbe81f4a985d2a54352062e7fa29ebadbb9",
            license=TINY_LICENSE,
            description="Student_Epoch100 (knowledge distillation from a re-trained Zero-DCE++ teacher)",
        )
    },
    default_weights="default",
    scale_factor=1,
    reference=(
        "params: TinyDCE 161 vs Zero-DCE++ 10,561 vs Zero-DCE 79,416 (README)",
        "GPU latency, s=1, batch 1, 20 warm-up + 100 runs, teacher vs student: 256^2 1.12 vs 0.56 ms; "
        "512^2 2.95 vs 1.39 ms; 1024^2 10.94 vs 3.56 ms; 1x3x3840x2160 84.87 vs 27.11 ms (sample_output.txt)",
        "live webcam, Ryzen 7 4800H + RTX 3050 laptop: teacher 35-45 ms vs student 6.1-7 ms per frame (README)",
        "quality: none published",
    ),
    notes=(
        "scale factor 1 (every upstream script): the curve net runs at full resolution, no resize.",
        "4-channel depthwise convs are fragile under per-tensor INT8; runtime is memory-bound.",
        NOTE_CURVE,
    ),
    preset=QuantPreset(quantize_ops=("Conv",), float_first_conv="the first conv reads the dark input image"),
    # Measured 2026-12-01, PyTorch FP32, official checkpoint, CPU: 12 eval scenes, 2x2 tiles of
    # 192x288 overlapping by exactly ov, worst scene: 0 px 46.4 dB, 2 px 53.8, 4 px 65.3, 6 px
    # identical (99 dB cap) - three 3x3 convs see 3 px, and each tile keeps ov/2 px of context.
    tiling=Tiling(overlap=6),
)

SGZ = ModelSpec(
    name="sgz",
    title="SGZ: Semantic-Guided Zero-Shot low-light enhancement",
    input_kind="rgb",
    channels=3,
    value_range=(0.0, 1.0),
    size_multiple=12,
    default_resolution=(396, 600),
    params=10_561,
    license="MIT",
    source=f"{SGZ_REPO} @ {SGZ_COMMIT}",
    paper="Zheng, Gupta, 'Semantic-Guided Zero-Shot Learning for Low-Light Image/Video Enhancement', WACV 2022",
    weights={
        "default": Weights(
            name="default",
            file="sgz.pth",
            url=UPSTREAM.format(repo=SGZ_REPO, commit=SGZ_COMMIT, path="weight/Epoch99.pth"),
            sha256="54d87f6f3a2b5ee495abec7e714afcdf60eaa8d15370dd500792cd4f45f442f1",
            license="MIT",
            description="Epoch99 enhancement net (the segmentation net is training-only)",
        )
    },
    default_weights="default",
    scale_factor=12,
    reference=("quality / speed: none in the upstream README (qualitative figures only)",),
    notes=(NOTE_12, "Same network as Zero-DCE++ (same 28 keys), different weights.", NOTE_CURVE, NOTE_RESIZE),
    preset=QuantPreset(quantize_ops=("Conv",), float_first_conv="the first conv reads the dark input image"),
    # Measured 2026-12-01 as for Zero-DCE++ (same network and the same align_corners=True residual):
    # >= 50 dB needs 96 px (72 px: 49.7 dB, 192x288 tiles); at the receptive field's 192 px, 59.0 dB,
    # max 1.8/255 (288x432 tiles).
    tiling=Tiling(overlap=192, exact=False),
)


def build_zero_dce_pp(weights: Weights | None = None) -> ZeroDCEpp:
    return ZeroDCEpp(scale_factor=12).eval()


def build_tinydce(weights: Weights | None = None) -> TinyDCE:
    return TinyDCE(scale_factor=1).eval()


register(ZERO_DCE_PP, build_zero_dce_pp)
register(TINYDCE, build_tinydce)
register(SGZ, build_zero_dce_pp)
