"""targets.yaml: the shipped file's contract, and strict validation that names the line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lowlight_edge.errors import ConfigError, UsageError
from lowlight_edge.targets import Budget, get_target, load_targets, parse_resolution

REPO = Path(__file__).resolve().parents[1]

VALID = """\
version: 1
targets:
  cpu-test:
    description: a test target
    runtime: openvino
    device: CPU
    precisions: [int8, fp32]
    threads: 2
    budget: {psnr_mean_db: 40.0, psnr_min_db: 38.0}
    warmup: 1
    iterations: 5
    resolutions:
      default: 64x96
      llpacknet: 128x192
    requires: [cpu, openvino]
    options:
      hint: LATENCY
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing needle."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# -- the shipped targets.yaml ------------------------------------------------------------------


def test_repo_targets_have_the_issue_6_targets():
    targets = load_targets()
    assert set(targets) == {"x86-cpu", "x86-cpu-lowmem", "x86-cpu-ort", "desktop-gpu", "jetson-orin"}
    cpu = targets["x86-cpu"]
    assert (cpu.runtime, cpu.device) == ("openvino", "CPU")
    assert set(cpu.precisions) == {"int8", "fp32"}
    assert (cpu.warmup, cpu.iterations) == (3, 20)
    assert cpu.budget == Budget(40.0, 38.0)
    assert targets["x86-cpu-ort"].runtime == "onnxruntime"
    assert targets["desktop-gpu"].runtime == "tensorrt" and targets["desktop-gpu"].device == "cuda:0"
    assert set(targets["desktop-gpu"].precisions) == {"int8", "fp16"}
    assert set(targets["desktop-gpu"].requires) >= {"tensorrt", "cuda"}
    jetson = targets["jetson-orin"]
    assert "jetson" in jetson.requires
    assert jetson.options["power_mode"] == "MAXN"
    assert "dla_core" in jetson.options and jetson.options["tegrastats_interval_ms"] == 100


def test_repo_resolutions_fit_each_model():
    for target in load_targets().values():
        if target.name == "x86-cpu-lowmem":  # RAW / large frames only
            assert set(target.resolutions) == {"llpacknet"}
            continue
        for model in ("iat", "iat_student", "tinydce"):
            assert target.resolution_for(model) == (400, 600)
        for model in ("zero_dce_pp", "sgz"):  # Zero-DCE++ and SGZ crop to multiples of 12
            h, w = target.resolution_for(model)
            assert (h, w) == (396, 600) and h % 12 == 0 and w % 12 == 0
    assert load_targets()["x86-cpu"].resolution_for("llpacknet", raw=True) == (2848, 4256)


def test_raw_model_never_falls_back_to_the_rgb_default(tmp_path):
    target = load_targets(write(tmp_path, VALID))["cpu-test"]
    assert target.resolution_for("some_raw_net") == (64, 96)
    with pytest.raises(ConfigError, match="no resolution for RAW model 'some_raw_net'"):
        target.resolution_for("some_raw_net", raw=True)
    assert target.resolution_for("llpacknet", raw=True) == (128, 192)


def test_load_options_hold_threads_and_leave_out_bench_and_build_keys():
    from runtimes.backend_tensorrt import OPTIONS
    from runtimes.base import check_options

    for name in ("jetson-orin", "desktop-gpu"):
        gpu = get_target(name)
        opts = gpu.load_options()
        # TensorRT refuses a threads option: every GPU bench row failed when it was always added
        assert check_options(opts, OPTIONS, "tensorrt") == {}
    cpu = get_target("x86-cpu")
    assert isinstance(cpu.load_options()["threads"], int) and cpu.load_options()["threads"] >= 1
    assert cpu.load_options()["hint"] == "LATENCY"
    # no precision pin: the runner runs f32 unless the artifact carries the quantize stage's bf16 decision
    assert "precision" not in cpu.load_options()


def test_lowmem_target_runs_llpacknet_tiled_within_its_memory_limit():
    from lowlight_edge import zoo
    from runtimes.tiling import target_tiling

    llpacknet = zoo.get_spec("llpacknet")
    lowmem = get_target("x86-cpu-lowmem")
    assert not {"tile", "max_memory_mb"} & set(lowmem.load_options())  # bench-only, never given to load()
    th, tw, overlap = target_tiling(lowmem, llpacknet, (2848, 4256))
    assert (th, tw) != (2848, 4256) and th % 16 == 0 and tw % 16 == 0
    assert th * tw * llpacknet.tiling.activation_bytes_per_px <= lowmem.options["max_memory_mb"] * 2**20
    assert overlap == llpacknet.tiling.overlap
    assert target_tiling(get_target("x86-cpu"), llpacknet, (2848, 4256)) is None


def test_tile_option_is_checked_when_loaded_and_against_the_model(tmp_path):
    from lowlight_edge import zoo
    from runtimes.tiling import target_tiling

    def with_option(option: str) -> str:
        return VALID.replace("      hint: LATENCY\n", f"      hint: LATENCY\n      {option}\n")

    spec = zoo.get_spec("llpacknet")
    target = load_targets(write(tmp_path, with_option("tile: 256x384")))["cpu-test"]
    assert target_tiling(target, spec, (512, 768)) == (256, 384, 128)
    assert target_tiling(target, spec, (256, 384)) is None  # the tile is the frame: nothing to tile
    assert "tile" not in target.load_options()
    for option, pattern in (
        ("tile: 64x", r"option tile is '64x'.*write it as HxW"),
        ("max_memory_mb: 0", r"option max_memory_mb is 0.*use a positive integer"),
        ("tile: 64x96\n      max_memory_mb: 64", r"give both tile and max_memory_mb"),
    ):
        with pytest.raises(ConfigError, match=pattern):
            load_targets(write(tmp_path, with_option(option)))
    for tile, pattern in (("250x384", r"multiples of 16"), ("128x192", r"overlap must be between 0 and 127")):
        target = load_targets(write(tmp_path, with_option(f"tile: {tile}")))["cpu-test"]
        with pytest.raises(ConfigError, match=rf"option tile for llpacknet at 512x768: .*{pattern}"):
            target_tiling(target, spec, (512, 768))


def test_get_target_unknown_name_suggests():
    with pytest.raises(UsageError, match=r"unknown target 'x86-cpuu'.*did you mean 'x86-cpu'"):
        get_target("x86-cpuu")


def test_parse_resolution():
    assert parse_resolution("400x600") == (400, 600)
    assert parse_resolution(" 2848X4256 ") == (2848, 4256)
    assert parse_resolution("400 x 600") == (400, 600)
    for bad in ("400", "400x", "0x600", "400x600x3", "axb", "-4x6", "²x3"):
        with pytest.raises(UsageError, match=rf"resolution '{bad}' is not of the form HxW.*e\.g\. 400x600"):
            parse_resolution(bad)


# -- validation errors name the file and the line ------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "needle", "pattern"),
    [
        (
            "    iterations: 5",
            "    iteration: 5",
            "iteration: 5",
            r"unknown key 'iteration'.*did you mean 'iterations'",
        ),
        (
            "    iterations: 5",
            "    iterations: twenty",
            "iterations: twenty",
            r"iterations must be an integer >= 1, got 'twenty'",
        ),
        (
            "    iterations: 5",
            "    iterations: yes",
            "iterations: yes",
            r"iterations must be an integer >= 1, got True",
        ),
        ("    warmup: 1", "    warmup: -1", "warmup: -1", r"warmup must be an integer >= 0, got -1"),
        (
            "    runtime: openvino",
            "    runtime: openvin0",
            "runtime: openvin0",
            r"unknown runtime 'openvin0'.*did you mean 'openvino'",
        ),
        (
            "      default: 64x96",
            "      default: 64by96",
            "default: 64by96",
            r"resolution of default is '64by96', not HxW",
        ),
        (
            "      default: 64x96",
            "      default: [64, 96]",
            "default: [64, 96]",
            r"resolution of default must be",
        ),
        (
            "    precisions: [int8, fp32]",
            "    precisions: [int4]",
            "precisions: [int4]",
            r"unknown target 'cpu-test' precisions entry 'int4'",
        ),
        (
            "      hint: LATENCY",
            "      hnt: LATENCY",
            "hnt: LATENCY",
            r"unknown key 'hnt'.*did you mean 'hint'",
        ),
        ("      hint: LATENCY", "      hint: FASTEST", "hint: FASTEST", r"option hint is 'FASTEST'"),
        ("    threads: 2", "    threads: 0", "threads: 0", r"threads must be >= 1"),
        (
            "    requires: [cpu, openvino]",
            "    requires: [gpu]",
            "requires: [gpu]",
            r"unknown target 'cpu-test' requires entry 'gpu'",
        ),
        (
            "    budget: {psnr_mean_db: 40.0, psnr_min_db: 38.0}",
            "    budget: {psnr_mean_db: high}",
            "budget:",
            r"psnr_mean_db must be a number of dB",
        ),
        ("version: 1", "verison: 1", "verison: 1", r"unknown key 'verison' in the top level"),
    ],
)
def test_errors_name_the_line(tmp_path, old, new, needle, pattern):
    assert old in VALID
    text = VALID.replace(old, new)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_targets(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line_of(text, needle)}: ")
    assert "\n" not in message


def test_duplicate_key_and_runtime_precision_mismatch(tmp_path):
    text = VALID.replace("    warmup: 1\n", "    warmup: 1\n    warmup: 2\n")
    with pytest.raises(ConfigError, match=rf":{line_of(text, 'warmup: 2')}: duplicate key 'warmup'"):
        load_targets(write(tmp_path, text))
    text = VALID.replace("runtime: openvino", "runtime: onnxruntime").replace("[int8, fp32]", "[fp16]")
    text = text.replace("    options:\n      hint: LATENCY\n", "")
    with pytest.raises(
        ConfigError, match=rf":{line_of(text, '[fp16]')}: precision 'fp16' is not available with onnxruntime"
    ):
        load_targets(write(tmp_path, text))


def test_missing_required_key_and_bad_yaml(tmp_path):
    text = VALID.replace("    device: CPU\n", "")
    with pytest.raises(
        ConfigError, match=rf":{line_of(text, 'cpu-test:')}: target 'cpu-test' has no `device`"
    ):
        load_targets(write(tmp_path, text))
    text = VALID.replace("    warmup: 1", "    warmup: [1")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_targets(write(tmp_path, text))
    with pytest.raises(ConfigError, match="cannot read targets file"):
        load_targets(tmp_path / "absent.yaml")


def test_importing_bench_loads_no_runtime():
    code = (
        "import sys; import bench, lowlight_edge.targets, bench.host, lowlight_edge.metrics, bench.roofline, bench.report, "
        "bench.worker, bench.crosscheck; lowlight_edge.targets.load_targets(); "
        "print(sorted(m for m in ('openvino', 'tensorrt', 'nncf', 'onnxruntime', 'torch', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_tiled_target_tiles_the_baseline_row_like_the_fp32_row(tmp_path, shared):
    """The plain ONNX export is made at the tile size, as the IRs are: the baseline runs the same tiles."""
    from bench.harness import BenchRequest, run_bench
    from tests.test_bench_cli import TINY_TARGET

    targets = tmp_path / "targets.yaml"
    targets.write_text(TINY_TARGET.replace("      hint: LATENCY\n", "      hint: LATENCY\n      tile: 32x48\n"))
    request = BenchRequest(target="tiny-cpu", targets_file=targets, models=("tinydce",), precisions=("fp32",), iterations=2,
                           warmup=0, frames=2, out=tmp_path / "results", artifacts=tmp_path / "artifacts", progress=False,
                           video=False)
    rows, failures = run_bench(request)
    assert failures == [] and not any(r.get("error") for r in rows)
    (baseline,) = [r for r in rows if r.get("baseline")]
    (fp32,) = [r for r in rows if r["runtime"] == "openvino" and not r.get("baseline")]
    assert baseline["artifact"].endswith("tinydce.onnx") and baseline["tiled"] == fp32["tiled"]
    assert baseline["tiled"]["tile"] == "32x48" and baseline["tiled"]["tiles"] > 1
    assert baseline["psnr_db"]["min"] >= 60  # the seams are the same as the IR's: the plain export is exact FP32 too
    assert baseline["speedup_vs_baseline"] == 1.0 and fp32["speedup_vs_baseline"] > 0
