"""`lowlight-quantize MODEL ...` / `python -m quantize MODEL ...`: the pipeline up to its INT8 stage, with the plan printed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from export import pipeline
from export.cli import add_int8_arguments, add_target_arguments, check_ship, print_summary
from export.config import ExportRequest
from lowlight_edge.console import parser_for, run_main
from lowlight_edge.plan import load_plan
from lowlight_edge.targets import parse_resolution
from lowlight_edge.zoo import list_models


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(
        "quantize",
        description="INT8 with NNCF under an image-fidelity budget: searches which layers stay float, "
        "and ships float instead when INT8 misses the budget or is not shown faster (unless --ship pins it).",
    )
    parser.add_argument("model", help=f"zoo model: {', '.join(list_models())}")
    add_target_arguments(parser)
    add_int8_arguments(parser)
    parser.add_argument("--resolution", type=parse_resolution, help="HxW (default: the target's, else the model's)")
    parser.add_argument("--weights", default="default", help="registered weights name or a .pth path")
    parser.add_argument("--eval", dest="eval_dir", type=Path, help="real images for the drift check")
    parser.add_argument("--verify-images", type=int, default=4, help="eval images per drift check (default 4)")
    parser.add_argument("--out", type=Path, default=Path("artifacts"), help="output folder (default artifacts/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = ExportRequest(
        model=args.model,
        weights=args.weights,
        resolution=args.resolution,
        target=args.target,
        targets_file=args.targets_file,
        until="quantize",
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
    check_ship(request)
    manifest = pipeline.export(request, progress=not args.quiet)
    print_summary(manifest)
    plan = manifest.parent / "precision_plan.yaml"
    if plan.is_file():
        print(f"precision plan: {plan}")
        runtime = load_plan(plan).runtime
        if runtime.get("options"):
            chosen = "; ".join(f"{p}: {o or 'OpenVINO defaults'}" for p, o in runtime["options"].items())
            print(f"runtime options (decided on {runtime['host'].get('cpu')}, {runtime['host'].get('threads')} threads): {chosen}")
    return 0


def run() -> int:
    """The `lowlight-quantize` console script and `python -m quantize`: main() with the exit codes."""
    return run_main(main)
