"""``lowlight-runtimes`` / ``python -m runtimes``: list the backends, or enhance images with a built artifact."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lowlight_edge.console import parser_for, run_main
from lowlight_edge.zoo import list_models
from runtimes import BACKENDS, availability, get_backend
from runtimes.enhance import MODES, enhance


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parser() -> argparse.ArgumentParser:
    parser = parser_for("runtimes", description="List the backends, or enhance images with a built artifact.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="each backend and whether it is available here (and why not)")
    enh = sub.add_parser(
        "enhance",
        help="run a built artifact on images, folders, RAW files or videos and write enhanced PNGs/MP4s",
        description="Run ARTIFACT (.xml openvino, .onnx onnxruntime, .engine tensorrt; or a zoo name with "
        "--backend torch) on INPUT images and write OUT/<stem>.png. Static-shape artifacts tile larger "
        "images (or resize them with --mode resize) and say so.",
    )
    enh.add_argument(
        "artifact", help=f"built model file, or MODEL[:WEIGHTS] with --backend torch (MODEL: {', '.join(list_models())})"
    )
    enh.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders, RAW files (.dng/.arw/.nef/.cr2) or videos (.mp4/.mov/.mkv: written as OUT/<stem>.mp4)"
    )
    enh.add_argument("--out", required=True, help="folder for the enhanced PNGs (and MP4s for videos)")
    enh.add_argument("--backend", choices=BACKENDS, help="default: guessed from the artifact's suffix")
    enh.add_argument("--threads", type=_positive_int, help="CPU threads for the backend")
    enh.add_argument(
        "--mode", choices=MODES, help="how a static-shape artifact takes another image size (default: tile)"
    )
    enh.add_argument(
        "--overlap", type=int, help="tile overlap in px (default: the one measured for the model, ModelSpec.tiling)"
    )
    enh.add_argument(
        "--model",
        help="MODEL[:WEIGHTS] the artifact was built from, when no manifest.json beside it says "
        "(needed to tile or pad for a static artifact, and for the seam check)",
    )
    enh.add_argument(
        "--no-seam-check",
        action="store_true",
        help="do not run the PyTorch FP32 model on each full tiled/padded frame to measure the seams",
    )
    enh.add_argument(
        "--amp", type=float, help="RAW amplification (exposure ratio, <= 300); default: estimated"
    )
    enh.add_argument("--device", help="device for the backend (default: cpu; cuda for tensorrt)")
    enh.add_argument(
        "--temporal-smoothing",
        type=float,
        metavar="A",
        help="videos of iat/iat_student: smooth the per-frame gamma and colour matrix exponentially "
        "(A in [0, 1), e.g. 0.9) before applying them; prints flicker with and without, and the cost",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name, (ok, reason) in availability().items():
            if name == "tensorrt":  # two flavours, each with what it can do here (build / run)
                for flavour, (fok, freason) in get_backend(name).flavours().items():
                    label = f"tensorrt[{flavour}]"
                    print(f"{label:18s} {'yes' if fok else 'no ':3s}  {freason}")
                continue
            print(f"{name:18s} {'yes' if ok else 'no ':3s}  {reason}")
        return 0
    enhance(
        args.artifact,
        args.inputs,
        args.out,
        backend=args.backend,
        threads=args.threads,
        mode=args.mode,
        amp=args.amp,
        overlap=args.overlap,
        device=args.device,
        model=args.model,
        seam_check=not args.no_seam_check,
        temporal_smoothing=args.temporal_smoothing,
    )
    return 0


def run() -> int:
    """The `lowlight-runtimes` console script and `python -m runtimes`: main() with the exit codes."""
    return run_main(main)
