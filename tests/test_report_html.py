"""results.html and results.png (issue 18): a real tiny bench, its page rendered in a real headless Chromium.

The browser test skips without Chromium; CI (.ci/run) installs it and sets LOWLIGHT_EDGE_REQUIRE_CHROMIUM=1,
so there a missing browser fails instead.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.harness import BenchRequest, run_bench
from bench.preview import (
    THUMB_SIDE,
    diff_scale,
    input_thumbnail,
    load_row_preview,
    png_bytes,
    shrink,
    write_preview_npz,
)
from bench.report import latency_figure, write_results
from lowlight_edge.metrics import PSNR_CAP_DB
from tests.test_bench_cli import TINY_TARGET

BUDGET = {"psnr_mean_db": 40.0, "psnr_min_db": 38.0}
# Written into a copy of the page, first in <head>: records script errors and console.error calls, then,
# once the page has loaded, how many images there are and how many decoded (naturalWidth > 0).
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener("error", e => __errors.push("error: " + (e.message || (e.target && e.target.src) || e)), true);
window.addEventListener("securitypolicyviolation", e => __errors.push("csp: " + e.blockedURI + " " + e.violatedDirective));
const _consoleError = console.error;
console.error = (...a) => { __errors.push("console.error: " + a.join(" ")); _consoleError(...a); };
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: imgs.length,
    loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    thumbs: document.querySelectorAll("img.thumb").length,
    widest_thumb: Math.max(0, ...[...document.querySelectorAll("img.thumb")].map(i => Math.max(i.naturalWidth, i.naturalHeight))),
    no_image: document.querySelectorAll(".noimg").length,
    errors: __errors,
  });
  document.body.appendChild(probe);
});
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if path is None:
        if os.environ.get("LOWLIGHT_EDGE_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is missing: apt-get install -y chromium")
        pytest.skip("no chromium here (apt-get install chromium); CI installs it and does not skip")
    return path


def render(page: Path, tmp: Path) -> tuple[dict, list[str]]:
    """(the probe's record, the browser's console lines) of ``page`` opened from disk in headless Chromium."""
    text = page.read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', text)
    assert csp, "the page declares no Content-Security-Policy"
    # the probe is the only script: allow inline scripts, and nothing else (images stay data: only)
    probed = text.replace(csp.group(1), csp.group(1) + "; script-src 'unsafe-inline'").replace("<head>", "<head>" + PROBE_HEAD, 1)
    probe_page = tmp / "probe.html"
    probe_page.write_text(probed, encoding="utf-8")
    proc = subprocess.run(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", probe_page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page never finished loading: {proc.stdout[-500:]} {proc.stderr[-1000:]}"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")), console


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, shared) -> tuple[list[dict], Path]:
    """A real bench of tinydce on a tiny OpenVINO target: PyTorch, FP32 IR, (if shipped) INT8 and the baseline rows."""
    tmp = tmp_path_factory.mktemp("bench")
    targets = tmp / "targets.yaml"
    targets.write_text(TINY_TARGET)
    request = BenchRequest(target="tiny-cpu", targets_file=targets, models=("tinydce",), iterations=3, warmup=1, frames=2,
                           out=tmp / "results", artifacts=tmp / "artifacts", progress=False)
    rows, _ = run_bench(request)
    return rows, tmp / "results"


def test_bench_page_renders_offline_with_every_thumbnail(bench_run, tmp_path: Path) -> None:
    rows, out = bench_run
    assert sorted(p.name for p in out.iterdir()) == ["results.html", "results.json", "results.md", "results.png"]
    assert all(not r.get("error") for r in rows) and {(r["runtime"], r["precision"]) for r in rows} >= {("torch", "fp32"), ("openvino", "fp32")}
    page = (out / "results.html").read_text(encoding="utf-8")
    # self-contained: every source is inline, nothing names another file or host
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    expected = 3 * len(rows)  # input, output and |diff| of each row's first eval frame
    assert page.count('class="thumb"') == expected
    saved = json.loads((out / "results.json").read_text())
    assert all(r["preview"]["in"] == "results.html" and r["preview"]["frame"] == 0 for r in saved)
    assert "base64" not in (out / "results.json").read_text()  # the images live in the page only
    # the FP32 IR matches PyTorch to far below one level of 255: its difference is amplified, and says how much
    fp32 = next(r for r in rows if r["runtime"] == "openvino" and r["precision"] == "fp32" and not r.get("baseline"))
    assert fp32["preview"].diff_scale >= 10 and f"\u00d7{fp32['preview'].diff_scale:.0f}" in page
    # the baseline row: its own section, thumbnails and ratio, its budget not judged
    assert [r["artifact"].endswith("tinydce.onnx") for r in rows if r.get("baseline")] == [True]
    assert "openvino \u00b7 fp32 (OpenVINO defaults, plain export)" in page and "vs baseline 1.00x" in page
    assert "budget: not judged (the OpenVINO-defaults baseline" in page

    probe, console = render(out / "results.html", tmp_path)
    assert probe["errors"] == [] and console == []
    assert probe["images"] == expected + 1 and probe["loaded"] == probe["images"]  # the thumbnails and the plot
    assert probe["thumbs"] == expected and probe["no_image"] == 0
    assert 0 < probe["widest_thumb"] <= THUMB_SIDE


def test_failed_and_remote_rows_say_why_they_have_no_image(bench_run, tmp_path: Path) -> None:
    rows, _ = bench_run
    last = [r for r in rows if not r.get("baseline")][-1]  # a shipped row: a failed one fails a check
    failed = {**last, "precision": "int8", "error": "killed by SIGKILL (out of memory?)", "preview": None}
    remote = {**last, "host": {**last["host"], "remote": "ssh://orin.local"}, "preview": None}
    write_results([*rows, failed, remote], tmp_path / "out", BUDGET, title="with failures")
    page = (tmp_path / "out" / "results.html").read_text(encoding="utf-8")
    assert "no image: the row failed (killed by SIGKILL (out of memory?))" in page
    assert "no image: measured on ssh://orin.local; its outputs stay on the device" in page
    assert page.count('class="thumb"') == 3 * len(rows)
    assert "budget: FAIL, did not run (killed by SIGKILL" in page and "1 failed check(s)" in page
    probe, console = render(tmp_path / "out" / "results.html", tmp_path)
    assert probe["errors"] == [] and console == [] and probe["loaded"] == probe["images"] == 3 * len(rows) + 1
    assert probe["no_image"] == 2


def test_page_shows_crosscheck_and_budget_verdicts(bench_run, tmp_path: Path) -> None:
    rows, _ = bench_run
    fp32 = next(r for r in rows if r["runtime"] == "openvino" and r["precision"] == "fp32" and not r.get("baseline"))
    checked = {**fp32, "crosscheck": {"ok": False, "bench_p50_ms": 5.0, "benchmark_app_p50_ms": 4.0, "rel_diff": 0.25, "tolerance": 0.2}}
    write_results([r if r is not fp32 else checked for r in rows], tmp_path / "out", BUDGET)
    page = (tmp_path / "out" / "results.html").read_text(encoding="utf-8")
    assert "crosscheck vs benchmark_app: DISAGREE (tolerance 20%); bench p50 5.00 ms vs benchmark_app 4.00 ms, 25.0% apart" in page
    assert "budget: the reference itself (not judged)" in page and "budget: pass" in page


# -- the plot --------------------------------------------------------------------------------


def plot_rows() -> list[dict]:
    """Crowded points near the budget line, a capped PSNR, two references and a 3-decade latency span."""
    def row(model, runtime, precision, p50, psnr=None):
        return {"model": model, "target": "x86-cpu", "resolution": "400x600", "runtime": runtime, "precision": precision,
                "latency_ms": {"p50": p50}, "psnr_db": None if psnr is None else {"mean": psnr, "min": psnr - 1}}
    return [
        row("tinydce", "torch", "fp32", 61.7),
        row("tinydce", "openvino", "fp32", 5.2, 41.5),
        row("tinydce", "openvino", "int8", 3.8, 41.0),
        row("tinydce", "onnxruntime", "int8", 4.0, 40.6),
        row("zero_dce_pp", "openvino", "fp32", 2.3, PSNR_CAP_DB),
        row("llpacknet", "torch", "fp32", 1797.0),
        row("llpacknet", "openvino", "int8", 258.0, 55.9),
        row("llpacknet", "openvino", "fp32", 652.0, 45.0),
    ]


def test_plot_draws_the_reference_as_a_line_never_at_an_invented_psnr() -> None:
    import matplotlib.pyplot as plt

    rows = plot_rows()
    fig = latency_figure(rows, BUDGET)
    try:
        ax = fig.axes[0]
        points = [c for c in ax.collections if str(c.get_gid()).startswith("point:")]
        assert len(points) == sum(r["runtime"] != "torch" for r in rows)
        assert not any(":torch:" in str(c.get_gid()) for c in points)
        ys = [float(c.get_offsets()[0][1]) for c in points]
        assert max(ys) <= PSNR_CAP_DB
        references = {line.get_gid(): line for line in ax.get_lines() if str(line.get_gid()).startswith("reference:")}
        assert sorted(references) == ["reference:llpacknet", "reference:tinydce"]
        assert list(references["reference:tinydce"].get_xdata()) == [61.7, 61.7]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "PyTorch FP32 tinydce: 61.7 ms (the reference: no PSNR vs itself)" in legend
        assert "PyTorch FP32 llpacknet: 1797 ms (the reference: no PSNR vs itself)" in legend
    finally:
        plt.close(fig)


def test_plot_labels_capped_psnr_and_nothing_overlaps() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    fig = latency_figure(plot_rows(), BUDGET)
    try:
        ax = fig.axes[0]
        fig.canvas.draw()  # what savefig draws: every label at its final place
        renderer = fig.canvas.get_renderer()
        labels = [t for t in ax.texts if t.get_gid() == "label"]
        assert len(labels) == 6
        assert "zero_dce_pp openvino fp32: \u2265 99 dB" in [t.get_text() for t in labels]
        assert any(t.get_text() == "\u2265 99" for t in ax.get_yticklabels())
        boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text itself, without its leader line
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
        legend = ax.get_legend().get_window_extent(renderer)
        budget = next(line for line in ax.get_lines() if line.get_gid() == "budget")
        assert not legend.overlaps(budget.get_window_extent(renderer).padded(1))
        assert not any(legend.overlaps(b) for b in boxes)
        low, high = ax.get_xlim()
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]
        assert len(ticks) >= 3 and not any(a.overlaps(b) for i, a in enumerate(ticks) for b in ticks[i + 1 :])
    finally:
        plt.close(fig)


# -- the thumbnails --------------------------------------------------------------------------


def decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)))


def test_plot_draws_the_baseline_as_its_own_point_with_its_own_label() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    rows = plot_rows()
    rows.append({**rows[1], "baseline": "openvino-default", "latency_ms": {"p50": 7.9}, "psnr_db": {"mean": PSNR_CAP_DB, "min": PSNR_CAP_DB}})
    fig = latency_figure(rows, BUDGET)
    try:
        ax = fig.axes[0]
        fig.canvas.draw()
        gids = [str(c.get_gid()) for c in ax.collections if str(c.get_gid()).startswith("point:")]
        assert "point:tinydce:openvino:fp32:baseline" in gids and "point:tinydce:openvino:fp32" in gids
        labels = [t for t in ax.texts if t.get_gid() == "label"]
        assert len(labels) == 7 and "tinydce openvino fp32 baseline: \u2265 99 dB" in [t.get_text() for t in labels]
        renderer = fig.canvas.get_renderer()
        boxes = [Text.get_window_extent(t, renderer) for t in labels]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "fp32, OpenVINO defaults on the plain export (baseline)" in legend
    finally:
        plt.close(fig)


def test_png_bytes_round_trip_through_pillow() -> None:
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    grey = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6) * 10
    assert np.array_equal(decode(png_bytes(rgb)), rgb) and np.array_equal(decode(png_bytes(grey)), grey)


def test_raw_input_thumbnail_is_a_half_size_rgb_preview() -> None:
    """An RGGB plane lit only at its R sites previews red, at most THUMB_SIDE wide."""
    plane = np.zeros((1, 1, 96, 128), np.float32)
    plane[..., 0::2, 0::2] = 1.0
    png, caption = input_thumbnail(plane, raw=True)
    image = decode(png)
    assert image.shape == (48, 64, 3) and "RAW RGGB" in caption
    assert (image[..., 0] == 255).all() and (image[..., 1:] == 0).all()


def test_shrink_keeps_a_full_frame_small_and_a_lone_bad_pixel_visible(tmp_path: Path) -> None:
    frame = np.zeros((1, 2848, 4256), np.float32)
    assert max(shrink(frame).shape[1:]) <= THUMB_SIDE
    output = np.full((3, 640, 960), 0.5, np.float32)
    reference = output.copy()
    output[1, 300, 500] = 0.9  # one pixel off by 0.4: a mean-shrunk difference would show 0.4 / 9
    write_preview_npz(tmp_path / "p.npz", output, reference)
    preview = load_row_preview(tmp_path / "p.npz", png_bytes(np.zeros((2, 2), np.uint8)), "input")
    assert preview.diff_max == pytest.approx(0.4) and preview.size == (213, 320)
    assert preview.diff_scale == 2 and decode(preview.diff_png).max() == 204  # 0.4 x 2 = 0.8 of 255, not 0.4 / 9
    assert diff_scale(np.full((1, 2, 2), 0.012, np.float32)) == 50 and diff_scale(np.zeros((1, 2, 2), np.float32)) == 1
