"""results.json, results.md and results.png from the benchmark rows.

The three files are built in a temporary folder beside the output folder and only then moved
into place, one rename each: an interrupted run leaves the previous results or the new ones,
never a half-written file. (Between the three renames a reader may briefly see a new
results.json beside an old results.md.)
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lowlight_edge.atomic import write_json
from lowlight_edge.errors import MissingRequirement

# The keys every row carries, in this order (issue 6); extras such as artifact, notes, error,
# energy_mj_per_frame or flops follow them.
ROW_KEYS = (
    "model",
    "target",
    "runtime",
    "precision",
    "resolution",
    "latency_ms",
    "fps",
    "cold_start_s",
    "peak_mem_mb",
    "psnr_db",
    "ssim",
    "max_abs_err",
    "nonfinite",
    "speedup_vs_torch",
    "roofline_ms",
    "roofline_fraction",
    "host",
)
LATENCY_KEYS = ("p50", "p90", "p99", "max", "mean")
RESULT_FILES = ("results.json", "results.md", "results.png")


def normalize_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with every ROW_KEY present (missing ones set to None), ROW_KEYS first."""
    out = {key: row.get(key) for key in ROW_KEYS}
    out.update({k: v for k, v in row.items() if k not in out})
    return out


def _budget_values(budget: Any) -> tuple[float, float]:
    if isinstance(budget, Mapping):
        return float(budget["psnr_mean_db"]), float(budget["psnr_min_db"])
    return float(budget.psnr_mean_db), float(budget.psnr_min_db)


def _is_reference(row: Mapping[str, Any]) -> bool:
    """The PyTorch FP32 row: the reference itself, so it has no fidelity to judge."""
    return row.get("runtime") == "torch" and row.get("precision") == "fp32"


def row_verdict(row: Mapping[str, Any], budget: Any) -> str | None:
    """None when the row meets the budget (or is the reference), else why it does not."""
    if _is_reference(row):
        return None
    if row.get("error"):
        return f"did not run ({row['error']})"
    mean_db, min_db = _budget_values(budget)
    psnr = row.get("psnr_db") or {}
    if psnr.get("mean") is None or psnr.get("min") is None:
        return "no fidelity measured"
    problems = []
    if row.get("nonfinite"):
        problems.append(f"{row['nonfinite']} NaN/Inf values")
    if psnr["mean"] < mean_db:
        problems.append(f"PSNR mean {psnr['mean']:.2f} dB < {mean_db:g}")
    if psnr["min"] < min_db:
        problems.append(f"PSNR min {psnr['min']:.2f} dB < {min_db:g}")
    return ", ".join(problems) or None


def budget_failures(
    rows: Sequence[Mapping[str, Any]], budget: Any, *, include_errors: bool = True
) -> list[str]:
    """One line per row that misses the fidelity budget (a Budget or {psnr_mean_db, psnr_min_db}).

    A row that crashed or has no fidelity counts as a failure: it cannot show it meets the
    budget (``include_errors=False`` leaves crashed rows to the caller's own report). The
    PyTorch FP32 reference row is never judged.
    """
    failures = []
    for row in rows:
        if row.get("error") and not include_errors:
            continue
        verdict = row_verdict(row, budget)
        if verdict:
            failures.append(f"{_label(row)}: {verdict}")
    return failures


def crosscheck_failures(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per row whose benchmark_app cross-check disagrees (or could not run): which row, by how much.

    A row's ``crosscheck`` is bench.crosscheck.compare()'s record, {"error": why} when benchmark_app
    failed, or {"skipped": why} (a tiled row: nothing comparable to check, not a failure).
    """
    failures = []
    for row in rows:
        check = row.get("crosscheck")
        if not check or check.get("skipped"):
            continue
        if check.get("error"):
            failures.append(f"{_label(row)}: crosscheck did not run ({check['error']})")
        elif not check.get("ok"):
            failures.append(f"{_label(row)}: {_crosscheck_text(check)}, over the {check['tolerance']:.0%} tolerance")
    return failures


def _crosscheck_text(check: Mapping[str, Any]) -> str:
    return (
        f"bench p50 {check['bench_p50_ms']:.2f} ms vs benchmark_app {check['benchmark_app_p50_ms']:.2f} ms, "
        f"{check['rel_diff']:.1%} apart"
    )


def _crosscheck_verdict(check: Mapping[str, Any]) -> str:
    if check.get("skipped"):
        return f"not run: {check['skipped']}"
    if check.get("error"):
        return f"FAILED: {check['error']}"
    return "agree" if check.get("ok") else f"DISAGREE (tolerance {check['tolerance']:.0%})"


def _crosscheck_section(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The cross-check lines of results.md: (a summary bullet for the header, a table of every checked row)."""
    checked = [r for r in rows if r.get("crosscheck")]
    if not checked:
        return [], []
    failed = crosscheck_failures(checked)
    summary = (
        f"- **crosscheck vs OpenVINO benchmark_app: {len(failed)} of {len(checked)} rows DISAGREE or failed**"
        if failed
        else f"- crosscheck vs OpenVINO benchmark_app: all {len(checked)} checked rows agree"
    )
    lines = [
        "",
        "## Crosscheck (OpenVINO benchmark_app, same IR, threads, hint, shape)",
        "",
        "| model | runtime | precision | bench p50 ms | benchmark_app p50 ms | apart | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in checked:
        check = row["crosscheck"]
        lines.append(
            f"| {row.get('model')} | {row.get('runtime')} | {row.get('precision')} | {_fmt(check.get('bench_p50_ms'))} | "
            f"{_fmt(check.get('benchmark_app_p50_ms'))} | {_fmt(check.get('rel_diff'), '.1%')} | {_crosscheck_verdict(check)} |"
        )
    return [summary], lines


def _label(row: Mapping[str, Any]) -> str:
    return f"{row.get('model')} {row.get('runtime')} {row.get('precision')} @ {row.get('resolution')} on {row.get('target')}"


def fill_speedups(rows: Sequence[dict[str, Any]]) -> None:
    """Set speedup_vs_torch = torch FP32 p50 / row p50 for rows of the same model, resolution and target."""
    reference = {
        (r.get("model"), r.get("resolution"), r.get("target")): r["latency_ms"]["p50"]
        for r in rows
        if _is_reference(r) and not r.get("error") and r.get("latency_ms")
    }
    for row in rows:
        base = reference.get((row.get("model"), row.get("resolution"), row.get("target")))
        p50 = (row.get("latency_ms") or {}).get("p50")
        row["speedup_vs_torch"] = base / p50 if base and p50 else None


# --------------------------------------------------------------------------------------------
# Writers


def write_results(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    budget: Any = None,
    *,
    plot: bool = True,
    title: str = "",
) -> dict[str, Path]:
    """Write results.json, results.md and (when ``plot``) results.png into ``out_dir``.

    ``budget`` (a Budget or mapping) adds a pass/fail column; ``title`` heads the Markdown.
    Needs matplotlib for the plot: checked first, so a missing one writes nothing.
    """
    if plot:
        _require_matplotlib()
    rows = [normalize_row(r) for r in rows]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-results-", dir=out_dir))
    try:
        write_json(tmp / "results.json", rows)
        (tmp / "results.md").write_text(render_markdown(rows, budget, title=title))
        names = ["results.json", "results.md"]
        if plot:
            plot_results(rows, tmp / "results.png", budget)
            names.append("results.png")
        written = {}
        mode = 0o666 & ~_umask()  # mkstemp makes 0600 files; results are for everyone to read
        for name in names:
            os.chmod(tmp / name, mode)
            os.replace(tmp / name, out_dir / name)
            written[name] = out_dir / name
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        msg = "results.png needs matplotlib, which is not installed; pip install 'lowlight-edge[plot]' (or turn the plot off)"
        raise MissingRequirement(msg)


def _fmt(value: Any, spec: str = ".2f", none: str = "–") -> str:
    if value is None:
        return none
    if isinstance(value, float) and math.isnan(value):
        return none
    return format(value, spec)


def render_markdown(rows: Sequence[Mapping[str, Any]], budget: Any = None, title: str = "") -> str:
    """A readable table, one line per row, headed by the host it was measured on."""
    lines = [f"# {title or 'Benchmark results'}", ""]
    host = next((r["host"] for r in rows if r.get("host")), None)
    if host:
        versions = ", ".join(f"{k} {v}" for k, v in (host.get("versions") or {}).items() if v)
        lines.append(
            f"- host: {host.get('cpu')}, {host.get('threads')} threads"
            + (f", GPU {host['gpu']}" if host.get("gpu") else "")
        )
        if host.get("flags"):
            lines.append(f"- CPU flags: {' '.join(host['flags'])}")
        if host.get("jetson"):
            lines.append(
                f"- Jetson: {host['jetson'].get('l4t')}, power mode {host['jetson'].get('power_mode')}"
            )
        if versions:
            lines.append(f"- versions: {versions}")
        if host.get("limits"):
            limits = host["limits"]
            lines.append(
                f"- measured limits: FP32 matmul {_fmt(limits.get('matmul_gflops'), '.0f')} GFLOP/s, "
                f"copy {_fmt(limits.get('copy_gbps'), '.1f')} GB/s"
            )
    if budget is not None:
        mean_db, min_db = _budget_values(budget)
        lines.append(f"- fidelity budget vs PyTorch FP32: PSNR mean >= {mean_db:g} dB, min >= {min_db:g} dB")
    crosscheck_summary, crosscheck_lines = _crosscheck_section(rows)
    lines += crosscheck_summary
    lines.append("")
    header = [
        "model",
        "runtime",
        "precision",
        "resolution",
        "p50 ms",
        "p99 ms",
        "fps",
        "vs torch",
        "cold s",
        "peak MB",
        "PSNR mean/min dB",
        "SSIM",
        "max abs err",
        "NaN/Inf",
        "roofline",
    ]
    energy = any(r.get("energy_mj_per_frame") is not None for r in rows)
    if energy:
        header.append("mJ/frame")
    if budget is not None:
        header.append("budget")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    notes: list[str] = []
    for row in rows:
        latency = row.get("latency_ms") or {}
        psnr = row.get("psnr_db") or {}
        if _is_reference(row):
            fidelity = "reference"
        elif psnr.get("mean") is not None:
            fidelity = f"{psnr['mean']:.2f} / {psnr['min']:.2f}"
        else:
            fidelity = "–"
        cells = [
            str(row.get("model")),
            str(row.get("runtime")),
            str(row.get("precision")),
            str(row.get("resolution")),
            _fmt(latency.get("p50")),
            _fmt(latency.get("p99")),
            _fmt(row.get("fps"), ".1f"),
            _fmt(row.get("speedup_vs_torch"), ".2f") + ("x" if row.get("speedup_vs_torch") else ""),
            _fmt(row.get("cold_start_s")),
            _fmt(row.get("peak_mem_mb"), ".0f"),
            fidelity,
            _fmt(row.get("ssim"), ".4f"),
            _fmt(row.get("max_abs_err"), ".2e"),
            _fmt(row.get("nonfinite"), "d"),
            _fmt(row.get("roofline_fraction"), ".3f"),
        ]
        if energy:
            cells.append(_fmt(row.get("energy_mj_per_frame"), ".1f"))
        if budget is not None:
            verdict = row_verdict(row, budget)
            cells.append("–" if _is_reference(row) else ("FAIL" if verdict else "pass"))
        if row.get("error"):
            cells[4] = "error"
            notes.append(f"{_label(row)}: {row['error']}")
        lines.append("| " + " | ".join(cells) + " |")
        for note in row.get("notes") or []:
            notes.append(f"{_label(row)}: {note}")
    lines += [
        "",
        "Latency is per frame over varied real frames; `vs torch` is PyTorch FP32 p50 / row p50; "
        "`roofline` is the row's fraction of this host's lower bound (1.0 = at the bound); "
        "fidelity is against the PyTorch FP32 output (PSNR capped at 99 dB).",
    ]
    sources = sorted({str(r["peak_mem_source"]) for r in rows if r.get("peak_mem_source")})
    if sources:
        lines += ["", f"`peak MB` is: {'; '.join(sources)}."]
    lines += crosscheck_lines
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot_results(rows: Sequence[Mapping[str, Any]], path: str | Path, budget: Any = None) -> None:
    """Latency p50 (log x) vs PSNR mean, one marker per model x precision (x runtime), annotated.

    The PyTorch FP32 reference has no PSNR against itself: it is drawn as hollow markers on a
    line above the highest measured PSNR. A dashed line marks the budget's PSNR mean.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if not r.get("error") and (r.get("latency_ms") or {}).get("p50")]
    measured = [
        r["psnr_db"]["mean"]
        for r in points
        if not _is_reference(r) and (r.get("psnr_db") or {}).get("mean") is not None
    ]
    top = (max(measured) if measured else 40.0) + 5.0
    models = sorted({str(r.get("model")) for r in points})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    shapes = {"fp32": "o", "fp16": "s", "int8": "^"}

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    for row in points:
        p50 = row["latency_ms"]["p50"]
        psnr = (row.get("psnr_db") or {}).get("mean")
        reference = _is_reference(row) or psnr is None
        y = top if reference else psnr
        colour = colours[str(row.get("model"))]
        ax.scatter(
            p50,
            y,
            marker=shapes.get(str(row.get("precision")), "D"),
            s=60,
            facecolors="none" if reference else colour,
            edgecolors=colour,
        )
        label = f"{row.get('model')} {row.get('precision')} {row.get('runtime')}"
        ax.annotate(label, (p50, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.axhline(top, color="grey", linewidth=0.5, linestyle=":")
    if budget is not None:
        mean_db, _ = _budget_values(budget)
        ax.axhline(mean_db, color="red", linewidth=0.8, linestyle="--")
        ax.text(
            1.0,
            mean_db,
            f"budget {mean_db:g} dB ",
            transform=ax.get_yaxis_transform(),
            fontsize=7,
            va="bottom",
            ha="right",
            color="red",
        )
    ax.text(
        0.01,
        top,
        " PyTorch FP32 reference (no PSNR vs itself)",
        transform=ax.get_yaxis_transform(),
        fontsize=7,
        va="bottom",
        color="grey",
    )
    ax.set_xscale("log")
    ax.set_xlabel("latency p50 per frame (ms, log scale)")
    ax.set_ylabel("PSNR mean vs PyTorch FP32 (dB)")
    ax.set_title("Latency vs fidelity per model and precision")
    ax.grid(True, which="both", linewidth=0.3)
    handles = [plt.Line2D([], [], color=colours[m], marker="o", linestyle="", label=m) for m in models]
    handles += [
        plt.Line2D([], [], color="black", marker=s, linestyle="", label=p, markerfacecolor="none")
        for p, s in shapes.items()
    ]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
