"""Starting points of the precision search, one per model, from measurements on this stack.

Each preset names what should stay in float before any search runs, with the reason, so that
the search starts from a plan that is already close (baseline.md, section 3):
- elementwise ops (the Zero-DCE curve, IAT's gamma and colour matrix) made INT8 slower on CPUs
  without VNNI and cost fidelity, so only convolutions are quantized by default;
- IAT: keeping every MatMul (Aff_channel, attention, colour matrix) in float took it from
  19.6 to 46.8 dB;
- the IAT student: its first conv sees the dark input (14 -> 27 dB when kept float) and its
  global gamma / colour branch alone cost 16 dB in INT8.
"""

from __future__ import annotations

from dataclasses import dataclass

# ONNX op types whose inputs are not quantized unless a preset says otherwise.
ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "Pow", "Tanh", "Sigmoid", "Clip", "Resize", "CumSum")


@dataclass(frozen=True)
class Preset:
    quantize_ops: tuple[str, ...]  # ONNX op types that may be INT8
    float_modules: tuple[tuple[str, str], ...] = ()  # (module-path prefix, reason)
    float_first_conv: str = ""  # reason, if the conv reading the image stays float
    model_type_transformer: bool = False


PRESETS: dict[str, Preset] = {
    "iat": Preset(
        quantize_ops=("Conv",),
        float_first_conv="the first conv reads the dark input image directly",
        float_modules=(("global_net", "global gamma/colour branch: a few INT8 errors move the whole image"),),
    ),
    "iat_student": Preset(
        quantize_ops=("Conv",),
        float_first_conv="the first conv reads the dark input image (INT8 there: 14 dB, baseline.md)",
        float_modules=(
            ("global_refine", "global gamma/colour branch alone cost 16 dB in INT8 (baseline.md)"),
            ("gamma_head", "global gamma head"),
            ("color_head", "global colour-matrix head"),
        ),
    ),
    "zero_dce_pp": Preset(quantize_ops=("Conv",), float_first_conv="the first conv reads the dark input image"),
    "sgz": Preset(quantize_ops=("Conv",), float_first_conv="the first conv reads the dark input image"),
    "tinydce": Preset(quantize_ops=("Conv",), float_first_conv="the first conv reads the dark input image"),
    "llpacknet": Preset(
        quantize_ops=("Conv",),
        float_first_conv="the first conv reads the amplified Bayer input (values up to ~300); "
        "INT8 there cost 3.5 dB (measured at 512x768)",
    ),
}


def preset_for(model: str) -> Preset:
    return PRESETS.get(model, Preset(quantize_ops=("Conv", "MatMul")))
