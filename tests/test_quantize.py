"""The INT8 stage on small inputs: plans, fallbacks, calibration errors and the self-distillation loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.config import ExportRequest
from export.pipeline import export
from lowlight_edge import zoo
from lowlight_edge.errors import ConfigError, DataError
from lowlight_edge.plan import FloatNode, PrecisionPlan, load_plan, save_plan


def quantize(tmp_path: Path, model: str, resolution, **kw) -> tuple[dict, Path]:
    request = ExportRequest(
        model=model, resolution=resolution, until="quantize", out=tmp_path, verify_images=2, calib_size=8, **kw
    )
    manifest_path = export(request, progress=False)
    return json.loads(manifest_path.read_text()), manifest_path.parent


def test_ptq_writes_a_readable_plan_and_ships_int8_only_if_it_pays(tmp_path: Path) -> None:
    manifest, folder = quantize(tmp_path, "zero_dce_pp", (96, 144))
    plan = load_plan(folder / "precision_plan.yaml")
    assert plan.decision in ("int8", "fp32") and plan.reason
    assert set(plan.latency_ms) >= {"fp32", "int8", "speedup", "samples_ms", "order"}  # tests/test_ship_rule.py
    if "eval" not in plan.fidelity:  # the speed probe found that no INT8 plan can pay on this host
        assert plan.decision == "fp32" and "not calibrated" in plan.reason
        assert "ir_int8" not in {f["role"] for f in manifest["files"]}
        return
    assert plan.float_nodes and all(n.reason for n in plan.float_nodes)
    assert plan.float_nodes[0].module.startswith("e_conv1")  # the first conv reads the dark image
    assert plan.calibration["images"] == 8 and len(plan.calibration["hash"]) == 64
    assert plan.ship["requested"] == "auto" and plan.decision == plan.ship["rule_decision"]
    roles = {f["role"] for f in manifest["files"]}
    if plan.decision == "int8":
        assert "ir_int8" in roles
        assert plan.fidelity["eval"]["psnr_db"]["mean"] >= 40
    else:
        assert "ir_int8" not in roles and any("INT8 not shipped" in n for n in manifest["notes"])


def test_unreachable_budget_falls_back_to_float_with_the_reason(tmp_path: Path) -> None:
    manifest, folder = quantize(tmp_path, "tinydce", (48, 72), budget_db=98.0, ship="int8")  # pinned: always measured
    plan = load_plan(folder / "precision_plan.yaml")
    assert plan.decision == "fp32" and "misses the budget" in plan.reason
    assert "ir_int8" not in {f["role"] for f in manifest["files"]}


def test_empty_calibration_folder_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        quantize(tmp_path, "tinydce", (48, 72), calib_dir=empty)


def test_plan_round_trip_and_malformed_plan(tmp_path: Path) -> None:
    plan = PrecisionPlan("m", "x86-cpu", "int8", "ok", {"psnr_mean_db": 40, "psnr_min_db": 38},
                         float_nodes=[FloatNode("node_conv2d", "Conv", "e_conv1", "first conv")])
    save_plan(plan, tmp_path / "plan.yaml")
    assert load_plan(tmp_path / "plan.yaml") == plan
    assert "first conv" in (tmp_path / "plan.yaml").read_text()
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="unreadable"):
        load_plan(tmp_path / "bad.yaml")


def test_iat_student_preset_keeps_fragile_nodes_float(tmp_path: Path) -> None:
    from quantize import ptq

    export(ExportRequest(model="iat_student", resolution=(64, 96), until="simplify", out=tmp_path, verify_images=1), progress=False)
    folder = tmp_path / "x86-cpu" / "iat_student"
    nodes = ptq.graph_nodes(folder / "iat_student.onnx", folder / "iat_student.sim.onnx")
    floats = ptq.preset_float_nodes(nodes, zoo.get_spec("iat_student").preset, ptq.first_compute_node(folder / "iat_student.sim.onnx"))
    modules = {f.module for f in floats}
    assert "shared_conv1" in modules
    assert any(m.startswith("global_refine") for m in modules)
    assert all(f.op in ("Conv", "MatMul", "Gemm") for f in floats)


def test_self_distillation_lowers_the_error() -> None:
    import copy

    import nncf
    import numpy as np
    import torch

    from lowlight_edge import zoo
    from quantize.qat import finetune  # sets NNCF's extension-build timeout before nncf.torch loads

    teacher = zoo.get_model("tinydce")
    rng = np.random.default_rng(0)
    frames = [rng.random((1, 3, 32, 48), dtype=np.float32) * 0.3 for _ in range(4)]
    student = nncf.quantize(copy.deepcopy(teacher), nncf.Dataset([torch.from_numpy(f) for f in frames]), subset_size=4)
    with torch.no_grad():
        student.e_conv1.point_conv.weight.add_(0.05)  # a visible error for training to remove
    report = finetune(student, teacher, frames, seconds=600.0, lr=1e-3, max_steps=60)  # steps, not time: load-proof
    assert report["steps"] == 60 and report["val_l1_after"] < report["val_l1_before"]


def test_convs_fed_by_quantized_concats_count_as_int8() -> None:
    """NNCF quantizes Concat inputs, not the Concat: a dense block's convs are INT8 all the same."""
    import nncf
    import numpy as np
    import openvino as ov
    import torch

    from runtimes.backend_openvino import float_compute_ops

    class Dense(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
            self.c = torch.nn.Conv2d(16, 3, 3, padding=1)

        def forward(self, x):
            a = torch.relu(self.a(x))
            return self.c(torch.cat([a, torch.relu(self.b(a))], 1))

    example = torch.rand(1, 3, 16, 16)
    model = ov.convert_model(Dense().eval(), example_input=example)
    frames = [np.random.default_rng(i).random((1, 3, 16, 16), dtype=np.float32) for i in range(4)]
    int8 = nncf.quantize(model, nncf.Dataset(frames), subset_size=4)
    names = [op.get_friendly_name() for op in int8.get_ordered_ops() if op.get_type_name() == "Convolution"]
    assert len(names) == 3
    assert float_compute_ops(int8) == []  # all three INT8, the concat-fed one included


def test_qat_trains_the_ptq_plan_and_reports_both_sides(tmp_path: Path) -> None:
    """`--method qat` on the student at a small size: the QAT step is recorded, and the ship rule holds."""
    # pinned, so that INT8 is calibrated and trained whatever the speed at this size (the rule's speed check is tested
    # in tests/test_ship_rule.py)
    manifest, folder = quantize(tmp_path, "iat_student", (64, 96), method="qat", qat_seconds=8.0, ship="int8")
    plan = load_plan(folder / "precision_plan.yaml")
    steps = [s for s in plan.search if s["step"].startswith("qat")]
    assert len(steps) == 1, plan.reason
    qat = steps[0]
    assert qat["resolution"] == "64x96" and qat["steps"] > 0
    assert qat["frames"]["re_exposed"]["views_per_frame"] == 2 and qat["train_frames"] == 2 * plan.calibration["images"]
    assert qat["val_l1_after"] <= qat["val_l1_before"]  # the best state is kept
    assert qat["gain_db"]["mean"] == round(qat["eval_qat"]["mean"] - qat["eval_ptq"]["mean"], 2)
    shipped = "ir_int8" in {f["role"] for f in manifest["files"]}
    assert shipped == (plan.decision == "int8")
    if "QAT not" in plan.reason:  # PTQ's decision stands (QAT INT8 missed the budget, was slower or worse)
        assert plan.fidelity["eval"]["psnr_db"] == qat["eval_ptq"] and "qat" in plan.fidelity
    else:  # QAT shipped: it meets the budget, beats FP32 and is no worse than PTQ
        assert plan.decision == "int8" and "QAT INT8 meets the budget" in plan.reason
        assert plan.fidelity["eval"]["psnr_db"] == qat["eval_qat"]
        assert plan.fidelity["eval"]["psnr_db"]["min"] >= 38 and qat["gain_db"]["mean"] >= 0


def test_qat_seconds_must_be_positive(tmp_path: Path) -> None:
    from lowlight_edge.errors import UsageError

    with pytest.raises(UsageError, match="--qat-seconds"):
        ExportRequest(model="tinydce", method="qat", qat_seconds=0).validate()


def test_range_init_frames_are_spread_and_bounded_by_pixels() -> None:
    from quantize.qat import range_init_frames

    frames = list(range(64))
    assert range_init_frames(frames, (400, 600)) == list(range(0, 64, 4))  # 16 x 0.24 MP
    assert range_init_frames(frames, (64, 96)) == frames  # small frames: all of them
    assert range_init_frames(list(range(10)), (2000, 2000)) == [0, 2, 5, 7]  # never fewer than 4
    assert range_init_frames([7, 8], (400, 600)) == [7, 8]


def test_a_plan_with_every_layer_float_is_not_applied_at_full_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When accuracy control on the search export returns every compute layer to float (LLPackNet on
    frames with lamps), nothing INT8 is left: the full-size calibration, checks and timing are skipped.
    Real export, search and OpenVINO; the search's outcome is forced to all-float (a small model
    searched on a smaller export of itself, as a 12 MP one is)."""
    from quantize import ptq, search

    def all_float(ctx, budget, plan):
        floats, nodes, int8, psnrs = real(ctx, budget, plan)
        compute = [n for n in nodes if n.op in ptq.COMPUTE_OPS]
        return [FloatNode(n.name, n.op, n.module, "reverted to float by accuracy control") for n in compute], nodes, int8, psnrs

    def must_not_run(*_a, **_k):
        raise AssertionError("the full-size INT8 calibration ran for an all-float plan")

    real = search.find_float_nodes
    monkeypatch.setattr(search, "find_float_nodes", all_float)
    monkeypatch.setattr(search, "search_resolution", lambda ctx: (48, 72))
    monkeypatch.setattr(search, "quantize_from_crops", must_not_run)
    manifest, folder = quantize(tmp_path, "tinydce", (96, 144), ship="int8")
    plan = load_plan(folder / "precision_plan.yaml")
    assert plan.decision == "fp32" and plan.reason.startswith("--ship int8 refused: no layer could stay INT8")
    assert "at 48x72" in plan.reason and not plan.quantized_nodes and len(plan.float_nodes) >= 2
    assert plan.latency_ms == {"unmeasured": plan.ship["rule_reason"]} and "eval" not in plan.fidelity
    assert "fp32" in plan.runtime["options"]  # the deployed FP32's options, chosen at full size
    assert "ir_int8" not in {f["role"] for f in manifest["files"]}


def test_on_a_search_export_int8_is_probed_against_the_fp32_options_chosen_at_full_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 12 MP model is searched on a smaller export; its INT8 probe there must race the FP32 that
    would ship (LLPackNet: INT8 3.25x default FP32, a tie with BF16), and those options are chosen
    once, at full size. Real export, OpenVINO and timing; the calls are only watched."""
    from quantize import search

    calls = []
    real_choose, real_probe = search.choose_runtime_options, search.probe_speed

    def choose(ctx, plan, precision, *args, **kwargs):
        calls.append(("options", precision, tuple(ctx.resolution)))
        return real_choose(ctx, plan, precision, *args, **kwargs)

    def probe(ctx, plan, full_size):
        calls.append(("probe", tuple(ctx.resolution), dict(plan.runtime.get("options", {}))))
        return real_probe(ctx, plan, full_size)

    monkeypatch.setattr(search, "choose_runtime_options", choose)
    monkeypatch.setattr(search, "probe_speed", probe)
    monkeypatch.setattr(search, "search_resolution", lambda ctx: (48, 72))
    _, folder = quantize(tmp_path, "tinydce", (96, 144))
    assert calls[0] == ("options", "fp32", (96, 144))  # full size, before anything at the search size
    assert calls[1][:2] == ("probe", (48, 72)) and "fp32" in calls[1][2]
    assert [c for c in calls if c[:2] == ("options", "fp32")] == [calls[0]]  # chosen once
    plan = load_plan(folder / "precision_plan.yaml")
    options = plan.runtime["options"]["fp32"]
    assert plan.search[0]["step"].startswith("speed probe") and "at 48x72" in plan.search[0]["step"]
    assert ("options chosen at full size" in plan.search[0]["step"]) == bool(options)
    timed = [c["speed"] for c in plan.runtime["candidates"] if c["precision"] == "fp32" and "speed" in c]
    assert all(speed["timed_at"].startswith("48x72: the search export") for speed in timed)  # a 12 MP round is slow
    if plan.search[0]["speedup"]["verdict"] != "faster":
        assert plan.decision == "fp32" and "not calibrated" in plan.reason
        assert (f"runtime options {options}" in plan.reason) == bool(options)


@pytest.mark.parametrize(("model", "budget_db", "searched"), [("tinydce", 10.0, False), ("zero_dce_pp", 55.0, True)])
def test_the_preset_is_validated_once_and_accuracy_control_runs_only_when_it_misses(
    tmp_path: Path, model: str, budget_db: float, searched: bool
) -> None:
    """One NNCF call quantizes the preset, validates it and reverts layers only when it misses the
    budget plus the search margin: the plan's preset step holds that validation, and an accuracy
    control step appears exactly when layers were ranked and reverted (real NNCF, OpenVINO)."""
    _, folder = quantize(tmp_path, model, (96, 144), ship="int8", budget_db=budget_db)
    plan = load_plan(folder / "precision_plan.yaml")
    steps = [s["step"] for s in plan.search]
    preset = plan.search[0]["validation"]
    assert steps[0] == "preset at 96x144" and preset["images"] >= 2 and preset["psnr_db"]["mean"] < 99.0  # INT8, not FP32
    assert any(s.startswith("nncf accuracy control") for s in steps) == searched
    aim = budget_db + 2.0  # the search margin
    if searched:  # the preset missed the aim, and accuracy control returned layers to float
        assert preset["psnr_db"]["mean"] < aim or preset["psnr_db"]["min"] < aim - 2.0
        assert plan.fidelity["validation"]["psnr_db"]["mean"] > preset["psnr_db"]["mean"]
        assert any(n.reason == "reverted to float by accuracy control" for n in plan.float_nodes)
    else:
        assert plan.fidelity["validation"] == preset  # the preset is the plan
