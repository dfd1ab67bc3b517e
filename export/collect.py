"""`lowlight-collect DIR` / `python -m export.collect DIR`: one MANIFEST.json over every artifact under DIR.

Per file: model, target, stage, precision, sha256, bytes, fidelity and the tool versions of the
run that made it; bench results found under DIR are listed too. ``verify(DIR)`` re-checks it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from lowlight_edge.atomic import write_json
from lowlight_edge.console import parser_for, run_main
from lowlight_edge.errors import CheckFailed, DataError
from lowlight_edge.hashing import sha256_file


def collect(root: Path) -> Path:
    """Write root/MANIFEST.json; CheckFailed (nothing written) when any model folder does not verify.

    Each model's manifest.json must describe exactly the files beside it (sha256 and size), and a
    model folder without one (an export that was interrupted or failed) is refused, never skipped.
    """
    root = Path(root)
    if not root.is_dir():
        msg = f"{root} is not a folder; pass the --out folder of the exports"
        raise DataError(msg)
    manifests = sorted(root.glob("*/*/manifest.json"))
    incomplete = sorted(
        p.parent.relative_to(root).as_posix() for p in root.glob("*/*/.stamps") if not (p.parent / "manifest.json").is_file()
    )
    if incomplete:
        msg = f"{len(incomplete)} export(s) under {root} did not finish ({', '.join(incomplete[:3])}): no manifest.json; rerun python -m export for them"
        raise CheckFailed(msg)
    if not manifests:
        msg = f"no */*/manifest.json under {root}; run `python -m export MODEL --out {root}` first"
        raise DataError(msg)
    problems = [problem for path in manifests for problem in manifest_problems(path)]
    if problems:
        msg = f"{len(problems)} file(s) under {root} differ from their manifest.json ({'; '.join(problems[:3])}); rerun python -m export for them"
        raise CheckFailed(msg)
    files, models = [], {}
    for path in manifests:
        manifest = json.loads(path.read_text())
        folder = path.parent.relative_to(root).as_posix()
        models.setdefault(manifest["target"], []).append(manifest["model"])
        entries = [{"path": "manifest.json", "stage": "manifest", "precision": "-"}] + manifest["files"]
        for f in entries:
            file = path.parent / f["path"]
            files.append(
                {
                    "path": f"{folder}/{f['path']}",
                    "model": manifest["model"],
                    "target": manifest["target"],
                    "stage": f["stage"],
                    "precision": f["precision"],
                    "sha256": sha256_file(file),
                    "bytes": file.stat().st_size,
                    "fidelity": f.get("fidelity"),
                    "versions": manifest["versions"],
                }
            )
    for result in sorted(root.glob("**/results.*")):
        files.append(
            {
                "path": result.relative_to(root).as_posix(),
                "model": "*",
                "target": "*",
                "stage": "bench",
                "precision": "-",
                "sha256": sha256_file(result),
                "bytes": result.stat().st_size,
            }
        )
    out = root / "MANIFEST.json"
    write_json(out, {"models": models, "files": files})
    return out


def manifest_problems(path: Path) -> list[str]:
    """What in a model's manifest.json does not match the files beside it (empty: it verifies)."""
    try:
        manifest = json.loads(path.read_text())
        records = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{path}: unreadable ({type(err).__name__})"]
    problems = []
    for f in records:
        file = path.parent / f["path"]
        if not file.is_file():
            problems.append(f"{file} is missing")
        elif file.stat().st_size != f.get("bytes") or sha256_file(file) != f.get("sha256"):
            problems.append(f"{file} is not the file its manifest describes")
    return problems


def verify(root: Path, expected_models: list[str] | dict[str, list[str]] | None = None) -> dict:
    """Raise CheckFailed unless every listed file exists with its sha256 and every model is present.

    ``expected_models``: the models every target must hold, or {target: models} per target.
    """
    root = Path(root)
    manifest = json.loads((root / "MANIFEST.json").read_text())
    problems = []
    for f in manifest["files"]:
        file = root / f["path"]
        if not file.is_file():
            problems.append(f"missing {f['path']}")
        elif sha256_file(file) != f["sha256"]:
            problems.append(f"sha256 mismatch {f['path']}")
    if isinstance(expected_models, dict):
        for target in sorted(set(expected_models) - set(manifest["models"])):
            problems.append(f"{target}: no artifacts at all")
    for target, names in manifest["models"].items():
        wanted = expected_models.get(target, []) if isinstance(expected_models, dict) else expected_models
        missing = sorted(set(wanted or []) - set(names))
        if missing:
            problems.append(f"{target}: no artifacts for {', '.join(missing)}")
    if problems:
        msg = f"MANIFEST.json does not verify: {'; '.join(problems[:5])}"
        raise CheckFailed(msg)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for("export.collect", description="Write DIR/MANIFEST.json over every artifact under DIR.")
    parser.add_argument("artifacts", metavar="ARTIFACTS_DIR", type=Path, help="the folder `--out` of the exports")
    args = parser.parse_args(argv)
    print(collect(args.artifacts))
    return 0


def run() -> int:
    """The `lowlight-collect` console script and `python -m export.collect`: main() with the exit codes."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(run())
