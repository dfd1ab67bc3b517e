"""The model zoo: real checkpoints, the authors' golden outputs, exact rewrites, and refusals."""

from __future__ import annotations

import io
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lowlight_edge.zoo.weights as zoo_weights
from lowlight_edge import zoo
from lowlight_edge.errors import UsageError, WeightsError
from lowlight_edge.images import from_nchw, quantize_8bit, read_rgb, to_nchw
from lowlight_edge.zoo.iat_student import ExactAdaptiveAvgPool2d

# docs/models.md sections 1-2: deployed parameter counts (LLPackNet after folding weight norm)
PARAMS = {
    "iat": 91_154,
    "iat_student": 43_504,
    "zero_dce_pp": 10_561,
    "tinydce": 161,
    "sgz": 10_561,
    "llpacknet": 1_169_088,
}


def small_input(name: str, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A small valid input: RGB in [0,1], or an amplified Bayer plane (raw ~0.2% of white x 100-300)."""
    g = torch.Generator().manual_seed(seed)
    if name == "llpacknet":
        return torch.rand(batch, 1, 64, 64, generator=g) * 0.004 * 250
    return torch.rand(batch, 3, 48, 72, generator=g) * 0.3


@pytest.fixture()
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights folder and cache, and a downloader that fails like a machine without network."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("LOWLIGHT_EDGE_WEIGHTS", str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(url: str, timeout: float = 60.0):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(zoo_weights, "_urlopen", no_network)
    return folder


# ---------------------------------------------------------------- registry and specs


def test_list_models_is_the_six_in_order() -> None:
    assert zoo.list_models() == ["iat", "iat_student", "zero_dce_pp", "tinydce", "sgz", "llpacknet"]


def test_unknown_model_suggests_the_close_name() -> None:
    with pytest.raises(UsageError, match="did you mean 'iat_student'"):
        zoo.get_spec("iat_studnet")


@pytest.mark.parametrize("name", zoo.list_models())
def test_spec_schema(name: str) -> None:
    spec = zoo.get_spec(name)
    assert spec.name == name and spec.title and spec.paper and spec.license and spec.reference
    h, w = spec.default_resolution
    assert h % spec.size_multiple == 0 and w % spec.size_multiple == 0
    spec.check_resolution(h, w)
    repo, commit = spec.source.split(" @ ")
    assert len(commit) == 40 and "/" in repo
    assert spec.default_weights in spec.weights
    for key, entry in spec.weights.items():
        assert entry.name == key and entry.file.endswith(".pth") and entry.license
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        if name != "llpacknet":  # the authors' LLPackNet weights are unavailable; ours have no URL
            assert entry.url.startswith(f"https://raw.githubusercontent.com/{repo}/{commit}/")
    if spec.input_kind == "rgb":
        assert spec.channels == 3 and spec.value_range == (0.0, 1.0) and spec.bayer_pattern is None
    else:
        assert spec.channels == 1 and spec.bayer_pattern == "RGGB" and spec.value_range[1] >= 300
    if not spec.dynamic_hw:
        assert spec.dynamic_hw_reason


@pytest.mark.parametrize("name", zoo.list_models())
def test_preset_module_paths_name_modules_of_the_model(name: str) -> None:
    """The preset's float_modules and bf16_f32_modules are module-path prefixes: each must name a
    module of the built model (a renamed module would leave its layer unkept, silently)."""
    preset = zoo.get_spec(name).preset
    modules = {path for path, _ in zoo.get_model(name, weights=None).named_modules()}
    for prefix, reason in preset.float_modules + preset.bf16_f32_modules:
        assert reason and any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix


def test_spec_details_that_later_stages_rely_on() -> None:
    for name in ("zero_dce_pp", "sgz"):
        spec = zoo.get_spec(name)
        assert (spec.scale_factor, spec.size_multiple, spec.default_resolution) == (12, 12, (396, 600))
        assert any("396" in note for note in spec.notes)
        with pytest.raises(UsageError, match="multiples of 12"):
            spec.check_resolution(400, 600)
    assert zoo.get_spec("tinydce").scale_factor == 1
    llp = zoo.get_spec("llpacknet")
    assert (llp.size_multiple, llp.default_resolution, llp.input_kind) == (16, (2848, 4256), "raw_bayer")
    assert set(zoo.get_spec("iat").weights) == {"lol_v2", "lol_v1", "exposure"}
    assert zoo.get_spec("iat").weights["lol_v2"].trained_range == (-1.0, 1.0)


@pytest.mark.parametrize("name", zoo.list_models())
def test_param_counts_match_the_docs(name: str) -> None:
    model = zoo.get_model(name, weights=None)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name] == zoo.get_spec(name).params


def test_llpacknet_checkpoint_holds_the_unfolded_count(shared: Path) -> None:
    state = zoo_weights.load_checkpoint(shared / "weights" / "llpacknet_synthetic.pth")
    assert len(state) == 75
    assert sum(v.numel() for v in state.values()) == 1_170_640  # 1,552 more than folded (one g per channel)


# ---------------------------------------------------------------- every shipped checkpoint


@pytest.mark.parametrize("name", zoo.list_models())
def test_default_checkpoint_loads_strictly_and_runs(name: str) -> None:
    model = zoo.get_model(name)
    assert not model.training
    info = zoo.weights_info(name)
    entry = zoo.get_spec(name).weights[zoo.get_spec(name).default_weights]
    assert set(info) == {"name", "path", "sha256", "license", "url"}
    assert (info["name"], info["sha256"], Path(info["path"]).name) == (entry.name, entry.sha256, entry.file)
    x = small_input(name, batch=2)
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 3, *x.shape[2:])
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    assert y.std() > 1e-3  # not a constant image


@pytest.mark.parametrize("weights", ["lol_v1", "exposure"])
def test_iat_other_weights_take_unit_range_input(weights: str) -> None:
    model = zoo.get_model("iat", weights)
    assert model.normalize is False and zoo.weights_info("iat", weights)["name"] == weights
    gamma_base = model.global_net.gamma_base
    if weights == "exposure":
        assert float(gamma_base) == 1.0 and not gamma_base.requires_grad
    with torch.no_grad():
        y = model(small_input("iat"))
    assert torch.isfinite(y).all() and 0 <= y.min() and y.max() <= 1
    assert zoo.get_model("iat").normalize is True  # lol_v2 (default) was trained on [-1, 1]


@pytest.mark.parametrize("name", ["iat", "tinydce"])
def test_random_init_is_reproducible(name: str) -> None:
    x = small_input(name)
    with torch.no_grad():
        a, b = zoo.get_model(name, None)(x), zoo.get_model(name, None)(x)
    assert torch.equal(a, b)
    info = zoo.weights_info(name, None)
    assert info["name"] == "random" and info["sha256"] is None


def test_user_file_is_loaded_and_hashed(shared: Path, tmp_path: Path) -> None:
    path = tmp_path / "my_tiny.pth"
    shutil.copy(shared / "weights" / "tinydce.pth", path)
    info = zoo.weights_info("tinydce", str(path))
    assert info["name"] == "file" and info["sha256"] == zoo.get_spec("tinydce").weights["default"].sha256
    x = small_input("tinydce")
    with torch.no_grad():
        assert torch.equal(zoo.get_model("tinydce", path)(x), zoo.get_model("tinydce")(x))


# ---------------------------------------------------------------- the authors' golden outputs


@pytest.mark.parametrize(
    ("name", "golden", "gamma"),
    [("iat", "iat_lol_v2_final.png", 0.689), ("iat_student", "iat_student_final.png", 0.728)],
)
def test_golden_outputs_within_one_level(shared: Path, name: str, golden: str, gamma: float) -> None:
    folder = shared / "data" / "golden"
    x = torch.from_numpy(to_nchw(read_rgb(folder / "low_demo.png")))
    model = zoo.get_model(name)
    with torch.no_grad():
        stages = model.stages(x)
        assert torch.equal(stages["img_high"], model(x))
    ours = quantize_8bit(from_nchw(stages["img_high"].numpy())).astype(int)
    theirs = np.round(read_rgb(folder / golden) * 255).astype(int)
    diff = np.abs(ours - theirs)
    print(f"{name}: {(diff > 0).sum()} of {diff.size} values differ, max {diff.max()}")
    assert diff.max() <= 1 and (diff > 0).sum() <= 200  # docs: 60 resp. 56 differ by one level
    assert float(stages["gamma"]) == pytest.approx(gamma, abs=1e-3)


# ---------------------------------------------------------------- exact rewrites


@pytest.mark.parametrize("hw", [(400, 600), (1080, 1920), (64, 64), (100, 70), (37, 129), (20, 30)])
def test_exact_adaptive_pool_equals_pytorch(hw: tuple[int, int]) -> None:
    x = torch.randn(1, 2, *hw, generator=torch.Generator().manual_seed(hw[0])) + 3.0
    ours, ref = ExactAdaptiveAvgPool2d(64), nn.AdaptiveAvgPool2d(64)
    assert torch.allclose(ours(x.double()), ref(x.double()), rtol=0, atol=1e-12)  # same windows
    assert (ours(x).double() - ref(x.double())).abs().max() < 1e-5  # float32 accumulation


def original_apply_color(img: torch.Tensor, color: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """The authors' per-sample loop: tensordot over channels-last pixels, clamp, pow."""
    hwc = img.permute(0, 2, 3, 1)
    out = []
    for i in range(hwc.shape[0]):
        pixels = torch.tensordot(hwc[i].reshape(-1, 3), color[i], dims=[[-1], [-1]])
        out.append(torch.clamp(pixels.reshape(hwc[i].shape), 1e-8, 1.0) ** gamma[i, :])
    return torch.stack(out).permute(0, 3, 1, 2)


@pytest.mark.parametrize("name", ["iat", "iat_student"])
def test_batch_of_two_equals_each_alone(shared: Path, name: str) -> None:
    a = read_rgb(shared / "data" / "golden" / "low_demo.png")[100:164, 200:296]
    b = read_rgb(shared / "data" / "eval" / "sice_101_3.png")[:64, :96]
    x = torch.from_numpy(np.concatenate([to_nchw(a), to_nchw(b)]))
    model = zoo.get_model(name)
    with torch.no_grad():
        both = model.stages(x)
        alone = torch.cat([model(x[:1]), model(x[1:])])
        loop = original_apply_color(both["img_local"], both["color"], both["gamma"])
    assert (both["gamma"][0] - both["gamma"][1]).abs() > 1e-3  # the two images really differ
    assert (both["img_high"] - alone).abs().max() < 1e-5
    assert (both["img_high"] - loop).abs().max() < 1e-5


def _unshuffle_6d(x: torch.Tensor, r: int) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * r * r, h // r, w // r)


class _RefDense(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.utils.weight_norm(nn.Conv2d(cin, 32, 3, padding=1, bias=False)), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(x)], 1)


class _RefRDB(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.dense_layers = nn.Sequential(*(_RefDense(ch + 32 * i) for i in range(6)))
        self.conv_1x1 = nn.Sequential(nn.utils.weight_norm(nn.Conv2d(ch + 192, ch, 1, bias=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(self.dense_layers(x)) + x


class ReferenceLLPackNet(nn.Module):
    """LLPackNet written plainly from docs/models.md 2.6: 6-D pack/unpack, four convs, weight_norm."""

    def __init__(self) -> None:
        super().__init__()

        def wn(cin: int, cout: int, k: int, bias: bool) -> nn.Module:
            return nn.utils.weight_norm(nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias))

        for plane in ("RDBr", "RDBg1", "RDBg2", "RDBb"):
            setattr(self, plane, nn.Sequential(wn(64, 64, 3, True), nn.ReLU()))
        self.before_identity = nn.Sequential(wn(256, 64, 1, False))
        self.RDB1, self.RDB2, self.RDB3 = _RefRDB(64), _RefRDB(64), _RefRDB(64)
        self.after_rdb = nn.Sequential(wn(192, 64, 1, False))
        self.final = nn.Sequential(nn.PixelShuffle(2), _RefRDB(16), nn.Sequential(wn(16, 192, 3, True)))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        planes = _unshuffle_6d(raw, 2)  # R, G1, G2, B
        convs = (self.RDBr, self.RDBg1, self.RDBg2, self.RDBb)
        a = torch.cat([conv(_unshuffle_6d(planes[:, i : i + 1], 8)) for i, conv in enumerate(convs)], 1)
        a = self.before_identity(a)
        r1 = self.RDB1(a)
        r2 = self.RDB2(r1)
        r3 = self.RDB3(r2)
        a = self.after_rdb(torch.cat([r1, r2, r3], 1)) + a
        y = self.final(a)
        b, _, h, w = y.shape  # UnPack 8x: channel (i*8 + j)*3 + c -> pixel (8y+i, 8x+j) of colour c
        y = y.reshape(b, 8, 8, 3, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, 3, 8 * h, 8 * w)
        return torch.sigmoid(y)


def test_llpacknet_folded_and_permuted_equals_reference(shared: Path) -> None:
    state = zoo_weights.load_checkpoint(shared / "weights" / "llpacknet_synthetic.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm is deprecated, but it is what the authors used
        ref = ReferenceLLPackNet().eval()
    ref.load_state_dict(state, strict=True)
    ours = zoo.get_model("llpacknet")
    x = small_input("llpacknet", batch=2, seed=3)[..., :48]  # 64x48: H != W catches axis mix-ups
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert got.shape == expected.shape == (2, 3, 64, 48)
    assert (got - expected).abs().max() < 1e-5
    assert expected.std() > 1e-3


def test_llpacknet_exports_without_6d_tensors(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    model = zoo.get_model("llpacknet", None)
    path = tmp_path / "llp.onnx"
    x = small_input("llpacknet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}},
        )
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    ranks = [len(v.type.tensor_type.shape.dim) for v in [*graph.value_info, *graph.output]]
    ops = [node.op_type for node in graph.node]
    assert max(ranks) <= 5 and ops.count("DepthToSpace") == 2  # PixelShuffle(2) and the 8x UnPack
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = small_input("llpacknet", batch=2, seed=5)[..., :32]
    with torch.no_grad():
        ref = model(x2).numpy()
    assert np.abs(session.run(None, {"x": x2.numpy()})[0] - ref).max() < 1e-5


def test_iat_student_exports_with_dynamic_hw(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    model = zoo.get_model("iat_student")
    path = tmp_path / "student.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (small_input("iat_student"),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}},
        )
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("Gather") <= 16 and ops.count("CumSum") == 0 and ops.count("MatMul") >= 2  # the pool as products
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert zoo.get_spec("iat_student").dynamic_hw
    for hw in ((100, 70), (64, 128)):
        x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(1)) * 0.3
        with torch.no_grad():
            ref = model(x).numpy()
        assert np.abs(session.run(None, {"x": x.numpy()})[0] - ref).max() < 1e-4


# ---------------------------------------------------------------- refusals and provenance


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_renamed_key_is_refused_with_names(shared: Path, tmp_path: Path) -> None:
    state = torch.load(shared / "weights" / "tinydce.pth", map_location="cpu", weights_only=True)
    state["e_conv1.dw.weight"] = state.pop("e_conv1.depth_conv.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as excinfo:
        zoo.get_model("tinydce", path)
    text = _one_line_error(excinfo)
    assert "1 missing: e_conv1.depth_conv.weight" in text and "1 unexpected: e_conv1.dw.weight" in text


def test_other_models_checkpoint_is_refused(shared: Path) -> None:
    with pytest.raises(
        WeightsError, match="not a tinydce checkpoint .16 unexpected: e_conv4.*10 wrong shape"
    ) as excinfo:
        zoo.get_model("tinydce", shared / "weights" / "zero_dce_pp.pth")
    _one_line_error(excinfo)


def test_llpacknet_with_wrong_keys_is_refused(shared: Path, tmp_path: Path) -> None:
    state = zoo_weights.load_checkpoint(shared / "weights" / "llpacknet_synthetic.pth")
    del state["final.2.0.bias"]
    torch.save({"model": state}, tmp_path / "llp.pth")
    with pytest.raises(WeightsError, match="1 missing: final.2.0.bias") as excinfo:
        zoo.get_model("llpacknet", tmp_path / "llp.pth")
    _one_line_error(excinfo)


def test_truncated_checkpoint_is_refused(shared: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.pth"
    path.write_bytes((shared / "weights" / "tinydce.pth").read_bytes()[:3000])
    with pytest.raises(WeightsError, match="truncated or corrupt") as excinfo:
        zoo.get_model("tinydce", path)
    _one_line_error(excinfo)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"e_conv1.depth_conv.weight": _Exploit(marker)}, path)
    with pytest.raises(WeightsError, match="refusing to load") as excinfo:
        zoo.get_model("tinydce", path)
    _one_line_error(excinfo)
    assert not marker.exists()


def test_modified_registered_file_fails_the_sha256(shared: Path, offline: Path) -> None:
    data = bytearray((shared / "weights" / "tinydce.pth").read_bytes())
    data[-100] ^= 0xFF
    (offline / "tinydce.pth").write_bytes(bytes(data))
    expected = zoo.get_spec("tinydce").weights["default"].sha256
    with pytest.raises(WeightsError) as excinfo:
        zoo.get_model("tinydce")
    text = _one_line_error(excinfo)
    assert expected in text and zoo_weights.sha256_file(offline / "tinydce.pth") in text


def test_missing_file_offline_names_file_url_and_fixes(offline: Path) -> None:
    entry = zoo.get_spec("sgz").weights["default"]
    with pytest.raises(WeightsError) as excinfo:
        zoo.get_model("sgz")
    text = _one_line_error(excinfo)
    for part in (entry.file, entry.url, "LOWLIGHT_EDGE_WEIGHTS", "--weights PATH"):
        assert part in text


def test_download_is_verified_then_cached(
    shared: Path, offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = (shared / "weights" / "tinydce.pth").read_bytes()
    urls: list[str] = []

    def fake_urlopen(url: str, timeout: float = 60.0) -> io.BytesIO:
        urls.append(url)
        return io.BytesIO(served)

    monkeypatch.setattr(zoo_weights, "_urlopen", fake_urlopen)
    cached = zoo_weights.cache_dir() / "tinydce.pth"
    served = good[:-10] + b"0123456789"  # a corrupted transfer is rejected and leaves nothing behind
    with pytest.raises(WeightsError, match="expected"):
        zoo.get_model("tinydce")
    assert not cached.exists() and list(cached.parent.iterdir()) == []
    served = good
    zoo.get_model("tinydce")
    assert cached.read_bytes() == good and zoo.weights_info("tinydce")["path"] == str(cached)
    assert urls == [zoo.get_spec("tinydce").weights["default"].url] * 2  # the cache is used afterwards


def test_llpacknet_without_its_file_warns_and_runs_random(offline: Path) -> None:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        info = zoo.weights_info("llpacknet")
    assert info["name"] == "random" and info["sha256"] is None
    with pytest.warns(UserWarning):
        model = zoo.get_model("llpacknet")
    with torch.no_grad():
        assert torch.isfinite(model(small_input("llpacknet"))).all()
    with pytest.raises(WeightsError, match="llpacknet_synthetic.pth.*LOWLIGHT_EDGE_WEIGHTS"):
        zoo.get_model("llpacknet", "synthetic")  # asked for by name: no silent fallback


def test_unknown_weights_name_suggests() -> None:
    with pytest.raises(WeightsError, match="did you mean 'lol_v2'"):
        zoo.get_model("iat", "lol_v3")


def test_zero_dce_family_resampling_matches_the_authors_formula() -> None:
    model = zoo.get_model("zero_dce_pp")
    x = small_input("zero_dce_pp")
    with torch.no_grad():
        stages = model.stages(x)
        small = F.interpolate(x, scale_factor=1 / 12, mode="bilinear", align_corners=False)
        r = F.interpolate(model.curve_map(small), size=x.shape[2:], mode="bilinear", align_corners=True)
        y = x
        for _ in range(8):
            y = y + r * (torch.pow(y, 2) - y)
    assert torch.equal(stages["curve"], r) and (stages["enhanced"] - y).abs().max() < 1e-6
