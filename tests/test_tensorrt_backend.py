"""TensorRT backend: the engine cache logic (runs everywhere) and real builds (need TensorRT + CUDA).

The cache key, sidecar and plan checks are plain functions; the engines are built for real by
TensorRT-RTX's builder, which needs no GPU. Running an engine needs one (tested on the device).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlight_edge.errors import ConfigError, MissingRequirement, UsageError
from lowlight_edge.plan import FloatNode, PrecisionPlan, load_plan, save_plan
from runtimes import BuildConfig, get_backend
from runtimes import backend_tensorrt as trt_backend
from runtimes.backend_tensorrt import (
    ENGINE_FORMAT,
    RUNTIME_FIELDS,
    cached_engine,
    dynamic_profile,
    engine_fields,
    engine_key,
    plan_tensors,
    sidecar_mismatches,
    write_engine,
)
from runtimes.cuda import (
    LIBCUDART_ENV,
    CudaError,
    CudaRuntime,
    cuda_status,
    library_candidates,
    load_libcudart,
)

H, W = 48, 72
IDENTITY = {"tensorrt": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lowlight_edge import zoo

    path = tmp_path_factory.mktemp("trt") / "tinydce.onnx"
    torch.onnx.export(
        zoo.get_model("tinydce"), (torch.rand(1, 3, H, W),), str(path), dynamo=True, verbose=False
    )
    return path


@pytest.fixture()
def plan_file(onnx_file: Path, tmp_path: Path) -> Path:
    import onnx

    node = next(n.name for n in onnx.load(str(onnx_file)).graph.node if n.op_type == "Tanh")
    path = tmp_path / "precision_plan.yaml"
    save_plan(PrecisionPlan("tinydce", "desktop-gpu", "int8", "test", {}, float_nodes=[FloatNode(node, "Tanh", "", "test")]), path)
    return path


# --- cache key -------------------------------------------------------------------------------


def test_engine_key_changes_with_every_input(onnx_file: Path, plan_file: Path, tmp_path: Path) -> None:
    base = engine_fields(onnx_file, BuildConfig(precision="fp16", plan=plan_file), IDENTITY)
    assert base["onnx_sha256"] and base["plan_sha256"] and base["precision"] == "fp16"
    assert engine_key(base) == engine_key(dict(reversed(list(base.items()))))  # order-free, stable
    assert len(engine_key(base)) == 24

    variants = {
        "precision": engine_fields(onnx_file, BuildConfig(precision="fp32", plan=plan_file), IDENTITY),
        "plan": engine_fields(onnx_file, BuildConfig(precision="fp16"), IDENTITY),
        "shapes": engine_fields(
            onnx_file, BuildConfig(precision="fp16", plan=plan_file, input_shape=(1, 3, H, W)), IDENTITY
        ),
        "workspace": engine_fields(
            onnx_file, BuildConfig(precision="fp16", plan=plan_file, workspace_mb=512), IDENTITY
        ),
        "dla": engine_fields(onnx_file, BuildConfig(precision="fp16", plan=plan_file, dla_core=0), IDENTITY),
    }
    for key in RUNTIME_FIELDS:
        variants[key] = engine_fields(
            onnx_file, BuildConfig(precision="fp16", plan=plan_file), {**IDENTITY, key: "other"}
        )
    edited_plan = tmp_path / "plan2.json"
    edited_plan.write_text(plan_file.read_text().replace("]", ', "extra"]'))
    variants["plan content"] = engine_fields(
        onnx_file, BuildConfig(precision="fp16", plan=edited_plan), IDENTITY
    )
    other_onnx = tmp_path / "other.onnx"
    other_onnx.write_bytes(onnx_file.read_bytes() + b"\0")
    variants["onnx content"] = engine_fields(
        other_onnx, BuildConfig(precision="fp16", plan=plan_file), IDENTITY
    )

    keys = {name: engine_key(fields) for name, fields in variants.items()}
    assert engine_key(base) not in keys.values()
    assert len(set(keys.values())) == len(keys), keys


# --- sidecar and cache reuse -----------------------------------------------------------------


def test_sidecar_mismatches_name_each_difference() -> None:
    fields = {"onnx_sha256": "a" * 64, "precision": "fp16", **IDENTITY}
    sidecar = {"format": ENGINE_FORMAT, "fields": fields, "engine_sha256": "e" * 64}
    assert sidecar_mismatches(sidecar, fields, "e" * 64) == []
    assert sidecar_mismatches(None, fields) == ["no sidecar JSON beside the engine"]
    assert "format" in sidecar_mismatches({**sidecar, "format": "ultralytics"}, fields)[0]
    newer = {
        **IDENTITY,
        "tensorrt": "10.8.0",
        "gpu_name": "NVIDIA GeForce RTX 4090",
        "compute_capability": "8.9",
    }
    problems = sidecar_mismatches(sidecar, newer, keys=RUNTIME_FIELDS)
    assert len(problems) == 3 and "tensorrt was '10.3.0' at build time, now '10.8.0'" in problems
    assert sidecar_mismatches(sidecar, {**newer, **IDENTITY}, keys=RUNTIME_FIELDS) == []
    assert sidecar_mismatches(sidecar, fields, "f" * 64) == [
        "the engine file changed since it was built (sha256 differs from its sidecar)"
    ]


def test_engine_cache_hits_only_on_an_exact_match(onnx_file: Path, tmp_path: Path) -> None:
    """A stand-in engine (TensorRT cannot build here) exercises the cache: reuse, staleness, tampering."""
    fields = engine_fields(onnx_file, BuildConfig(precision="fp16"), IDENTITY)
    path, problems = cached_engine(tmp_path, fields)
    assert path == tmp_path / f"{engine_key(fields)}.engine" and problems == ["not built yet"]

    data = b"\x00serialized-engine-bytes"
    artifact = write_engine(path, data, {"key": path.stem, "fields": fields}, "fp16")
    assert path.read_bytes() == data  # plain file: nothing prepended, trtexec can load it
    side = json.loads(Path(f"{path}.json").read_text())
    assert side["format"] == ENGINE_FORMAT and side["precision"] == "fp16" and side["fields"] == fields
    assert artifact.meta["engine_sha256"] == side["engine_sha256"]
    assert cached_engine(tmp_path, fields) == (path, [])

    path.write_bytes(data + b"corrupt")  # replaced or truncated engine
    assert "changed" in cached_engine(tmp_path, fields)[1][0]
    write_engine(path, data, {"key": path.stem, "fields": fields}, "fp16")
    side["fields"]["tensorrt"] = "9.9.9"  # sidecar from another build under the same name
    Path(f"{path}.json").write_text(json.dumps(side))
    assert "tensorrt" in cached_engine(tmp_path, fields)[1][0]
    Path(f"{path}.json").write_text("{not json")
    assert "not valid JSON" in cached_engine(tmp_path, fields)[1][0]

    newer = engine_fields(onnx_file, BuildConfig(precision="fp16"), {**IDENTITY, "tensorrt": "10.4.0"})
    assert cached_engine(tmp_path, newer)[0] != path  # an upgrade never finds the old engine


# --- precision plan and shapes ---------------------------------------------------------------


def test_one_plan_reader_validates(tmp_path: Path, plan_file: Path, onnx_file: Path) -> None:
    """The TensorRT path reads the quantize stage's plan with the one reader (it used to have its own)."""
    plan = load_plan(plan_file)
    assert plan.float_precision == "fp32" and len(plan.float_names) == 1
    tensors = plan_tensors(plan, onnx_file)
    assert list(tensors) == plan.float_names and all(tensors.values())
    bad = tmp_path / "bad.yaml"
    for text, match in (
        ("{oops", "not valid YAML"),
        ('{"nodes": []}', "float_nodes"),
        ('{"float_nodes": ["a"]}', "float_nodes"),  # bare names are not the plan format
        ("model: m\ntarget: t\ndecision: int8\nreason: r\nbudget: {}\nfloat_nodes: []\nfloat_precision: int8\n", "fp32 or fp16"),
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_plan(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_plan(tmp_path / "missing.yaml")
    other = PrecisionPlan("m", "t", "int8", "r", {}, float_nodes=[FloatNode("/not/in/graph", "Conv", "", "r")])
    with pytest.raises(ConfigError, match="another export"):
        plan_tensors(other, onnx_file)
    wrong = tmp_path / "wrong.yaml"
    save_plan(other, wrong)
    with pytest.raises(ConfigError, match="another export"):  # the build refuses a plan for another export
        get_backend("tensorrt").build(onnx_file, BuildConfig(plan=wrong), tmp_path / "engines")


def test_dynamic_profile_rules() -> None:
    static = (1, 3, H, W)
    assert dynamic_profile(static, BuildConfig()) is None
    assert dynamic_profile(static, BuildConfig(input_shape=static)) is None
    with pytest.raises(UsageError, match="re-export"):
        dynamic_profile(static, BuildConfig(input_shape=(1, 3, 96, 96)))
    profile = {"min": (1, 3, 16, 16), "opt": (1, 3, H, W), "max": (1, 3, 256, 256)}
    with pytest.raises(UsageError, match="static"):
        dynamic_profile(static, BuildConfig(profile=profile))
    dynamic = (1, 3, -1, -1)
    assert dynamic_profile(dynamic, BuildConfig(profile=profile)) == (
        (1, 3, 16, 16),
        (1, 3, H, W),
        (1, 3, 256, 256),
    )
    assert dynamic_profile(dynamic, BuildConfig(input_shape=static)) == (static,) * 3
    with pytest.raises(UsageError, match="profile"):
        dynamic_profile(dynamic, BuildConfig())
    with pytest.raises(UsageError, match="does not fit"):
        dynamic_profile(dynamic, BuildConfig(input_shape=(1, 1, H, W)))


# --- availability and real engines (TensorRT-RTX's builder, no GPU needed) ---------------------


def test_is_available_names_both_flavours(onnx_file: Path, tmp_path: Path) -> None:
    backend = get_backend("tensorrt")
    flavours = backend.flavours()
    assert set(flavours) == {"rtx", "tensorrt"}
    ok, reason = flavours["rtx"]
    assert ok, reason  # the README's test command installs tensorrt-rtx-cu12
    assert reason.startswith("tensorrt_rtx 1.") and "build: yes" in reason
    assert ("run: yes" in reason) == cuda_status()[0]
    assert "run: yes" in reason or "cudaGetDeviceCount" in reason or "libcudart" in reason, reason
    with pytest.raises(UsageError, match="threads"):
        backend.build(onnx_file, BuildConfig(threads=2), tmp_path)
    fake = tmp_path / "x.engine"
    fake.write_bytes(b"\0")
    with pytest.raises(UsageError, match="CUDA GPU"):
        backend.load(fake, device="cpu")


def test_unsupported_versions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("tensorrt")
    fake.__version__ = "8.6.1"
    fake.Builder = object
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(MissingRequirement, match="not a version this backend was written for"):
        trt_backend.import_trt("tensorrt")
    fake.__version__ = "10.3.0"
    del fake.Builder
    with pytest.raises(MissingRequirement, match="without a builder"):
        trt_backend.import_trt("tensorrt")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_for_real_and_caches(precision: str, onnx_file: Path, plan_file: Path, tmp_path: Path) -> None:
    from export.fp16 import convert_to_fp16

    backend = get_backend("tensorrt")
    source = onnx_file
    if precision == "fp16":
        source = tmp_path / "tinydce.fp16.onnx"
        convert_to_fp16(onnx_file, source, [])
        with pytest.raises(UsageError, match="fp32 ONNX"):  # precision comes from the ONNX, not a flag
            backend.build(onnx_file, BuildConfig(precision="fp16"), tmp_path)
    config = BuildConfig(precision=precision, plan=plan_file, workspace_mb=256)
    artifact = backend.build(source, config, tmp_path)
    assert artifact.meta["cache"] == "miss" and artifact.path.suffix == ".engine"
    data = artifact.path.read_bytes()
    assert len(data) > 10_000 and not data.startswith(b"{")  # a plain engine, nothing prepended
    side = json.loads(Path(f"{artifact.path}.json").read_text())
    assert side["builder"].startswith("tensorrt_rtx 1.") and side["tf32"] == "off"
    assert side["fields"]["workspace_mb"] == 256 and side["fields"]["plan_sha256"]
    assert "8.0" in side["compute_capabilities"]
    again = backend.build(source, config, tmp_path)
    assert again.meta["cache"] == "hit" and again.path == artifact.path
    artifact.path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # a changed engine is rebuilt
    assert backend.build(source, config, tmp_path).meta["cache"] == "miss"
    if not cuda_status()[0]:  # the runner says why in one line: no device, no driver, or no libcudart
        with pytest.raises(MissingRequirement, match="needs a CUDA GPU to run: (no CUDA device|libcudart not found)") as err:
            backend.load(artifact.path)
        assert "\n" not in str(err.value)


def test_dynamic_engine_needs_a_profile(tmp_path: Path) -> None:
    from lowlight_edge import zoo

    path = tmp_path / "dyn.onnx"
    h = torch.export.Dim("h", min=16, max=512)
    w = torch.export.Dim("w", min=16, max=512)
    torch.onnx.export(
        zoo.get_model("tinydce"), (torch.rand(1, 3, H, W),), str(path), dynamo=True, verbose=False,
        dynamic_shapes=({2: h, 3: w},),
    )
    backend = get_backend("tensorrt")
    with pytest.raises(UsageError, match="profile"):
        backend.build(path, BuildConfig(), tmp_path)
    profile = {"min": (1, 3, 16, 16), "opt": (1, 3, H, W), "max": (1, 3, 256, 256)}
    artifact = backend.build(path, BuildConfig(profile=profile), tmp_path)
    assert artifact.meta["profile"]["max"] == [1, 3, 256, 256]


def test_module_imports_without_tensorrt() -> None:
    assert trt_backend.BACKEND.name == "tensorrt" and trt_backend.BACKEND.can_build


# --- the CUDA runtime through ctypes (runtimes/cuda.py): no torch on a Jetson ----------------


def _system_libcudart() -> Path | None:
    import glob

    for folder in ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib", "/usr/lib/x86_64-linux-gnu"):
        found = sorted(glob.glob(f"{folder}/libcudart.so.*[0-9]"))
        if found:
            return Path(found[-1]).resolve()
    return None


def test_libcudart_is_found_in_the_pip_wheel_layout_and_answers_honestly(tmp_path: Path, monkeypatch) -> None:
    """The nvidia-cuda-runtime wheel's folder comes first; with the real library loaded,
    cudaGetDeviceCount's own error (no driver / no device here) is the one line we report."""
    monkeypatch.delenv(LIBCUDART_ENV, raising=False)
    real = _system_libcudart()
    if real is None:
        pytest.skip("no libcudart on this machine (install the CUDA runtime to run this test)")
    lib = tmp_path / "site" / "nvidia" / "cuda_runtime" / "lib"
    lib.mkdir(parents=True)
    (lib / real.name).symlink_to(real)
    assert library_candidates([str(tmp_path / "site")])[0] == str(lib / real.name)
    cuda = CudaRuntime([str(tmp_path / "site")])
    assert cuda.path == str(lib / real.name)
    assert cuda.error_text(2).startswith("cudaErrorMemoryAllocation")  # CUDA's own names, not ours
    ok, why = cuda_status()
    if ok:  # a GPU machine: the count and the name are real
        assert cuda.device_count() >= 1 and cuda.device_name(0)
        return
    with pytest.raises(CudaError, match=r"^no CUDA device: cudaGetDeviceCount returned cudaError(NoDevice|InsufficientDriver|NotInitialized|Unknown)") as err:
        cuda.device_count()
    assert "\n" not in str(err.value) and err.value.code != 0 and err.value.exit_code == 2
    assert why.startswith("no CUDA device: cudaGetDeviceCount returned cudaError")
    with pytest.raises(CudaError, match="no CUDA device"):
        cuda.set_device(0)


def test_a_libcudart_that_is_not_there_or_not_a_library_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(LIBCUDART_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(MissingRequirement, match=f"libcudart not found: .{LIBCUDART_ENV}=.*does not load"):
        load_libcudart()
    junk = tmp_path / "libcudart.so.12"
    junk.write_text("not an ELF file")
    monkeypatch.setenv(LIBCUDART_ENV, str(junk))
    assert library_candidates() == [str(junk)]  # chosen by the user: only that one
    with pytest.raises(MissingRequirement, match="does not load") as err:
        load_libcudart()
    assert "\n" not in str(err.value)


def _two_output_onnx(path: Path) -> Path:
    """A graph with the image as output 0 and a per-image statistic as a second output (as IAT's gamma)."""

    class TwoOut(torch.nn.Module):
        def forward(self, x):
            return torch.sigmoid(x * 2.0), x.mean(dim=(2, 3))

    torch.onnx.export(TwoOut(), (torch.rand(1, 3, H, W),), str(path), dynamo=True, verbose=False,
                      output_names=["output", "gamma"])
    return path


def test_an_engine_with_two_outputs_builds_and_runs_with_every_output(tmp_path: Path) -> None:
    """Every output is allocated: __call__ gives output 0, _infer_outputs all of them by name."""
    backend = get_backend("tensorrt")
    onnx_file = _two_output_onnx(tmp_path / "two.onnx")
    artifact = backend.build(onnx_file, BuildConfig(precision="fp32", workspace_mb=256), tmp_path / "engines")
    assert artifact.path.stat().st_size > 1000
    ok, why = cuda_status()
    if not ok:
        with pytest.raises(MissingRequirement, match="needs a CUDA GPU to run"):
            backend.load(artifact.path)
        pytest.skip(f"built; running needs a CUDA GPU ({why})")
    x = np.random.default_rng(0).random((1, 3, H, W), dtype=np.float32)
    with backend.load(artifact.path) as runner:
        assert runner.output_names == ["output", "gamma"]
        outs = runner._infer_outputs(x)
        image = runner(x)
    assert list(outs) == ["output", "gamma"] and outs["gamma"].shape == (1, 3)
    np.testing.assert_allclose(image, 1 / (1 + np.exp(-2 * x)), atol=1e-5)
    np.testing.assert_allclose(outs["gamma"], x.mean(axis=(2, 3)), atol=1e-5)
    np.testing.assert_array_equal(outs["output"], image)
