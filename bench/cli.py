"""`lowlight-bench` / `python -m bench --target NAME ...`: argument parsing only; the work is bench.harness.run_bench()."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.harness import BenchRequest, run_bench
from bench.report import crosscheck_failures
from export.cli import add_target_arguments
from export.config import require_data_dir
from lowlight_edge.console import parser_for, run_main
from lowlight_edge.errors import UsageError
from lowlight_edge.zoo import list_models


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(
        "bench",
        description="Latency, memory and PSNR drift vs PyTorch FP32 for every model on a target "
        "from the targets file; each row in its own process, with a PyTorch eager row measured alongside.",
    )
    add_target_arguments(parser)
    parser.add_argument("--models", type=_names, help=f"comma-separated models (default: the whole zoo: {', '.join(list_models())})")
    parser.add_argument("--precision", type=_names, help="comma-separated precisions (default: the target's)")
    parser.add_argument("--images", type=Path, help="real images to run and measure drift on")
    parser.add_argument("--iterations", type=int, help="timed runs per row (default: the target's)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up runs (default: the target's)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="artifacts folder (built or reused)")
    parser.add_argument(
        "--crosscheck",
        action="store_true",
        help="also time every OpenVINO IR with OpenVINO's benchmark_app; a row apart by more than 10%% (above 10 ms; faster rows 20%% or 0.5 ms) fails the run (exit 1)",
    )
    parser.add_argument(
        "--device",
        metavar="ssh://[user@]host[:port]",
        help="measure on this device (default: the target's `remote:` in targets.yaml; `local`: this host) over your own ssh (keys, agent, ~/.ssh/config, known_hosts): artifacts and "
        "references are built here, the device needs Python 3.10+, numpy and the target's runtime; extra ssh "
        "options in LOWLIGHT_EDGE_SSH_OPTIONS; append ?python=/path/to/python3 for another interpreter there",
    )
    parser.add_argument(
        "--no-video",
        action="store_true",
        help="skip the video figures (streams at 30 fps end to end, temporal flicker with and without smoothing)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        msg = f"--iterations must be at least 1, got {args.iterations}"
        raise UsageError(msg)
    # The artifacts are built (or reused) with the data folder's calib/ images, and measured on
    # its eval/ unless --images is given: no folder is a one-line error before anything is written.
    require_data_dir("calibration images (the bench builds INT8 artifacts with them)")
    rows, failures = run_bench(
        BenchRequest(
            target=args.target,
            targets_file=args.targets_file,
            models=args.models,
            precisions=args.precision,
            images=args.images,
            iterations=args.iterations,
            warmup=args.warmup,
            out=args.out,
            artifacts=args.artifacts,
            progress=not args.quiet,
            crosscheck=args.crosscheck,
            device=args.device,
            video=not args.no_video,
        )
    )
    print((args.out / "results.md").read_text())
    # the baseline row (the plain export on OpenVINO's defaults) is a reference, not an artifact of
    # ours: when OpenVINO cannot run it, that is said, and the run is judged on the shipped rows
    errors = [r for r in rows if r.get("error") and not r.get("baseline")]
    for row in rows:
        if row.get("error") and row.get("baseline"):
            print(f"baseline row failed (not judged): {row['model']} plain export on OpenVINO defaults: {row['error']}",
                  file=sys.stderr)
    for row in errors:
        print(f"row failed: {row['model']} {row['runtime']} {row['precision']}: {row['error']}", file=sys.stderr)
    for failure in failures:
        print(f"over budget: {failure}", file=sys.stderr)
    disagreements = crosscheck_failures(rows)
    for line in disagreements:
        print(f"crosscheck: {line}", file=sys.stderr)
    return 1 if failures or errors or disagreements else 0


def run() -> int:
    """The `lowlight-bench` console script and `python -m bench`: main() with the exit codes."""
    return run_main(main)
