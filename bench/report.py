"""results.json, results.md, results.png and results.html from the benchmark rows.

The files are built in a temporary folder beside the output folder and only then moved
into place, one rename each: an interrupted run leaves the previous results or the new ones,
never a half-written file. (Between the renames a reader may briefly see a new
results.json beside an old results.md.) results.html is self-contained: the plot and each row's
thumbnails (bench.preview) are inline data URIs, so it opens offline and travels as one file.
"""

from __future__ import annotations

import base64
import html
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.preview import RowPreview
from bench.video_rows import markdown_lines as video_markdown
from bench.video_rows import summary_text as video_text
from lowlight_edge.atomic import write_json
from lowlight_edge.errors import MissingRequirement
from lowlight_edge.metrics import PSNR_CAP_DB

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
    "speedup_vs_baseline",
    "roofline_ms",
    "roofline_fraction",
    "host",
)
LATENCY_KEYS = ("p50", "p90", "p99", "max", "mean")
RESULT_FILES = ("results.json", "results.md", "results.png", "results.html")


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


def _is_baseline(row: Mapping[str, Any]) -> bool:
    """The OpenVINO-defaults row on the plain export (bench.harness.baseline_job): a speed reference, not shipped."""
    return bool(row.get("baseline"))


BASELINE_PRECISION = "fp32 (OpenVINO defaults, plain export)"
BASELINE_MARKER = "X"  # the plot's marker for a baseline row


def used_options(runtime_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The runtime options a row's runner compiled with, from its own record (``runtime_info``)."""
    return dict(((runtime_info or {}).get("runtime_options") or {}).get("used") or {})


def runtime_options_text(row: Mapping[str, Any]) -> str:
    """The runtime options the row's runner compiled with, when they are not plain f32 ("" then):
    e.g. "bf16 float layers, denormals flushed", "bf16 float layers but 3 kept f32"."""
    used = used_options(row.get("runtime_info"))
    parts = [f"{used['precision']} float layers"] if used.get("precision") not in (None, "f32") else []
    if parts and used.get("f32_layers"):
        parts[0] += f" but {len(used['f32_layers'])} kept f32"
    if used.get("denormals"):
        parts.append("denormals flushed")
    if used.get("cpu_pinning") is False:
        parts.append("threads unpinned")
    return ", ".join(parts)


def _precision_text(row: Mapping[str, Any]) -> str:
    """The row's precision as the tables show it: the baseline's says what it is, and a row run
    with runtime options (BF16 float layers, denormal flushing) says so."""
    if _is_baseline(row):
        return BASELINE_PRECISION
    options = runtime_options_text(row)
    return f"{row.get('precision')} ({options})" if options else str(row.get("precision"))


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
    PyTorch FP32 reference row is never judged, nor the OpenVINO-defaults baseline row: it is not
    an artifact we ship (its PSNR is still reported).
    """
    failures = []
    for row in rows:
        if (row.get("error") and not include_errors) or _is_baseline(row):
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
            f"| {row.get('model')} | {row.get('runtime')} | {_precision_text(row)} | {_fmt(check.get('bench_p50_ms'))} | "
            f"{_fmt(check.get('benchmark_app_p50_ms'))} | {_fmt(check.get('rel_diff'), '.1%')} | {_crosscheck_verdict(check)} |"
        )
    return [summary], lines


def _label(row: Mapping[str, Any]) -> str:
    return f"{row.get('model')} {row.get('runtime')} {_precision_text(row)} @ {row.get('resolution')} on {row.get('target')}"


def fill_speedups(rows: Sequence[dict[str, Any]]) -> None:
    """Set speedup_vs_torch = torch FP32 p50 / row p50 and speedup_vs_baseline = OpenVINO-defaults
    baseline p50 / row p50, for rows of the same model, resolution and target (None without one).

    A row measured side by side with the baseline (``vs_baseline_paired``, bench.paired) gets that
    median instead: p50s of separate runs on a shared host are minutes apart.
    """
    for key, is_base in (("speedup_vs_torch", _is_reference), ("speedup_vs_baseline", _is_baseline)):
        reference = {
            (r.get("model"), r.get("resolution"), r.get("target")): r["latency_ms"].get("p50")
            for r in rows
            if is_base(r) and not r.get("error") and r.get("latency_ms")
        }
        for row in rows:
            base = reference.get((row.get("model"), row.get("resolution"), row.get("target")))
            p50 = (row.get("latency_ms") or {}).get("p50")
            row[key] = base / p50 if base and p50 else None
    for row in rows:
        paired = row.get("vs_baseline_paired") or {}
        if paired.get("median"):
            row["speedup_vs_baseline"] = paired["median"]


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
    """Write results.json, results.md and (when ``plot``) results.png and results.html into ``out_dir``.

    ``budget`` (a Budget or mapping) adds a pass/fail column; ``title`` heads the Markdown and the
    page. A row's ``preview`` (bench.preview.RowPreview) becomes its thumbnails in results.html;
    results.json keeps only its summary. Needs matplotlib for the plot (the page shows it): checked
    first, so a missing one writes nothing.
    """
    if plot:
        _require_matplotlib()
    rows = [normalize_row(r) for r in rows]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-results-", dir=out_dir))
    try:
        write_json(tmp / "results.json", [_json_row(r, in_html=plot) for r in rows])
        (tmp / "results.md").write_text(render_markdown(rows, budget, title=title))
        names = ["results.json", "results.md"]
        if plot:
            plot_results(rows, tmp / "results.png", budget)
            page = render_html(rows, budget, title=title, plot_png=(tmp / "results.png").read_bytes())
            (tmp / "results.html").write_text(page, encoding="utf-8")
            names += ["results.png", "results.html"]
        written = {}
        mode = 0o666 & ~_umask()  # mkstemp makes 0600 files; results are for everyone to read
        for name in names:
            os.chmod(tmp / name, mode)
            os.replace(tmp / name, out_dir / name)
            written[name] = out_dir / name
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _json_row(row: Mapping[str, Any], in_html: bool) -> dict[str, Any]:
    """The row as results.json holds it: a preview's images stay in results.html (and only if it is written)."""
    preview = row.get("preview")
    if not isinstance(preview, RowPreview):
        return dict(row)
    summary = preview.summary()
    if not in_html:
        summary.pop("in")
    return {**row, "preview": summary}


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


def _header_lines(rows: Sequence[Mapping[str, Any]], budget: Any = None) -> list[str]:
    """The host and budget facts that head results.md and results.html, one plain line each."""
    lines = []
    host = next((r["host"] for r in rows if r.get("host")), None)
    if host:
        versions = ", ".join(f"{k} {v}" for k, v in (host.get("versions") or {}).items() if v)
        lines.append(
            f"host: {host.get('cpu')}, {host.get('threads')} threads" + (f", GPU {host['gpu']}" if host.get("gpu") else "")
        )
        if host.get("flags"):
            lines.append(f"CPU flags: {' '.join(host['flags'])}")
        if host.get("jetson"):
            lines.append(f"Jetson: {host['jetson'].get('l4t')}, power mode {host['jetson'].get('power_mode')}")
        if versions:
            lines.append(f"versions: {versions}")
        if host.get("limits"):
            limits = host["limits"]
            lines.append(
                f"measured limits: FP32 matmul {_fmt(limits.get('matmul_gflops'), '.0f')} GFLOP/s, "
                f"copy {_fmt(limits.get('copy_gbps'), '.1f')} GB/s"
            )
    paired = [r["vs_baseline_paired"] for r in rows if (r.get("vs_baseline_paired") or {}).get("median")]
    if paired:
        lines.append(
            f"vs baseline: {paired[0]['statistic']}, {min(p['rounds'] for p in paired)}-{max(p['rounds'] for p in paired)} "
            "rounds (99% interval and every round's times: vs_baseline_paired in results.json); rows without it: ratio of p50s"
        )
    builds = {(r.get("model"), r.get("resolution")): r["build"] for r in rows if r.get("build")}
    if builds:
        parts = []
        for (model, resolution), cost in builds.items():
            limit = cost.get("limit") or {}
            seconds = cost.get("seconds_without_references", cost["seconds"])
            over = []
            if limit.get("seconds") and seconds > limit["seconds"]:
                over.append(f"over {limit['seconds']:g} s")
            if limit.get("peak_rss_mb") and cost["peak_rss_mb"] > limit["peak_rss_mb"]:
                over.append(f"over {limit['peak_rss_mb'] / 1024:g} GB")
            reused = " (cached from an earlier run)" if cost.get("reused") and len(cost["reused"]) == len(cost.get("stages") or {}) else ""
            refs = f" + {cost['references_seconds']:g} s first PyTorch references" if cost.get("references_seconds") else ""
            parts.append(f"{model} @ {resolution} {seconds:g} s{refs}, {cost['peak_rss_mb']} MB{reused}"
                         + (f" [{', '.join(over)}]" if over else ""))
        lines.append("build cost (stage sums from each manifest, this host): " + "; ".join(parts))
    if budget is not None:
        mean_db, min_db = _budget_values(budget)
        lines.append(f"fidelity budget vs PyTorch FP32: PSNR mean >= {mean_db:g} dB, min >= {min_db:g} dB")
    return lines


def render_markdown(rows: Sequence[Mapping[str, Any]], budget: Any = None, title: str = "") -> str:
    """A readable table, one line per row, headed by the host it was measured on."""
    lines = [f"# {title or 'Benchmark results'}", ""]
    lines += [f"- {line}" for line in _header_lines(rows, budget)]
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
        "vs baseline",
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
            _precision_text(row),
            str(row.get("resolution")),
            _fmt(latency.get("p50")),
            _fmt(latency.get("p99")),
            _fmt(row.get("fps"), ".1f"),
            _fmt(row.get("speedup_vs_torch"), ".2f") + ("x" if row.get("speedup_vs_torch") else ""),
            _fmt(row.get("speedup_vs_baseline"), ".2f") + ("x" if row.get("speedup_vs_baseline") else ""),
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
            if _is_reference(row):
                cells.append("–")
            elif _is_baseline(row):  # a reference: never fails the bench, its PSNR is shown all the same
                cells.append("not judged (baseline)")
            else:
                cells.append("FAIL" if verdict else "pass")
        if row.get("error"):
            cells[4] = "error"
            notes.append(f"{_label(row)}: {row['error']}")
        lines.append("| " + " | ".join(cells) + " |")
        for note in row.get("notes") or []:
            notes.append(f"{_label(row)}: {note}")
    lines += [
        "",
        "Latency is per frame over varied real frames; `vs torch` is PyTorch FP32 p50 / row p50; "
        f"`vs baseline` is the p50 of the `{BASELINE_PRECISION}` row (the ONNX as exported, before "
        "simplification and our graph passes, read by OpenVINO with its defaults: what a user gets without "
        "lowlight-edge) / row p50; "
        "`roofline` is the row's fraction of this host's lower bound (1.0 = at the bound); "
        "fidelity is against the PyTorch FP32 output (PSNR capped at 99 dB).",
    ]
    sources = sorted({str(r["peak_mem_source"]) for r in rows if r.get("peak_mem_source")})
    if sources:
        lines += ["", f"`peak MB` is: {'; '.join(sources)}."]
    lines += crosscheck_lines
    lines += video_markdown(list(rows))
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1200px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
ul.facts { color: #555; font-size: 0.9em; padding-left: 1.2em; }
.checks { padding: 0.5em 1em; border-radius: 4px; margin: 1em 0; }
.checks.ok { background: #e8f5e9; } .checks.fail { background: #fdecea; }
figure { margin: 0; } figure.plot img { max-width: 100%; height: auto; border: 1px solid #ddd; }
section.row { border-top: 1px solid #ccc; padding: 0.6em 0 1em; }
section.row h3 { margin: 0.2em 0; font-size: 1.05em; } .where { color: #777; font-weight: normal; }
.metrics { font-size: 0.9em; color: #333; margin: 0.3em 0; }
.verdict, .crosscheck { margin: 0.2em 0; font-size: 0.9em; }
.pass { color: #1b5e20; } .fail { color: #b71c1c; font-weight: bold; } .ref { color: #555; }
.thumbs { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 0.5em; }
.thumbs figure { width: 320px; } .thumbs img { width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
.noimg { color: #777; font-style: italic; }
ul.notes { font-size: 0.85em; color: #555; }
"""
# The page loads nothing from anywhere: a browser refuses any script, style file, font or image that is not inline.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _no_image_reason(row: Mapping[str, Any]) -> str:
    """Why a row has no thumbnails, in words."""
    if row.get("error"):
        return f"the row failed ({row['error']})"
    remote = (row.get("host") or {}).get("remote")
    if remote:
        return f"measured on {remote}; its outputs stay on the device"
    if isinstance(row.get("preview"), Mapping):
        return "these rows were read back from results.json, which keeps no images (they are made during the run)"
    return "this row recorded no thumbnail"


def _budget_html(row: Mapping[str, Any], budget: Any) -> str:
    if _is_reference(row):
        return '<p class="verdict ref">budget: the reference itself (not judged)</p>'
    if budget is None:
        return '<p class="verdict ref">budget: none given</p>'
    verdict = row_verdict(row, budget)
    if _is_baseline(row):
        detail = f"; it would fail: {verdict}" if verdict else ""
        return f'<p class="verdict ref">budget: not judged (the OpenVINO-defaults baseline, not a shipped artifact){html.escape(detail)}</p>'

    if verdict:
        return f'<p class="verdict fail">budget: FAIL, {html.escape(verdict)}</p>'
    return '<p class="verdict pass">budget: pass</p>'


def _crosscheck_html(row: Mapping[str, Any]) -> str:
    check = row.get("crosscheck")
    if not check:
        return '<p class="crosscheck ref">crosscheck: not run for this row</p>'
    ok = check.get("skipped") or (check.get("ok") and not check.get("error"))
    detail = f"; {_crosscheck_text(check)}" if check.get("bench_p50_ms") is not None and check.get("benchmark_app_p50_ms") is not None else ""
    css = "ref" if check.get("skipped") else ("pass" if ok else "fail")
    return f'<p class="crosscheck {css}">crosscheck vs benchmark_app: {html.escape(_crosscheck_verdict(check) + detail)}</p>'


def _thumbs_html(row: Mapping[str, Any]) -> str:
    preview = row.get("preview")
    if row.get("error") or not isinstance(preview, RowPreview):
        return f'<p class="noimg">no image: {html.escape(_no_image_reason(row))}</p>'
    what = f"{row.get('model')} {row.get('runtime')} {_precision_text(row)}"
    frames = row.get("frames")
    frame = f"eval frame 1 of {frames}" if frames else "first eval frame"
    cells = [
        (preview.input_png, f"{preview.input_caption} ({frame})", f"input of {what}"),
        (preview.output_png, f"output of {row.get('runtime')} {_precision_text(row)}", f"output of {what}"),
    ]
    if preview.diff_png is not None:
        if preview.diff_max == 0:
            caption = "|output \u2212 PyTorch FP32|: identical (all zero)"
        else:
            caption = f"|output \u2212 PyTorch FP32| \u00d7{preview.diff_scale:.0f} (block max; max {preview.diff_max:.2g})"
        if _is_reference(row):
            caption += ", the reference's own rerun"
        cells.append((preview.diff_png, caption, f"difference of {what} to PyTorch FP32"))
    figures = "".join(
        f'<figure><img class="thumb" src="{_data_uri(png)}" alt="{html.escape(alt)}"><figcaption>{html.escape(cap)}</figcaption></figure>'
        for png, cap, alt in cells
    )
    return f'<div class="thumbs">{figures}</div>'


def _metrics_html(row: Mapping[str, Any]) -> str:
    latency = row.get("latency_ms") or {}
    psnr = row.get("psnr_db") or {}
    if _is_reference(row):
        fidelity = "PSNR: the reference"
    elif psnr.get("mean") is not None:
        fidelity = f"PSNR mean / min {_psnr_label(float(psnr['mean']))} / {_psnr_label(float(psnr['min']))}"
    else:
        fidelity = "PSNR: not measured"
    parts = [
        f"p50 {_fmt(latency.get('p50'))} ms",
        f"p99 {_fmt(latency.get('p99'))} ms",
        f"{_fmt(row.get('fps'), '.1f')} fps",
        f"vs torch {_fmt(row.get('speedup_vs_torch'))}" + ("x" if row.get("speedup_vs_torch") else ""),
        f"vs baseline {_fmt(row.get('speedup_vs_baseline'))}" + ("x" if row.get("speedup_vs_baseline") else ""),
        f"peak {_fmt(row.get('peak_mem_mb'), '.0f')} MB",
        fidelity,
        f"SSIM {_fmt(row.get('ssim'), '.4f')}",
        f"max abs err {_fmt(row.get('max_abs_err'), '.2e')}",
        f"NaN/Inf {_fmt(row.get('nonfinite'), 'd')}",
    ]
    return '<p class="metrics">' + html.escape(" \u00b7 ".join(parts)) + "</p>"


def render_html(rows: Sequence[Mapping[str, Any]], budget: Any = None, *, title: str = "", plot_png: bytes | None = None) -> str:
    """results.html: the plot, then per row its figures, budget and crosscheck verdicts and thumbnails.

    Everything is inline (data URIs, one style block, no script) and a Content-Security-Policy
    forbids loading anything else, so the page looks the same offline and when mailed as one file.
    """
    title = title or "Benchmark results"
    esc = html.escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<ul class="facts">' + "".join(f"<li>{esc(line)}</li>" for line in _header_lines(rows, budget)) + "</ul>",
    ]
    failures = (budget_failures(rows, budget) if budget is not None else []) + crosscheck_failures(rows)
    if failures:
        out.append(f'<div class="checks fail"><b>{len(failures)} failed check(s)</b><ul>'
                   + "".join(f"<li>{esc(f)}</li>" for f in failures) + "</ul></div>")
    elif budget is not None:
        out.append('<div class="checks ok">every row meets the fidelity budget'
                   + (" and every crosscheck agrees" if any(r.get("crosscheck") for r in rows) else "") + "</div>")
    if plot_png is not None:
        out.append(f'<figure class="plot"><img class="plot" src="{_data_uri(plot_png)}" alt="latency p50 vs PSNR mean per row">'
                   "<figcaption>Latency p50 (log scale) vs PSNR mean against PyTorch FP32; dashed vertical lines: the "
                   f"PyTorch FP32 reference of each model; PSNR is capped at {PSNR_CAP_DB:g} dB.</figcaption></figure>")
    out.append("<h2>Rows</h2>")
    for i, row in enumerate(rows):
        where = f"@ {row.get('resolution')} on {row.get('target')}"
        notes = [*(row.get("notes") or [])]
        out += [
            f'<section class="row" id="row-{i}">',
            f"<h3>{esc(str(row.get('model')))} \u00b7 {esc(str(row.get('runtime')))} \u00b7 {esc(_precision_text(row))} "
            f'<span class="where">{esc(where)}</span></h3>',
            _metrics_html(row),
            _budget_html(row, budget),
            _crosscheck_html(row),
            *([f'<p class="metrics video">{esc(text)}</p>'] if (text := video_text(row.get("video"))) else []),
            _thumbs_html(row),
        ]
        if notes:
            out.append('<ul class="notes">' + "".join(f"<li>{esc(str(n))}</li>" for n in notes) + "</ul>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def plot_results(rows: Sequence[Mapping[str, Any]], path: str | Path, budget: Any = None) -> None:
    """results.png: latency_figure() saved as a PNG."""
    import matplotlib.pyplot as plt

    fig = latency_figure(rows, budget)
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def _psnr_label(value: float) -> str:
    """A PSNR as shown: capped values (metrics.PSNR_CAP_DB) are a floor, not a measurement."""
    return f"\u2265 {PSNR_CAP_DB:g} dB" if value >= PSNR_CAP_DB else f"{value:.1f} dB"


def latency_figure(rows: Sequence[Mapping[str, Any]], budget: Any = None):
    """Latency p50 (log x) vs PSNR mean, one marker per model x precision x runtime, labelled without overlaps.

    The PyTorch FP32 row is the reference itself, so it has no PSNR: it is a vertical line at its
    latency, named in the legend. PSNR at the metrics cap is drawn at the cap and labelled "≥ 99 dB".
    The legend sits outside the axes so it never covers a point or the budget line; the point
    labels are placed where they overlap nothing drawn before them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    timed = [r for r in rows if not r.get("error") and (r.get("latency_ms") or {}).get("p50")]
    references = [r for r in timed if _is_reference(r)]
    points = [r for r in timed if not _is_reference(r) and (r.get("psnr_db") or {}).get("mean") is not None]
    models = sorted({str(r.get("model")) for r in timed})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    shapes = {"fp32": "o", "fp16": "s", "int8": "^"}

    fig, ax = plt.subplots(figsize=(10, 6), dpi=110, layout="constrained")
    ys = [min(float(r["psnr_db"]["mean"]), PSNR_CAP_DB) for r in points]
    for row, y in zip(points, ys, strict=True):
        ax.scatter(
            row["latency_ms"]["p50"],
            y,
            marker=BASELINE_MARKER if _is_baseline(row) else shapes.get(str(row.get("precision")), "D"),
            s=60,
            color=colours[str(row.get("model"))],
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
            gid=f"point:{row.get('model')}:{row.get('runtime')}:{row.get('precision')}" + (":baseline" if _is_baseline(row) else ""),
        )
    handles = []
    for row in references:
        p50 = row["latency_ms"]["p50"]
        colour = colours[str(row.get("model"))]
        handles.append(
            ax.axvline(p50, color=colour, linewidth=1.2, linestyle=(0, (4, 2)), zorder=1, gid=f"reference:{row.get('model')}",
                       label=f"PyTorch FP32 {row.get('model')}: {_ms(p50)} (the reference: no PSNR vs itself)")
        )
    budget_line = None
    mean_db = None
    if budget is not None:
        mean_db, _ = _budget_values(budget)
        budget_line = ax.axhline(mean_db, color="red", linewidth=0.9, linestyle="--", zorder=2, gid="budget",
                                 label=f"budget: PSNR mean \u2265 {mean_db:g} dB")
        handles.append(budget_line)

    span = ys + ([mean_db] if mean_db is not None else [])
    low, high = (min(span), max(span)) if span else (30.0, 60.0)
    ax.set_ylim(low - max(3.0, 0.08 * (high - low)), high + max(3.0, 0.12 * (high - low)))
    latencies = [r["latency_ms"]["p50"] for r in timed]
    if latencies:
        ax.set_xlim(min(latencies) / 1.6, max(latencies) * 1.6)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    if any(y >= PSNR_CAP_DB for y in ys):  # the cap is a floor: its tick says so
        ticks = [t for t in ax.get_yticks() if abs(t - PSNR_CAP_DB) > 0.04 * (ax.get_ylim()[1] - ax.get_ylim()[0])]
        ax.set_yticks(sorted([*ticks, PSNR_CAP_DB]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"\u2265 {v:g}" if v == PSNR_CAP_DB else f"{v:g}"))
        ax.set_ylim(*ax.get_ylim())
    ax.set_xlabel("latency p50 per frame (ms, log scale)")
    ax.set_ylabel("PSNR mean vs PyTorch FP32 (dB)")
    ax.set_title("Latency vs fidelity per model and precision")
    ax.grid(True, which="major", linewidth=0.4)
    ax.grid(True, which="minor", linewidth=0.2, alpha=0.5)
    handles += [plt.Line2D([], [], color=colours[m], marker="o", linestyle="", label=m) for m in models]
    handles += [
        plt.Line2D([], [], color="black", marker=shape, linestyle="", label=p, markerfacecolor="none")
        for p, shape in shapes.items()
        if any(r.get("precision") == p and not _is_baseline(r) for r in points)
    ]
    if any(_is_baseline(r) for r in points):
        handles.append(plt.Line2D([], [], color="black", marker=BASELINE_MARKER, linestyle="", markerfacecolor="none",
                                  label="fp32, OpenVINO defaults on the plain export (baseline)"))
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)

    fig.canvas.draw()  # the constrained layout settles here; then freeze it and place labels on it
    fig.set_layout_engine("none")
    _thin_log_ticks(fig, ax)
    _place_labels(fig, ax, points, ys)
    return fig


def _boxes_overlap(boxes) -> bool:
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _thin_log_ticks(fig, ax) -> None:
    """Ticks at 1-2-3-5 per decade (a narrow span), else 1-2-5, else 1 per decade, else fewer: the densest whose labels fit."""
    from matplotlib.ticker import LogLocator

    renderer = fig.canvas.get_renderer()
    low, high = ax.get_xlim()
    for subs, step in (((1.0, 2.0, 3.0, 5.0), 1), ((1.0, 2.0, 5.0), 1), ((1.0,), 1), ((1.0,), 2), ((1.0,), 3)):
        ax.xaxis.set_major_locator(LogLocator(base=10.0 ** step, subs=subs))
        fig.canvas.draw()
        labels = [t for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]
        if not _boxes_overlap([t.get_window_extent(renderer).expanded(1.15, 1.0) for t in labels]):
            return


def _label_offsets() -> list[tuple[float, float, str]]:
    """Candidate (dx, dy) label offsets in points, nearest first, with the alignment that keeps the text off its point."""
    out = []
    for r in (9, 16, 24, 34, 46, 60):
        for deg in (30, -30, 150, -150, 90, -90, 0, 180, 60, -60, 120, -120):
            dx, dy = r * math.cos(math.radians(deg)), r * math.sin(math.radians(deg))
            out.append((dx, dy, "left" if dx > 2 else ("right" if dx < -2 else "center")))
    return out


def _place_labels(fig, ax, points, ys) -> None:
    """Annotate each point at the nearest offset whose text overlaps no marker, label, line or legend.

    Overlaps are weighted (another label 10, a marker 5, a budget/reference line 1, outside the
    axes 100) and the cheapest candidate wins when none is free; a label set far from its point
    gets a thin leader line.
    """
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    taken = [(legend.get_window_extent(renderer), 100)] if legend else []
    radius = 6 * fig.dpi / 72  # about a marker of s=60
    for row, y in zip(points, ys, strict=True):
        cx, cy = ax.transData.transform((row["latency_ms"]["p50"], y))
        taken.append((Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius), 5))
    for line in ax.get_lines():  # the budget and reference lines: a label across one is hard to read
        if str(line.get_gid()).startswith(("budget", "reference")):
            taken.append((line.get_window_extent(renderer).padded(1.5), 1))
    for row, y in zip(points, ys, strict=True):
        kind = f"{row.get('precision')} baseline" if _is_baseline(row) else row.get("precision")
        text = f"{row.get('model')} {row.get('runtime')} {kind}: {_psnr_label(float(row['psnr_db']['mean']))}"
        xy = (row["latency_ms"]["p50"], y)
        note = ax.annotate(text, xy, xytext=(0, 0), textcoords="offset points", fontsize=7, va="center",
                           annotation_clip=False, gid="label")
        best = None
        for dx, dy, ha in _label_offsets():
            note.set_position((dx, dy))
            note.set_ha(ha)
            note.update_positions(renderer)  # the text's transform follows the new offset only after this
            box = Text.get_window_extent(note, renderer).padded(2)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            cost = sum(weight for other, weight in taken if box.overlaps(other)) + (0 if inside else 100)
            if best is None or cost < best[0]:
                best = (cost, dx, dy, ha, box)
            if cost == 0:
                break
        _, dx, dy, ha, box = best
        note.set_position((dx, dy))
        note.set_ha(ha)
        if math.hypot(dx, dy) > 20:  # set away from its point: a thin leader says whose label it is
            note.remove()
            ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), fontsize=7, ha=ha, va="center",
                        annotation_clip=False, gid="label",
                        arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 4})
        taken.append((box, 10))
