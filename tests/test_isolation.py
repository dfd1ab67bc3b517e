"""runtimes.isolation: runners whose denormal modes differ are timed in processes of their own.

Real OpenVINO on a one-node graph whose output is a denormal (1e-10 x 1e-30 = 1e-40): flushed
to zero it reads 0, so which mode a compiled model really ran in shows in its output, not in a
timing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lowlight_edge.errors import MissingRequirement
from runtimes import get_backend
from runtimes.isolation import ChildRunner, needs_isolation, timers

pytest.importorskip("openvino")

X = np.full((1, 3, 8, 8), 1e-10, np.float32)


@pytest.fixture()
def denormal_graph(tmp_path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.full((1, 3, 8, 8), 1e-30, np.float32), "scale")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])], "denormal",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], [scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "denormal.onnx"
    onnx.save(model, str(path))
    return path


def test_one_process_leaks_the_denormal_mode_and_children_keep_each_their_own(denormal_graph: Path) -> None:
    keep = get_backend("openvino").load(denormal_graph, options={"threads": 2, "denormals": False})
    assert keep(X).max() == pytest.approx(1e-40, rel=0.01)  # denormals kept
    flush = keep.variant({"denormals": True})
    assert flush(X).max() == 0.0
    # why isolation exists: compiling the flushing model switched the shared stream thread, and the
    # first model, compiled with flushing off, now flushes too (OpenVINO 2026.4)
    assert keep(X).max() == 0.0
    assert needs_isolation({"keep": keep, "flush": flush}) and not needs_isolation({"a": keep, "b": keep})
    with timers({"keep": keep, "flush": flush}, [X]) as calls:
        assert all(isinstance(call, ChildRunner) for call in calls.values())
        assert calls["keep"](0) > 0 and calls["flush"](1) > 0
        assert calls["keep"].max_abs(0) == pytest.approx(1e-40, rel=0.01)  # its own mode, the other alive beside it
        assert calls["flush"].max_abs(0) == 0.0
        pids = [call.pid for call in calls.values()]
    assert all(call.peak_rss_mb > 10 for call in calls.values())  # each child said what it held
    for pid in pids:  # each child is gone once the timing is done
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    keep.close()
    flush.close()


def test_runners_of_one_mode_are_timed_here(denormal_graph: Path) -> None:
    a = get_backend("openvino").load(denormal_graph, options={"threads": 1})
    b = a.variant({"precision": "f32"})
    with timers({"a": a, "b": b}, [X, X * 2]) as calls:
        assert not any(isinstance(call, ChildRunner) for call in calls.values())
        assert calls["a"](0) > 0 and calls["b"](3) > 0
    a.close()
    b.close()


def test_a_child_that_cannot_load_says_why(tmp_path: Path) -> None:
    np.save(tmp_path / "frames.npy", np.stack([X]))
    (tmp_path / "m").mkdir()
    spec = {"backend": "openvino", "path": str(tmp_path / "m" / "missing.xml"), "device": "cpu", "options": {}}
    with pytest.raises(MissingRequirement, match="the timing process of broken failed: .*missing.xml"):
        ChildRunner(spec, tmp_path / "frames.npy", "broken").ready()
