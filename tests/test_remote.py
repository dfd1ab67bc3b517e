"""`python -m bench --device ssh://...` against a real OpenSSH sshd started here on 127.0.0.1.

The server gets a throwaway host key and one authorized key in tmp_path; the client is the
user's own `ssh`, pointed at a config file in tmp_path through LOWLIGHT_EDGE_SSH_OPTIONS, with
host key checking left on. The "device" is this machine: its Python is the venv's (numpy and
OpenVINO) for the good run, the system python3 (no numpy) or the venv's with OpenVINO hidden for
the requirement cases. CI (.ci/run) installs openssh-server and sets LOWLIGHT_EDGE_REQUIRE_SSHD=1,
so there a missing sshd fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from bench.cli import main as bench_main
from bench.remote import parse_device, target_fields
from lowlight_edge.console import run_main
from lowlight_edge.errors import MissingRequirement, UsageError
from tests.test_bench_cli import TINY_TARGET

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class Server:
    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        host_pub = _keygen(root / "host_key")
        client_pub = _keygen(root / "client_key")
        (root / "authorized_keys").write_text(client_pub + "\n")
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        other = _keygen(root / "other_host_key")
        (root / "wrong_known_hosts").write_text(f"[127.0.0.1]:{self.port} {other}\n")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
        )
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        except PermissionError:
            pytest.skip("sshd needs /run/sshd, which only root can create (CI runs as root)")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sshd did not start: {self.proc.stderr.read()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.1)
        self.bundle = root / "device-bundle"

    def client_config(self, known_hosts: str = "known_hosts", key: str = "client_key") -> Path:
        path = self.root / f"ssh_config-{known_hosts}-{key}"
        path.write_text(
            f"Host 127.0.0.1\n  IdentityFile {self.root / key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.root / known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
        )
        return path

    def sessions(self) -> list[psutil.Process]:
        return [p for p in psutil.Process(self.proc.pid).children(recursive=True) if p.name().startswith("sshd")]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(SSHD).exists():
        if os.environ.get("LOWLIGHT_EDGE_REQUIRE_SSHD"):
            pytest.fail(f"{SSHD} is missing: apt-get install -y openssh-server")
        pytest.skip("no sshd here (apt-get install openssh-server); CI installs it and does not skip")
    server = Server(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    targets = root / "targets.yaml"
    targets.write_text(TINY_TARGET)
    return root, targets


def _bench(shared, out: Path, *extra: str, quiet: bool = True) -> int:
    root, targets = shared
    return run_main(
        bench_main,
        ["--targets", str(targets), "--target", "tiny-cpu", "--models", "tinydce", "--out", str(out),
         "--artifacts", str(root / "artifacts"), *(["--quiet"] if quiet else []), *extra],
    )


@pytest.fixture
def ssh_env(server, monkeypatch):
    def use(known_hosts: str = "known_hosts", key: str = "client_key") -> None:
        monkeypatch.setenv("LOWLIGHT_EDGE_SSH_OPTIONS", f"-F {server.client_config(known_hosts, key)}")
        monkeypatch.setenv("LOWLIGHT_EDGE_REMOTE_ROOT", str(server.bundle))

    use()
    return use


def _url(server, python: str = sys.executable) -> str:
    return f"ssh://127.0.0.1:{server.port}?python={python}"


def test_parse_device() -> None:
    assert parse_device("ssh://me@jetson.local:2222").url == "ssh://me@jetson.local:2222"
    assert parse_device("ssh://orin").port is None
    assert parse_device("ssh://h?python=/opt/py/bin/python3").python == "/opt/py/bin/python3"
    for bad in ("jetson", "ssh://-oProxyCommand=x", "ssh://a;b", "ssh://h:99999", "ssh://h?python=$(x)", "ssh://u s@h"):
        with pytest.raises(UsageError):
            parse_device(bad)


def test_remote_bench_matches_a_local_run(server, ssh_env, shared, tmp_path: Path, monkeypatch, capsys) -> None:
    local_out, remote_out = tmp_path / "local", tmp_path / "remote"
    assert _bench(shared, local_out) == 0
    sent: list[int] = []
    from bench.remote import Session

    real_send = Session.send

    def spy(self, files, missing):
        sent.append(len(missing))
        return real_send(self, files, missing)

    monkeypatch.setattr(Session, "send", spy)
    assert _bench(shared, remote_out, "--device", _url(server)) == 0, capsys.readouterr().err
    local = {(r["runtime"], r["precision"]): r for r in json.loads((local_out / "results.json").read_text())
             if not r.get("baseline")}  # a remote run has no baseline row
    remote = {(r["runtime"], r["precision"]): r for r in json.loads((remote_out / "results.json").read_text())}
    assert (remote_out / "results.md").is_file() and (remote_out / "results.png").stat().st_size > 1000
    assert ("openvino", "fp32") in remote and set(remote) == set(local) - {("torch", "fp32")}  # no torch on a device
    for key, row in remote.items():
        # same schema (the local rows' report thumbnails and video figures are not made on a device yet)
        assert set(local[key]) <= set(row) | {"crosscheck", "preview", "video"}, set(local[key]) - set(row)
        assert row["host"]["remote"] == f"ssh://127.0.0.1:{server.port}"
        assert row["host"]["cpu"] and row["host"]["versions"] and row["host"]["threads"] == 1
        assert "board" in row["host"] and row["host"]["limits"] is None  # the device's block, not this host's
        assert row["psnr_db"] == pytest.approx(local[key]["psnr_db"], rel=1e-6)
        assert row["ssim"] == pytest.approx(local[key]["ssim"], rel=1e-6)
        assert row["max_abs_err"] == pytest.approx(local[key]["max_abs_err"], rel=1e-5, abs=1e-7)
        assert row["nonfinite"] == 0 and row["latency_ms"]["p50"] > 0
    assert sent[0] > 0
    assert list((server.bundle / "runs").iterdir()) == []  # the per-run folder is gone

    # a rerun sends nothing: the device already has every file by hash; without --quiet the
    # device's progress lines are shown
    capsys.readouterr()
    assert _bench(shared, tmp_path / "again", "--device", _url(server), quiet=False) == 0
    assert sent[1] == 0
    assert f"127.0.0.1:{server.port}: row 1/" in capsys.readouterr().err


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_wrong_host_key_exits_2(server, ssh_env, shared, tmp_path: Path, capsys) -> None:
    ssh_env(known_hosts="wrong_known_hosts")
    assert _bench(shared, tmp_path / "r", "--device", _url(server)) == 2
    assert "host key" in _one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_refused_login_and_unreachable_exit_2(server, ssh_env, shared, tmp_path: Path, capsys) -> None:
    ssh_env(key="other_host_key")  # a key the server does not authorize
    assert _bench(shared, tmp_path / "r", "--device", _url(server)) == 2
    assert "refused the login" in _one_line(capsys)
    ssh_env()
    assert _bench(shared, tmp_path / "r", "--device", f"ssh://127.0.0.1:{_free_port()}") == 2
    assert "cannot reach" in _one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_device_without_python_numpy_or_runtime_exits_2(server, ssh_env, shared, tmp_path: Path, capsys) -> None:
    assert _bench(shared, tmp_path / "r", "--device", _url(server, str(tmp_path / "no" / "python3"))) == 2
    assert "has no `" in _one_line(capsys)
    bare = "/usr/bin/python3"
    if subprocess.run([bare, "-c", "import numpy"], capture_output=True).returncode == 0:
        pytest.skip("the system python3 has numpy")
    assert _bench(shared, tmp_path / "r", "--device", _url(server, bare)) == 2
    assert "no numpy" in _one_line(capsys)

    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'openvino':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    wrapper = tmp_path / "python-without-openvino"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={hide} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    assert _bench(shared, tmp_path / "r", "--device", _url(server, str(wrapper))) == 2
    line = _one_line(capsys)
    assert "openvino" in line and "ssh://127.0.0.1" in line
    assert not (tmp_path / "r").exists()
    assert list((server.bundle / "runs").iterdir()) == []


def test_dropped_connection_exits_2_and_cleans_the_device(server, ssh_env, shared, tmp_path: Path, capsys) -> None:
    runs = server.bundle / "runs"
    killed: list[int] = []

    def drop() -> None:  # as soon as the agent runs on the device, kill the server's side of the session
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if runs.is_dir() and any((d / "out").is_dir() for d in runs.iterdir()):
                for proc in server.sessions():
                    proc.kill()
                    killed.append(proc.pid)
            time.sleep(0.05)

    thread = threading.Thread(target=drop, daemon=True)
    thread.start()
    code = _bench(shared, tmp_path / "r", "--device", _url(server), "--iterations", "2000")
    thread.join(timeout=5)
    assert killed
    assert code == 2
    assert "dropped" in _one_line(capsys)
    assert not (tmp_path / "r").exists()
    deadline = time.monotonic() + 20
    while any(runs.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(runs.iterdir()) == []  # the device removed the run when its connection went


def test_a_target_can_name_its_remote_device(shared, tmp_path: Path, capsys) -> None:
    root, _ = shared
    port = _free_port()  # nothing listens there
    targets = tmp_path / "targets.yaml"
    targets.write_text(TINY_TARGET.replace("    requires: [openvino]\n", f"    requires: [openvino]\n    remote: ssh://127.0.0.1:{port}\n"))
    args = ["--targets", str(targets), "--target", "tiny-cpu", "--models", "tinydce", "--out", str(tmp_path / "r"),
            "--artifacts", str(root / "artifacts"), "--quiet"]
    assert run_main(bench_main, args) == 2
    assert f"cannot reach 127.0.0.1:{port}" in _one_line(capsys)
    targets.write_text(TINY_TARGET.replace("    requires: [openvino]\n", "    requires: [openvino]\n    remote: orin.local\n"))
    assert run_main(bench_main, args) == 2
    assert "not an ssh:// address" in _one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_device_out_of_disk_is_one_line_before_anything_is_sent(server, ssh_env, tmp_path: Path) -> None:
    """prepare refuses a bundle that does not fit the device's free space (sizes as the workstation
    states them), through the real sshd, and leaves no run folder behind."""
    from bench.remote import Session

    session = Session(parse_device(_url(server)))
    session.hello()
    big = tmp_path / "big.bin"
    big.write_bytes(b"x")
    real_stat = Path.stat

    def huge(self, *args, **kwargs):
        st = real_stat(self, *args, **kwargs)
        if self == big:
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                                   2**60, int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))
        return st

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "stat", huge)
        with pytest.raises(MissingRequirement, match="out of disk"):
            session.prepare({"data/big.bin": big})
    assert session.run_dir is None
    assert list((server.bundle / "runs").iterdir()) == []


def test_agent_builds_the_engine_on_the_device(shared, tmp_path: Path, monkeypatch) -> None:
    """bench.agent's TensorRT path: the engine and its sidecar are built where the agent runs
    (TensorRT-RTX builds without a GPU, so this host can play the device's build step)."""
    import numpy as np

    from bench import agent
    from export.config import ExportRequest
    from export.pipeline import export
    from lowlight_edge.targets import get_target
    from runtimes import get_backend

    if not get_backend("tensorrt").is_available("rtx")[0]:
        pytest.skip("no TensorRT-RTX builder here")
    root, targets = shared
    manifest = export(ExportRequest(model="tinydce", target="tiny-cpu", targets_file=targets, out=root / "artifacts",
                                    until="simplify"), progress=False)
    files = {f["role"]: f for f in json.loads(manifest.read_text())["files"]}
    tree = tmp_path / "tree"
    (tree / "m").mkdir(parents=True)
    shutil.copy(manifest.parent / files["simplified"]["path"], tree / "m" / "model.onnx")
    frames = np.zeros((1, 3, 48, 72), np.float32)
    np.save(tree / "m" / "frames.npy", frames)
    target = get_target("desktop-gpu")
    monkeypatch.setattr(agent, "check_host", lambda target: None)  # this host has no CUDA GPU to run it on
    with pytest.raises(MissingRequirement, match="runs TensorRT engines on this device's GPU and it has none usable: no CUDA device|libcudart"):
        agent.check_gpu(target)  # this host is a device without a GPU: one line, not a torch requirement
    monkeypatch.setattr(agent, "check_gpu", lambda target: None)
    job = {
        "base": str(tree),
        "target": target_fields(target),
        "rows": [{"spec": {"backend": "tensorrt", "artifact": None, "device": "cuda:0", "warmup": 0, "iterations": 1,
                           "frames": "m/frames.npy", "reference": None},
                  "build": {"model": "tinydce", "precision": "fp32", "onnx": "m/model.onnx",
                            "input_shape": [1, 3, 48, 72], "plan": None}}],
    }
    out = tmp_path / "out"
    result = agent.run_job(job, out)
    row = result["rows"][0]
    engine = out / row["engine"]
    assert engine.suffix == ".engine" and engine.stat().st_size > 0 and Path(f"{engine}.json").is_file()
    assert engine.parent == out / "engines" / "tinydce"
    assert json.loads(Path(f"{engine}.json").read_text())  # the sidecar travels with it
    assert result["host"]["cpu"] and result["host"]["limits"] is None


def test_the_bundle_alone_runs_the_agent_without_torch(tmp_path: Path) -> None:
    """The shipped code is self-contained and light: from a bare copy of it, the agent, the worker
    and the CPU backends import with nothing but numpy beyond the standard library (and the
    vendored PyYAML), so the device needs no torch, NNCF, psutil or this repository."""
    from bench.remote import code_files

    tree = tmp_path / "tree"
    for rel, path in code_files().items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tree / rel)
    probe = (
        "import sys, json\n"
        f"sys.path[:0] = [{str(tree)!r}, {str(tree / '_vendor')!r}]\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]\n"
        "import bench.agent, bench.worker, runtimes.backend_openvino, runtimes.backend_onnxruntime\n"
        "top = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
        "print(json.dumps({'file': bench.agent.__file__, 'yaml': sys.modules['yaml'].__file__, 'top': sorted(top)}))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["file"].startswith(str(tree)) and found["yaml"].startswith(str(tree))
    heavy = set(found["top"]) - {"bench", "runtimes", "lowlight_edge", "numpy", "yaml", "__main__"}
    assert not {m for m in heavy if not m.startswith("_")}, heavy


TINY_GPU = """
version: 1
targets:
  tiny-gpu:
    description: a tiny TensorRT target whose engines are built on the device (TensorRT-RTX needs no GPU)
    runtime: tensorrt
    device: cuda:0
    precisions: [fp16, fp32]
    threads: null
    budget: {psnr_mean_db: 40.0, psnr_min_db: 38.0}
    warmup: 1
    iterations: 3
    timeout_s: 600
    resolutions:
      default: 48x72
    requires: [tensorrt, cuda]
    options:
      workspace_mb: 256
      builder: rtx
"""


def test_export_builds_the_engines_on_the_device(server, ssh_env, tmp_path: Path, capsys) -> None:
    """`python -m export tinydce --target T --device ssh://...`: ONNX and FP16 ONNX made here, engines
    built by the device's TensorRT (this host plays the device: TensorRT-RTX builds without a GPU),
    engines and sidecars back in the export folder, and the manifest lists exactly them by sha256."""
    from export.cli import main as export_main
    from lowlight_edge.hashing import sha256_file
    from runtimes import get_backend

    if not get_backend("tensorrt").is_available("rtx")[0]:
        pytest.skip("no TensorRT-RTX builder here")
    targets = tmp_path / "targets.yaml"
    targets.write_text(TINY_GPU)
    out = tmp_path / "artifacts"
    args = ["tinydce", "--targets", str(targets), "--target", "tiny-gpu", "--out", str(out), "--quiet",
            "--device", _url(server)]
    assert run_main(export_main, args) == 0, capsys.readouterr().err
    folder = out / "tiny-gpu" / "tinydce"
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {f["role"]: f for f in manifest["files"]}
    assert {"simplified", "fp16_onnx", "engine_fp16", "engine_fp16_json", "engine_fp32", "engine_fp32_json"} <= set(files)
    for role in ("engine_fp16", "engine_fp32"):
        record = files[role]
        engine = folder / record["path"]
        assert engine.parent == folder / "tensorrt" and engine.suffix == ".engine"
        assert sha256_file(engine) == record["sha256"] and engine.stat().st_size == record["bytes"]
        side = json.loads(Path(f"{engine}.json").read_text())
        assert side["engine_sha256"] == record["sha256"] and side["precision"] == record["precision"]
        assert side["builder"].startswith("tensorrt_rtx") and f"127.0.0.1:{server.port}" in record["notes"][0]
        assert side["built_on"] == f"ssh://127.0.0.1:{server.port}" and (folder / side["onnx"]).is_file()
        assert sha256_file(Path(f"{engine}.json")) == files[role + "_json"]["sha256"]
    source = {"engine_fp16": "fp16_onnx", "engine_fp32": "simplified"}
    for role, src in source.items():
        side = json.loads((folder / (files[role]["path"] + ".json")).read_text())
        assert side["fields"]["onnx_sha256"] == files[src]["sha256"]  # built from exactly the ONNX listed
    assert not list(folder.glob(".tmp-*")) and list((server.bundle / "runs").iterdir()) == []
    listed = {f["path"] for f in manifest["files"]}
    assert {f"tensorrt/{p.name}" for p in (folder / "tensorrt").iterdir()} == {p for p in listed if p.startswith("tensorrt/")}
    assert "manifest:" in capsys.readouterr().out

    # a rerun sends the engines back to the device, whose builder reuses them (same ONNX, TensorRT
    # and GPU): the same files land again and the manifest still lists exactly them
    before = {f["role"]: f["sha256"] for f in manifest["files"] if f["role"].startswith("engine_") and not f["role"].endswith("_json")}
    built = {r: json.loads((folder / (files[r]["path"] + ".json")).read_text())["built"] for r in before}
    time.sleep(1.1)  # a rebuild would stamp another second
    assert run_main(export_main, [*args[:-2], "--device", _url(server)]) == 0, capsys.readouterr().err
    again = json.loads((folder / "manifest.json").read_text())
    assert {f["role"]: f["sha256"] for f in again["files"] if f["role"] in before} == before
    again_files = {f["role"]: f for f in again["files"]}
    assert {r: json.loads((folder / (again_files[r]["path"] + ".json")).read_text())["built"] for r in before} == built


def test_export_device_refusals_are_one_line_before_any_write(server, ssh_env, shared, tmp_path: Path, capsys) -> None:
    from export.cli import main as export_main

    root, targets = shared
    out = tmp_path / "artifacts"
    assert run_main(export_main, ["tinydce", "--targets", str(targets), "--target", "tiny-cpu", "--out", str(out),
                                  "--quiet", "--device", _url(server)]) == 2
    line = _one_line(capsys)
    assert "--device builds TensorRT engines on the device" in line and "python -m bench" in line
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text(TINY_GPU)
    assert run_main(export_main, ["tinydce", "--targets", str(gpu), "--target", "tiny-gpu", "--out", str(out),
                                  "--quiet", "--device", f"ssh://127.0.0.1:{_free_port()}"]) == 2
    assert "cannot reach" in _one_line(capsys)
    assert run_main(export_main, ["tinydce", "--targets", str(gpu), "--target", "tiny-gpu", "--out", str(out),
                                  "--quiet", "--device", "ssh://a;b"]) == 2
    assert "is not ssh://" in _one_line(capsys)
    assert not out.exists()


def test_a_tensorrt_device_gets_an_fp16_source_and_a_gpu_check_not_a_torch_one(server, ssh_env, tmp_path: Path, capsys) -> None:
    """The bench ships what each precision's engine is built from on the device, the FP16 ONNX
    included (it used to be made only by the local engine stage, so there was no fp16 row); this
    host as the device has no GPU, which is one line naming cudaGetDeviceCount's answer."""
    from bench.harness import BenchRequest, prepare_model, ship_artifact
    from bench.remote import RemoteJob
    from lowlight_edge.targets import get_target
    from runtimes.base import onnx_precision

    targets = tmp_path / "targets.yaml"
    targets.write_text(TINY_GPU)
    target = get_target("tiny-gpu", targets)
    request = BenchRequest(target="tiny-gpu", targets_file=targets, artifacts=tmp_path / "artifacts", out=tmp_path / "r")
    manifest, folder, base, _, _ = prepare_model("tinydce", target, request, tmp_path, for_device=True)
    assert not [f for f in manifest["files"] if f["role"].startswith("engine_")]  # nothing built here
    job = RemoteJob(target=target_fields(target))
    builds = {p: ship_artifact(job, manifest, target, p, folder, base["_shape"])[1] for p in ("fp16", "fp32")}
    assert onnx_precision(job.files[builds["fp16"]["onnx"]]) == "fp16"
    assert onnx_precision(job.files[builds["fp32"]["onnx"]]) == "fp32"

    code = run_main(bench_main, ["--targets", str(targets), "--target", "tiny-gpu", "--models", "tinydce", "--out",
                                 str(tmp_path / "r"), "--artifacts", str(tmp_path / "artifacts"), "--quiet",
                                 "--device", _url(server)])
    line = _one_line(capsys)
    if code == 0:
        pytest.skip("this device has a CUDA GPU: the rows ran")
    assert code == 2 and "GPU" in line and "needs torch" not in line, line
    assert not (tmp_path / "r").exists()


def test_export_device_build_failure_leaves_no_manifest_and_no_engine(server, ssh_env, tmp_path: Path, capsys) -> None:
    """The device's builder refuses (a DLA core asked of TensorRT-RTX): one line, exit 2, and the
    export folder holds no manifest, no engine and no landing folder (the ONNX stages stay cached)."""
    from export.cli import main as export_main
    from runtimes import get_backend

    if not get_backend("tensorrt").is_available("rtx")[0]:
        pytest.skip("no TensorRT-RTX builder here")
    targets = tmp_path / "targets.yaml"
    targets.write_text(TINY_GPU.replace("      builder: rtx\n", "      builder: rtx\n      dla_core: 0\n"))
    out = tmp_path / "artifacts"
    code = run_main(export_main, ["tinydce", "--targets", str(targets), "--target", "tiny-gpu", "--out", str(out),
                                  "--quiet", "--device", _url(server)])
    line = _one_line(capsys)
    assert code == 2 and "DLA" in line and f"127.0.0.1:{server.port}" in line, line
    folder = out / "tiny-gpu" / "tinydce"
    assert not (folder / "manifest.json").exists() and not list(folder.glob(".tmp-*"))
    assert not list(folder.rglob("*.engine")) and (folder / "tinydce.sim.onnx").is_file()
    assert list((server.bundle / "runs").iterdir()) == []
