"""Runtime options (denormal flushing, BF16) decided per model and host, carried by the artifact.

Real parts: a TinyDCE ONNX exported here, real OpenVINO IRs and runners. No timing is asserted:
the search's timing decisions are tested on recorded samples in tests/test_ship_rule.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export.config import ExportRequest
from export.pipeline import export
from lowlight_edge import zoo
from lowlight_edge.errors import ConfigError, UsageError
from lowlight_edge.hashing import sha256_file
from lowlight_edge.images import fit, read_rgb, to_nchw
from lowlight_edge.plan import PLAN_FILE, PrecisionPlan, load_plan, save_plan
from lowlight_edge.targets import load_targets
from quantize.search import OPTION_LOOKS, option_candidates
from runtimes import BuildConfig, get_backend
from runtimes.backend_openvino import cpu_capabilities, merge_options, runtime_properties

H, W = 48, 72
AVX2_CPUINFO = "model name\t: AMD EPYC 7763\nflags\t\t: fpu sse2 avx fma avx2\n"
AMX_CPUINFO = "model name\t: Intel Xeon Platinum 8480+\nflags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8\n"


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "tinydce.sim.onnx"
    torch.onnx.export(zoo.get_model("tinydce"), (torch.rand(1, 3, H, W),), str(path), dynamo=True, verbose=False)
    return path


@pytest.fixture(scope="module")
def frames(eval_dir: Path) -> list[np.ndarray]:
    names = sorted(p.name for p in eval_dir.glob("*.png"))[:3]
    return [to_nchw(fit(read_rgb(eval_dir / n), H, W)) for n in names]


def _with_runtime_options(xml: Path, options: dict) -> None:
    side = xml.with_name(xml.name + ".json")
    data = json.loads(side.read_text())
    side.write_text(json.dumps({**data, "runtime_options": options}))


def test_artifact_options_apply_and_an_explicit_option_wins_and_is_recorded() -> None:
    used, record = merge_options({"denormals": True}, {"threads": 2})
    assert used == {"denormals": True, "precision": "f32", "threads": 2}
    assert record["from"] == {"denormals": "artifact", "precision": "default"} and "overridden" not in record
    used, record = merge_options({"denormals": True, "precision": "bf16"}, {"denormals": False, "precision": "bf16"})
    assert used["denormals"] is False and used["precision"] == "bf16"
    assert record["from"] == {"precision": "caller", "denormals": "caller"}
    assert record["overridden"] == {"denormals": {"artifact": True, "used": False}}  # same value: not an override


@pytest.mark.openvino
def test_loaded_ir_runs_with_its_sidecar_options_unless_the_caller_says_otherwise(onnx_file, frames, tmp_path) -> None:
    ov = get_backend("openvino")
    xml = ov.build(onnx_file, BuildConfig(), tmp_path).path
    assert "runtime_options" not in json.loads(xml.with_name("model.xml.json").read_text())  # no plan beside it
    with ov.load(xml, options={"threads": 1}) as plain:
        info = plain.describe()
        assert info["denormals_optimization"] is False and info["runtime_options"]["used"] == {"precision": "f32"}
        reference = [np.array(plain(f)) for f in frames]
    _with_runtime_options(xml, {"denormals": True})
    with ov.load(xml, options={"threads": 1}) as flushed:
        info = flushed.describe()
        assert info["denormals_optimization"] is True  # read back from the compiled model
        assert info["runtime_options"]["from"]["denormals"] == "artifact"
        for f, ref in zip(frames, reference, strict=True):
            assert np.abs(flushed(f) - ref).max() < 1e-4
    with ov.load(xml, options={"threads": 1, "denormals": False}) as caller:
        info = caller.describe()
        assert info["denormals_optimization"] is False
        assert info["runtime_options"]["overridden"] == {"denormals": {"artifact": True, "used": False}}
    assert runtime_properties(xml) == {"INFERENCE_PRECISION_HINT": "f32", "CPU_DENORMALS_OPTIMIZATION": "YES"}
    assert runtime_properties(xml, {"denormals": False, "threads": 1})["CPU_DENORMALS_OPTIMIZATION"] == "NO"
    with pytest.raises(UsageError, match="denormals must be true or false"):
        ov.load(xml, options={"denormals": "yes"})
    _with_runtime_options(xml, {"denormals": "sometimes"})
    with pytest.raises(ConfigError, match="runtime_options denormals"):
        ov.load(xml)


@pytest.mark.openvino
def test_cpu_pinning_travels_in_the_sidecar_to_the_compiled_model_and_benchmark_app(onnx_file, frames, tmp_path) -> None:
    from bench.report import runtime_options_text

    ov = get_backend("openvino")
    xml = ov.build(onnx_file, BuildConfig(), tmp_path).path
    with ov.load(xml, options={"threads": 1}) as pinned:
        assert pinned.describe()["cpu_pinning"] is True  # OpenVINO's default on Linux
        reference = [np.array(pinned(f)) for f in frames]
    assert "ENABLE_CPU_PINNING" not in runtime_properties(xml)  # unset: benchmark_app keeps its default too
    _with_runtime_options(xml, {"cpu_pinning": False})
    with ov.load(xml, options={"threads": 1}) as unpinned:
        info = unpinned.describe()
        assert info["cpu_pinning"] is False and info["runtime_options"]["from"]["cpu_pinning"] == "artifact"
        for f, ref in zip(frames, reference, strict=True):
            assert np.array_equal(unpinned(f), ref)  # scheduling only: the same arithmetic
        assert runtime_options_text({"runtime_info": info}) == "threads unpinned"
    assert runtime_properties(xml)["ENABLE_CPU_PINNING"] == "NO"
    with pytest.raises(UsageError, match="cpu_pinning must be true or false"):
        ov.load(xml, options={"cpu_pinning": "off"})
    _with_runtime_options(xml, {"cpu_pinning": 0})
    with pytest.raises(ConfigError, match="runtime_options cpu_pinning"):
        ov.load(xml)


@pytest.mark.openvino
def test_a_flushing_runner_leaves_no_flush_behind(tmp_path) -> None:
    """Denormal flushing is per runner: a runner without it, loaded after one with it ran in the same
    process, does not flush. OpenVINO leaves the threads' FTZ/DAZ as a flushing model set them
    unless each compile says (compile_config): 1e-39 x 1e30 is 1e-9, or 0 where the denormal input
    was flushed. Left unset, the quantize stage timed FP32 already flushed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 256, 256]) for n in ("x", "y")]
    scale = numpy_helper.from_array(np.array(1e30, np.float32), "c")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "c"], ["y"])], "denormal", io[:1], io[1:], [scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "denormal.onnx"
    onnx.save(model, str(path))
    ov = get_backend("openvino")
    x = np.full((1, 3, 256, 256), 1e-39, np.float32)  # a denormal float32
    with ov.load(path, options={"threads": 2, "denormals": True}) as flushed:
        assert np.all(flushed(x) == 0)
    with ov.load(path, options={"threads": 2}) as plain:
        assert np.all(plain(x) > 0) and plain.describe()["denormals_optimization"] is False


@pytest.mark.openvino
def test_outputs_a_caller_keeps_are_never_overwritten(onnx_file, frames, tmp_path) -> None:
    ov = get_backend("openvino")
    xml = ov.build(onnx_file, BuildConfig(), tmp_path).path
    with ov.load(xml, options={"threads": 1}) as runner:
        kept = [runner(f) for f in frames]  # held across calls: each its own buffer
        again = [np.array(runner(f), copy=True) for f in frames]
        for a, b in zip(kept, again, strict=True):
            np.testing.assert_array_equal(a, b)
        assert not np.array_equal(kept[0], kept[1])
        view = runner(frames[0])[0, 0]  # a view keeps its buffer too
        before = view.copy()
        runner(frames[1])
        np.testing.assert_array_equal(view, before)
        del view
        first = runner(frames[0]).ctypes.data  # dropped at once, as a timing loop does: the buffer is reused
        assert runner(frames[1]).ctypes.data == first
        assert runner.describe()["output_copy"].startswith("none")


@pytest.mark.openvino
def test_the_build_takes_the_plans_options_only_for_the_onnx_it_was_decided_on(onnx_file, tmp_path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    source = folder / onnx_file.name
    source.write_bytes(onnx_file.read_bytes())
    plan = PrecisionPlan("tinydce", "x86-cpu", "fp32", "test", {"psnr_mean_db": 40.0, "psnr_min_db": 38.0})
    plan.runtime = {"host": {"cpu": "AMD EPYC"}, "source_sha256": sha256_file(source), "options": {"fp32": {"denormals": True}}}
    save_plan(plan, folder / PLAN_FILE)
    assert load_plan(folder / PLAN_FILE).runtime["options"] == {"fp32": {"denormals": True}}
    ov = get_backend("openvino")
    side = ov.build(source, BuildConfig(), folder / "fp32").meta
    assert side["runtime_options"] == {"denormals": True} and side["runtime_options_decided"]["host"]["cpu"] == "AMD EPYC"
    plan.runtime["source_sha256"] = "0" * 64  # a plan left from another export
    save_plan(plan, folder / PLAN_FILE)
    assert "runtime_options" not in ov.build(source, BuildConfig(), folder / "fp32b").meta
    plan.runtime["options"] = {"fp32": ["denormals"]}
    save_plan(plan, folder / PLAN_FILE)
    with pytest.raises(ConfigError, match="runtime.options"):
        load_plan(folder / PLAN_FILE)


def test_bf16_is_a_candidate_only_on_a_cpu_with_native_bfloat16() -> None:
    avx2, amx = cpu_capabilities(AVX2_CPUINFO), cpu_capabilities(AMX_CPUINFO)
    assert avx2["cpu"] == "AMD EPYC 7763" and not avx2["bf16"] and "amx_bf16" in avx2["bf16_why"]
    assert amx["bf16"] and amx["bf16_why"] is None and "amx_int8" in amx["flags"]
    targets = load_targets()
    tried, skipped, pinned = option_candidates(targets["x86-cpu"], "fp32", avx2)
    assert tried == [{"denormals": True}, {"cpu_pinning": False}] and pinned == {}
    assert skipped[0]["options"] == {"precision": "bf16"} and "no native bfloat16" in skipped[0]["not_a_candidate"]
    tried, skipped, _ = option_candidates(targets["x86-cpu"], "fp32", amx)
    assert tried == [{"denormals": True}, {"precision": "bf16"}, {"cpu_pinning": False}]
    # the scheduling settings that cannot shorten one request are recorded with their measured reason, once
    assert [r["options"] for r in skipped[:3]] == [{"hint": "THROUGHPUT"}, {"streams": 2}, {"threads": "fewer than the target's"}]
    assert all("(measured)" in r["not_a_candidate"] for r in skipped[:3])
    assert option_candidates(targets["x86-cpu"], "int8", amx)[1] == []
    assert "threads per core" not in skipped[2]["not_a_candidate"]  # AMX_CPUINFO says nothing of SMT


def test_fewer_threads_record_says_when_this_host_has_smt_which_was_never_measured() -> None:
    x86 = load_targets()["x86-cpu"]
    smt = AVX2_CPUINFO + "siblings\t: 2\ncpu cores\t: 1\n"
    assert cpu_capabilities(smt)["threads_per_core"] == 2
    assert cpu_capabilities(AVX2_CPUINFO + "siblings\t: 2\ncpu cores\t: 2\n")["threads_per_core"] == 1
    assert cpu_capabilities(AVX2_CPUINFO)["threads_per_core"] is None
    assert cpu_capabilities(AVX2_CPUINFO + "siblings\t: many\ncpu cores\n")["threads_per_core"] is None
    (record,) = [r for r in option_candidates(x86, "fp32", cpu_capabilities(smt))[1] if "threads" in r["options"]]
    assert "2 threads per core" in record["not_a_candidate"] and "not measured" in record["not_a_candidate"]


def test_f16_is_recorded_with_why_it_is_not_searched_on_this_kind_of_host() -> None:
    """f16 on an AMX host with AVX512-FP16 was measured slower than BF16; a CPU without FP16 has none;
    on an AMX-FP16 host, which nobody here has measured, the record says so instead of guessing."""
    x86 = load_targets()["x86-cpu"]

    def f16_record(cpuinfo: str) -> str:
        skipped = option_candidates(x86, "fp32", cpu_capabilities(cpuinfo))[1]
        (record,) = [r for r in skipped if r["options"] == {"precision": "f16"}]
        return record["not_a_candidate"]

    assert "no native FP16" in f16_record(AVX2_CPUINFO) and "no native FP16" in f16_record(AMX_CPUINFO)
    spr = AMX_CPUINFO.replace("amx_int8", "amx_int8 avx512_fp16")
    assert cpu_capabilities(spr)["fp16"] == ["avx512_fp16"] and "avx512_fp16" in cpu_capabilities(spr)["flags"]
    assert "(measured)" in f16_record(spr) and "BF16's time" in f16_record(spr)
    assert "AMX-FP16 host" in f16_record(spr.replace("avx512_fp16", "avx512_fp16 amx_fp16"))
    assert "AVX512-FP16 and no native BF16" in f16_record(AVX2_CPUINFO.replace("avx2", "avx2 avx512_fp16"))
    assert "has not measured" in f16_record(AVX2_CPUINFO.replace("avx2", "avx2 avx512_fp16"))
    assert all(r["options"] != {"precision": "f16"} for r in option_candidates(x86, "int8", cpu_capabilities(spr))[1])


def test_a_target_that_pins_the_precision_is_never_searched(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "lowlight_edge" / "targets.yaml").read_text()
    pinned_file = tmp_path / "targets.yaml"
    pinned_file.write_text(text.replace("      hint: LATENCY\n", "      hint: LATENCY\n      precision: f32\n", 1))
    target = load_targets(pinned_file)["x86-cpu"]
    tried, skipped, pinned = option_candidates(target, "fp32", cpu_capabilities(AMX_CPUINFO))
    assert pinned == {"precision": "f32"} and tried == [{"denormals": True}, {"cpu_pinning": False}]
    assert "sets precision: f32" in skipped[0]["not_a_candidate"]
    assert all(r["options"] != {"precision": "f16"} for r in skipped)  # the user's precision is not second-guessed


def test_bf16_is_held_to_the_budget_and_denormal_flushing_to_the_float_floor() -> None:
    from quantize.search import option_floor

    budget = {"psnr_mean_db": 40.0, "psnr_min_db": 38.0}
    assert option_floor("fp32", {"denormals": True}, budget)[0] == (60.0, 60.0)
    floor, why = option_floor("fp32", {"denormals": True, "precision": "bf16"}, budget)
    assert floor == (42.0, 40.0) and "reduced precision" in why  # the budget plus the search margin
    assert option_floor("int8", {"precision": "bf16"}, budget)[0] == (42.0, 40.0)
    assert option_floor("fp32", {"precision": "f32"}, budget)[0] == (60.0, 60.0)
    assert option_floor("int8", {"denormals": True}, budget)[0] == (40.0, 38.0)


@pytest.mark.openvino
def test_export_searches_options_and_the_fp32_ir_carries_what_was_decided(tmp_path: Path) -> None:
    request = ExportRequest(model="tinydce", resolution=(H, W), out=tmp_path, verify_images=2, calib_size=8)
    folder = export(request, progress=False).parent
    plan = load_plan(folder / PLAN_FILE)
    runtime = plan.runtime
    assert runtime["host"]["cpu"] and runtime["host"]["threads"] >= 1 and runtime["source_sha256"]
    assert set(runtime["options"]) >= {"fp32"} and ("int8" in runtime["options"]) == (plan.decision == "int8")
    records = [c for c in runtime["candidates"] if c["options"] == {"denormals": True} and c["precision"] == "fp32"]
    assert len(records) == 1 and records[0]["fidelity"]["floor_db"][1] >= 60.0
    if "speed" in records[0]:  # timed only once it met the floor
        assert records[0]["speed"]["speedup"]["rounds"] >= OPTION_LOOKS[0] and records[0]["verdict"]
        # flushing and not flushing cannot be timed apart in one process (runtimes.isolation)
        assert records[0]["speed"]["processes"].startswith("one per side")
    # ONNX Runtime, a candidate runtime: screened on the simplify stage's own verification calls,
    # timed side by side only when that screen leaves it within reach
    (other,) = runtime["other_runtimes"]
    assert other["runtime"] == "onnxruntime" and other["against"]["options"] == runtime["options"]["fp32"]
    screen = other["screen"]
    assert screen["onnxruntime_ms"] > 0 and screen["openvino_ms"] > 0
    if screen["onnxruntime_ms"] > screen["ratio"] * screen["openvino_ms"]:
        assert other["verdict"].startswith("not a candidate") and "speed" not in other
    else:
        assert other["speed"]["speedup"]["rounds"] >= OPTION_LOOKS[0] and set(other["speed"]) >= {"openvino", "onnxruntime"}
        faster = other["speed"]["speedup"]["verdict"] == "faster"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert faster == any("x86-cpu-ort" in note for note in manifest["notes"])
    side = json.loads((folder / "openvino" / "fp32" / "model.xml.json").read_text())
    assert side.get("runtime_options", {}) == runtime["options"]["fp32"]
    with get_backend("openvino").load(folder / "openvino" / "fp32" / "model.xml", options={"threads": 1}) as runner:
        assert runner.describe()["runtime_options"]["used"] == {"precision": "f32", **runtime["options"]["fp32"]}


def test_an_option_not_faster_on_fp32_is_not_timed_again_on_int8() -> None:
    from quantize.search import _lost_on_fp32

    def timed(options: dict, verdict: str) -> dict:
        return {"precision": "fp32", "options": options, "speed": {"speedup": {"verdict": verdict}}}

    missed_floor = {"precision": "fp32", "options": {"precision": "bf16"}, "verdict": "misses the fidelity floor"}
    records = [timed({"denormals": True}, "tie"), missed_floor]
    assert "tie" in _lost_on_fp32(records, {"denormals": True})
    assert _lost_on_fp32(records, {"precision": "bf16"}) is None  # INT8 has its own (lower) floor: still tried
    assert _lost_on_fp32([timed({"denormals": True}, "faster")], {"denormals": True}) is None
    assert _lost_on_fp32([timed({"denormals": True, "precision": "bf16"}, "not_faster")], {"precision": "bf16"})
    assert _lost_on_fp32([], {"denormals": True}) is None


@pytest.mark.parametrize(("target", "host_matters"), [("x86-cpu", True), ("desktop-gpu", False)])
def test_a_cached_plan_is_reused_only_on_the_host_it_was_timed_on(target, host_matters, tmp_path, monkeypatch) -> None:
    """The ship rule and the runtime options are timed on this host: the quantize stage's key names
    it for a CPU target (a Zen 3 plan is not answered on an AVX-512 BF16 host); a GPU target's plan
    is decided on fidelity alone, so the build host is not part of its key."""
    from export.core import Context, FileRecord
    from quantize import search
    from quantize.stage import QuantizeStage

    request = ExportRequest(model="tinydce", resolution=(H, W), out=tmp_path)
    ctx = Context(request, load_targets()[target])
    ctx.records["simplified"] = FileRecord("model.sim.onnx", "simplify", "fp32", "simplified", sha256="0" * 64)
    keys = []
    for cpuinfo in (AVX2_CPUINFO, AMX_CPUINFO):
        monkeypatch.setattr(search, "cpu_capabilities", lambda info=cpuinfo: cpu_capabilities(info))
        keys.append(QuantizeStage().key(ctx))
    assert (keys[0] != keys[1]) == host_matters
    if host_matters:
        assert keys[1]["host"]["cpu"] == "Intel Xeon Platinum 8480+" and "amx_int8" in keys[1]["host"]["flags"]


@pytest.mark.openvino
def test_a_bf16_fp32_ir_ships_within_the_budget_and_is_verified_both_ways(tmp_path: Path, monkeypatch) -> None:
    """BF16 float layers are a candidate on a CPU with native bfloat16 (claimed here, so the path runs
    on any host; OpenVINO runs what this CPU can). The timing is taken as given (timing decisions are
    tested on recorded samples in tests/test_ship_rule.py): what is tested is the floor it is held to,
    that the FP32 IR carries it, and that the export checks the graph in f32 and the shipped options
    against the budget."""
    from quantize import search

    monkeypatch.setattr(search, "cpu_capabilities", lambda: cpu_capabilities(AMX_CPUINFO))
    monkeypatch.setattr(search, "compare_speed", lambda a, b, frames, threshold=1.05, labels=("fp32", "int8"), **_: (
        search.speed_record([2.0] * 10, [1.0] * 10, threshold=threshold, labels=labels)))
    request = ExportRequest(model="tinydce", resolution=(H, W), out=tmp_path, verify_images=2, calib_size=8, ship="fp32")
    folder = export(request, progress=False).parent
    plan = load_plan(folder / PLAN_FILE)
    bf16 = next(c for c in plan.runtime["candidates"] if c["precision"] == "fp32" and c["options"].get("precision") == "bf16")
    assert bf16["fidelity"]["floor_db"] == [42.0, 40.0] and "reduced precision" in bf16["fidelity"]["floor"]
    assert bf16["fidelity"]["wide"]["frames"] > 2  # confirmed on the wider eval set, not only the 2 verify frames
    # every candidate is "faster" here, so CPU pinning off is adopted on top, and travels in the sidecar too
    chosen = {"denormals": True, "precision": "bf16", "cpu_pinning": False}
    assert bf16["verdict"] == "adopted" and plan.runtime["options"]["fp32"] == chosen
    unpinned = next(c for c in plan.runtime["candidates"] if c["precision"] == "fp32" and c["options"] == chosen)
    assert unpinned["fidelity"].startswith("unchanged: a scheduling option")  # no eval run for where threads run
    side = json.loads((folder / "openvino" / "fp32" / "model.xml.json").read_text())
    assert side["runtime_options"] == chosen
    manifest = json.loads((folder / "manifest.json").read_text())
    ir = next(f for f in manifest["files"] if f["role"] == "ir_fp32")
    assert ir["fidelity"]["psnr_db"]["min"] >= 60.0 and ir["fidelity"]["runtime_options"]["precision"] == "f32"  # the graph
    shipped = ir["fidelity"]["as_shipped"]  # and as it runs with its sidecar, on the wider eval set
    assert shipped["runtime_options"]["precision"] == "bf16" and shipped["psnr_db"]["min"] >= 38.0 and shipped["frames"] > 2
    assert any("runs its float layers in bf16" in n for n in ir["notes"])
    with get_backend("openvino").load(folder / "openvino" / "fp32" / "model.xml", options={"threads": 1}) as runner:
        assert runner.describe()["runtime_options"]["used"]["precision"] == "bf16"


@pytest.mark.openvino
def test_f32_layers_stay_f32_under_bf16_and_the_saved_ir_carries_them(onnx_file, frames, tmp_path) -> None:
    """f32_layers: the named nodes run in f32 when the rest runs in BF16 (checked on the compiled graph
    where the CPU has native bfloat16), a name the graph lacks is refused, and an IR built with them
    carries the marks in its XML, for tools that read no sidecar (benchmark_app)."""
    ov = get_backend("openvino")
    folder = tmp_path / "model"
    folder.mkdir()
    source = folder / onnx_file.name
    source.write_bytes(onnx_file.read_bytes())
    with ov.load(ov.build(source, BuildConfig(), folder / "plain").path, options={"threads": 1}) as plain:
        first = plain.compute_nodes()[:1]
        with pytest.raises(ConfigError, match="f32_layers names nodes the graph does not have"):
            plain.variant({"precision": "bf16", "f32_layers": ["no such node"]})
        with pytest.raises(UsageError, match="f32_layers must be a list"):
            plain.variant({"precision": "bf16", "f32_layers": "all"})
        if cpu_capabilities()["bf16"]:
            with plain.variant({"precision": "bf16"}) as bf16, plain.variant({"precision": "bf16", "f32_layers": first}) as mixed:
                assert bf16.layer_precisions()[first[0]] == "bf16"
                assert mixed.layer_precisions()[first[0]] == "f32"
                assert mixed.runtime_options == {"precision": "bf16", "f32_layers": first}
    plan = PrecisionPlan("tinydce", "x86-cpu", "fp32", "test", {"psnr_mean_db": 40.0, "psnr_min_db": 38.0})
    plan.runtime = {"host": {"cpu": "test"}, "source_sha256": sha256_file(source),
                    "options": {"fp32": {"precision": "bf16", "f32_layers": first}}}
    save_plan(plan, folder / PLAN_FILE)
    xml = ov.build(source, BuildConfig(), folder / "fp32").path
    assert xml.read_text().count('name="DisablePrecisionConversion"') == 1
    with ov.load(xml, options={"threads": 1}) as shipped:
        assert shipped.describe()["runtime_options"]["from"]["f32_layers"] == "artifact"
        if cpu_capabilities()["bf16"]:
            assert shipped.layer_precisions()[first[0]] == "f32"
    _with_runtime_options(xml, {"precision": "bf16", "f32_layers": [1, 2]})
    with pytest.raises(ConfigError, match="f32_layers must be a list of node names"):
        ov.load(xml)


@pytest.mark.openvino
def test_the_f32_layer_search_reaches_its_floor_on_every_frame(onnx_file, frames) -> None:
    """find_f32_layers on a floor above what all-BF16 reaches: the layers it returns meet the floor's
    min on every frame, are fewer than all of them, and the record says how it got there."""
    from export.verify import measure, run_frames
    from quantize.f32_layers import find_f32_layers

    if not cpu_capabilities()["bf16"]:
        pytest.skip("this CPU has no native bfloat16: BF16 inference runs f32 here and there is nothing to keep")
    ov = get_backend("openvino")
    with ov.runner(ov.read_onnx(onnx_file), threads=1) as fp32:
        refs = run_frames(fp32, frames)
        with fp32.variant({"precision": "bf16"}) as bf16:
            reduced = measure(run_frames(bf16, frames), refs)["psnr_db"]["min"]
        floor = (0.0, reduced + 1.0)
        layers, record = find_f32_layers(fp32, {"precision": "bf16"}, frames, refs, floor)
        assert layers, record
        assert set(layers) < set(fp32.compute_nodes())  # some layers stay BF16
        assert record["rounds"][-1]["whole_set_min_db"] >= floor[1] and record["runs"] > 2
        with fp32.variant({"precision": "bf16", "f32_layers": layers}) as mixed:
            assert measure(run_frames(mixed, frames), refs)["psnr_db"]["min"] >= floor[1]
        # from the model's measured layers (the zoo's bf16_f32_modules): within them, confirmed the same way
        again, started = find_f32_layers(fp32, {"precision": "bf16"}, frames, refs, floor, start=layers)
        assert again and set(again) <= set(layers) and started["whole_set"]["psnr_db"]["min"] >= floor[1]
        assert started["start"]["outcome"].endswith(f"meet the floor's min on all {len(frames)} frames")
        assert started["runs"] < record["runs"] and "uncompilable" not in started  # the other layers never compiled
        unknown, fallback = find_f32_layers(fp32, {"precision": "bf16"}, frames, refs, floor, start=["no_such_node"])
        assert unknown == layers and "searched from every compute layer" in fallback["start"]["outcome"]
        impossible = (0.0, 120.0)  # above the 99 dB cap: even every layer f32 misses it
        layers, record = find_f32_layers(fp32, {"precision": "bf16"}, frames, refs, impossible)
        assert layers is None and "misses the floor" in record["rounds"][0]["outcome"]


@pytest.mark.openvino
def test_the_fp32_timing_runner_ignores_a_previous_runs_plan(tmp_path: Path) -> None:
    """A rebuild in the same folder finds the previous run's precision plan beside the same ONNX;
    the FP32 runner the search starts from must still have OpenVINO's defaults (a plan's f32 layers
    baked into it made an 'all-BF16' candidate carry them)."""
    from export.core import Context, FileRecord
    from quantize.inputs import fp32_runner_for_timing

    request = ExportRequest(model="tinydce", resolution=(H, W), out=tmp_path, until="simplify", verify_images=2)
    manifest = json.loads(export(request, progress=False).read_text())
    folder = tmp_path / "x86-cpu" / "tinydce"
    simplified = next(f for f in manifest["files"] if f["role"] == "simplified")
    plan = PrecisionPlan("tinydce", "x86-cpu", "fp32", "a previous run", {"psnr_mean_db": 40.0, "psnr_min_db": 38.0})
    plan.runtime = {"host": {}, "source_sha256": simplified["sha256"], "options": {"fp32": {"denormals": True}}}
    save_plan(plan, folder / PLAN_FILE)
    assert get_backend("openvino").build(folder / simplified["path"], BuildConfig(), tmp_path / "ir").meta["runtime_options"]
    ctx = Context(request, load_targets()["x86-cpu"])
    ctx.records["simplified"] = FileRecord(simplified["path"], "simplify", "fp32", "simplified", sha256=simplified["sha256"])
    with fp32_runner_for_timing(ctx) as runner:
        assert runner.runtime_options == {"precision": "f32"}


@pytest.mark.openvino
@pytest.mark.parametrize("ship", ["auto", "int8"])
def test_on_a_search_export_a_candidate_is_timed_first_and_only_a_faster_one_is_verified(ship, tmp_path: Path, monkeypatch) -> None:
    """A 12 MP model's FP32 option candidates are timed on its smaller search export (forced here on
    TinyDCE) before any fidelity run at full size: a tie costs no full-size frames, a faster candidate
    is verified against its floor and adopted. Also when a pinned INT8 search ends all float (as
    LLPackNet's does; its options were timed at full size then, 30 s). Timings are recorded samples
    (tests/test_ship_rule.py tests the decisions on them); graphs, runners and fidelity runs are real."""
    from lowlight_edge.plan import FloatNode
    from quantize import search

    if ship == "int8":  # accuracy control returns every layer to float
        def all_float(sctx, budget, plan):
            nodes, _ = search.preset_floats(sctx)
            floats = [FloatNode(n.name, n.op, n.module, "reverted") for n in nodes if n.op in search.ptq.COMPUTE_OPS]
            return floats, nodes, None, [20.0]

        monkeypatch.setattr(search, "find_float_nodes", all_float)

    monkeypatch.setattr(search, "cpu_capabilities", lambda: cpu_capabilities(AMX_CPUINFO))
    monkeypatch.setattr(search, "search_resolution", lambda ctx: (32, 48))
    monkeypatch.setattr(search, "time_speedup", lambda a, b, frames, **_: {  # the INT8 probe: a tie, so FP32 ships
        "speedup": search.speed_record([1.0] * 10, [1.0] * 10)["speedup"]})

    def recorded(a, b, frames, threshold=1.05, labels=("fp32", "int8"), **_):
        faster = getattr(b, "runtime_options", {}).get("precision") == "bf16" != getattr(a, "runtime_options", {}).get("precision")
        return search.speed_record([2.0 if faster else 1.0] * 10, [1.0] * 10, threshold=threshold, labels=labels)

    monkeypatch.setattr(search, "compare_speed", recorded)
    measured = []
    real_measure = search.measure
    monkeypatch.setattr(search, "measure", lambda outs, refs: measured.append(refs[0].shape) or real_measure(outs, refs))
    request = ExportRequest(model="tinydce", resolution=(H, W), out=tmp_path, verify_images=2, calib_size=8, ship=ship)
    folder = export(request, progress=False).parent
    plan = load_plan(folder / PLAN_FILE)
    assert plan.decision == "fp32"
    fp32 = [c for c in plan.runtime["candidates"] if c["precision"] == "fp32" and "options" in c and "speed" in c]
    denormals, bf16, unpinned = fp32
    assert unpinned["options"] == {"precision": "bf16", "cpu_pinning": False} and "fidelity" not in unpinned  # a tie
    assert denormals["options"] == {"denormals": True} and "fidelity" not in denormals
    assert denormals["verdict"].startswith("kept the current options (not_faster") and "not measured" in denormals["verdict"]
    assert denormals["speed"]["timed_at"].startswith("32x48")
    assert bf16["verdict"] == "adopted" and bf16["fidelity"]["floor_db"] == [42.0, 40.0]
    assert all(shape[-2:] == (H, W) for shape in measured)  # fidelity only ever at the full size
    assert plan.runtime["options"]["fp32"] == {"precision": "bf16"}
