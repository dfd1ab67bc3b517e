"""`lowlight-export MODEL ...` / `python -m export MODEL ...`: argument parsing only; the work is export.pipeline.export()."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from export import pipeline
from export.config import DEFAULT_OPSET, STAGES, ExportRequest
from export.remote import parse_device
from lowlight_edge.console import parser_for, run_main
from lowlight_edge.errors import UsageError
from lowlight_edge.targets import get_target, parse_resolution
from lowlight_edge.zoo import list_models


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(
        "export",
        description="Compile a zoo model: checkpoint -> ONNX -> simplified ONNX -> INT8 -> engine, "
        "verifying every stage against the PyTorch FP32 output on real images.",
    )
    parser.add_argument("model", help=f"zoo model: {', '.join(list_models())}")
    parser.add_argument("--weights", default="default", help="registered weights name, a .pth path, or 'none' (random)")
    parser.add_argument("--resolution", type=parse_resolution, help="HxW (default: the target's, else the model's)")
    parser.add_argument("--dynamic", action="store_true", help="dynamic H and W (verified at two other sizes)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    add_target_arguments(parser)
    parser.add_argument("--until", choices=STAGES, default="engine", help="last stage to run (default engine)")
    parser.add_argument("--out", type=Path, default=Path("artifacts"), help="output folder (default artifacts/)")
    parser.add_argument("--eval", dest="eval_dir", type=Path, help="real images for verification")
    add_int8_arguments(parser)
    parser.add_argument("--verify-images", type=int, default=4, help="eval images per verification (default 4)")
    parser.add_argument(
        "--device",
        metavar="ssh://[user@]host[:port]",
        help="TensorRT targets: build the engines on this device with its TensorRT (ONNX, QDQ ONNX and FP16 ONNX "
        "are made here and sent); engines and sidecars land in the export folder. Other runtimes: refused "
        "(their IR / ONNX is portable; bench it there with python -m bench --device)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--target and --targets, shared by `lowlight-export`, `lowlight-quantize` and `lowlight-bench`."""
    parser.add_argument("--target", default="x86-cpu", help="target from the targets file (default x86-cpu)")
    parser.add_argument(
        "--targets",
        dest="targets_file",
        type=Path,
        metavar="PATH",
        help="targets file (default: the targets.yaml packaged with lowlight_edge)",
    )


def add_int8_arguments(parser: argparse.ArgumentParser) -> None:
    """The INT8 options shared by `python -m export` and `python -m quantize`."""
    parser.add_argument("--method", choices=("ptq", "qat"), default="ptq", help="post-training or QAT (default ptq)")
    parser.add_argument("--calib", dest="calib_dir", type=Path, help="calibration images (never the eval images)")
    parser.add_argument(
        "--calib-size", type=int, help="calibration images (default 32, fewer for frames too large to hold 32)"
    )
    parser.add_argument(
        "--calib-max-mean",
        type=float,
        default=0.25,
        help="calibrate on low-light frames only: skip images brighter than this mean level (default 0.25; 1.0 = all)",
    )
    parser.add_argument("--budget-db", type=float, help="mean PSNR budget vs FP32 (default: the target's)")
    parser.add_argument(
        "--qat-seconds", type=float, default=240.0, help="QAT fine-tuning time on this machine (default 240)"
    )
    parser.add_argument(
        "--ship",
        choices=("auto", "int8", "fp32"),
        default="auto",
        help="which precision ships: auto (default) = INT8 only if it meets the budget and is shown at least 5%% "
        "faster than FP32, a speed tie ships FP32; int8 | fp32 pins it (fidelity and speed are still measured and "
        "recorded in precision_plan.yaml; a pinned int8 that misses the budget ships FP32 with the reason)",
    )


def request_from_args(args: argparse.Namespace) -> ExportRequest:
    weights = None if str(args.weights).lower() == "none" else args.weights
    return ExportRequest(
        model=args.model,
        weights=weights,
        resolution=args.resolution,
        dynamic=args.dynamic,
        opset=args.opset,
        target=args.target,
        targets_file=args.targets_file,
        until=args.until,
        out=args.out,
        eval_dir=args.eval_dir,
        calib_dir=args.calib_dir,
        calib_size=args.calib_size,
        calib_max_mean=args.calib_max_mean,
        method=args.method,
        qat_seconds=args.qat_seconds,
        budget_db=args.budget_db,
        verify_images=args.verify_images,
        ship=args.ship,
    )


def check_ship(request: ExportRequest) -> None:
    """--ship int8 on a target that lists no int8 precision would be ignored: a UsageError instead."""
    if request.ship == "int8":
        target = get_target(request.target, request.targets_file)
        if "int8" not in target.precisions:
            msg = f"--ship int8: target {target.name} lists no int8 precision ({', '.join(target.precisions)}); drop --ship or pick another target"
            raise UsageError(msg)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = request_from_args(args)
    check_ship(request)
    device = parse_device(args.device) if args.device else None
    manifest_path = pipeline.export(request, progress=not args.quiet, device=device)
    print_summary(manifest_path)
    return 0


def run() -> int:
    """The `lowlight-export` console script and `python -m export`: main() with the exit codes."""
    return run_main(main)


def print_summary(manifest_path: Path) -> None:
    manifest = json.loads(manifest_path.read_text())
    print(f"{manifest['model']} -> {manifest_path.parent}  (target {manifest['target']})")
    for f in manifest["files"]:
        fid = f.get("fidelity") or {}
        psnr = fid.get("psnr_db", {})
        where = f" {fid.get('runtime')}: PSNR mean {psnr.get('mean')} / min {psnr.get('min')} dB" if fid else ""
        print(f"  {f['stage']:9} {f['precision']:5} {f['path']:40} {f['bytes'] / 1e6:8.2f} MB{where}")
    for f in manifest["files"]:  # INT8 shipped: say why (a float decision is already one of the notes)
        if f.get("role") == "plan" and f.get("precision") == "int8" and f.get("notes"):
            print(f"  shipped int8: {f['notes'][0]}")
    for note in manifest.get("notes", []):
        print(f"  note: {note}")
    print(f"manifest: {manifest_path}")
