"""A device over SSH: the transport behind ``python -m bench --device`` and ``python -m export --device``.

Transport is the user's own OpenSSH client (``ssh``), so ~/.ssh/config, keys, the agent, jump
hosts and known_hosts checking all apply as they do for the user; BatchMode=yes means a
password is never asked for, and host key checking is never turned off. Extra ssh options (a
``-F`` config file, ``-J`` jump host) can be given in LOWLIGHT_EDGE_SSH_OPTIONS. Each call is an
argv list (no local shell); the one remote command line is built from shlex-quoted words.

On the device, bench/remote_boot.py (stdlib only, sent as ``python3 -c``) keeps a
content-addressed store under ``~/.cache/lowlight-edge/bundle``: the workstation asks which
files (our code, the artifacts, frames and references) it lacks by sha256, sends only those as a
tar stream, then runs bench.agent in a per-run folder that is removed afterwards. Results and
any engine built there come back as one tar on stdout.

It lives on the stages' floor (not in bench/) so that the export pipeline can build TensorRT
engines on a device (``build_on_device``); bench/remote.py re-exports it for the bench.
The code shipped is the agent's import closure (``code_closure``), kept Python 3.8.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from export.core import Context, FileRecord, Stage
from export.engine import BuildEngine
from export.verify import checker_name
from lowlight_edge.atomic import write_json
from lowlight_edge.errors import CheckFailed, MissingRequirement, UsageError
from lowlight_edge.hashing import sha256_file

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOT = REPO_ROOT / "bench" / "remote_boot.py"  # read and sent as text; never imported here
REMOTE_ROOT = ".cache/lowlight-edge/bundle"  # relative to the login's home on the device
CODE_PACKAGES = ("bench", "runtimes", "lowlight_edge")
CODE_EXCLUDE = ("lowlight_edge/zoo",)  # the models themselves run on the workstation only
# What the device runs: the agent, the worker it starts per row, and the backends get_backend()
# imports by name (runtimes.backend_torch stays here: it needs the zoo and torch).
AGENT_ROOTS = ("bench.agent", "bench.worker", "runtimes.backend_onnxruntime", "runtimes.backend_openvino",
               "runtimes.backend_tensorrt")
SSH_OPTIONS_ENV = "LOWLIGHT_EDGE_SSH_OPTIONS"
PROGRESS_PREFIX = "progress: "  # bench.agent's lines meant for the user
REMOTE_ROOT_ENV = "LOWLIGHT_EDGE_REMOTE_ROOT"  # another bundle folder on the device (absolute, or under its home)
BASE_OPTIONS = (
    "-o", "BatchMode=yes",  # never a password prompt: keys or the agent only
    "-o", "ConnectTimeout=15",
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=3",  # a dead link is noticed within ~15 s
)
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_URL_RE = re.compile(rf"^ssh://(?:(?P<user>{_NAME})@)?(?P<host>{_NAME}|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d+))?/?$")


@dataclass(frozen=True)
class SshDevice:
    """Where to bench: ssh://[user@]host[:port][?python=/path/to/python3]."""

    host: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"ssh://{user}{self.host}{port}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


def parse_device(text: str) -> SshDevice:
    """``ssh://[user@]host[:port]`` (optionally ``?python=PATH``) -> SshDevice; anything else is a UsageError."""
    url, _, query = str(text).partition("?")
    match = _URL_RE.match(url)
    if not match:
        msg = f"--device {text!r} is not ssh://[user@]host[:port] (host and user: letters, digits, . _ -)"
        raise UsageError(msg)
    python = "python3"
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key != "python" or not re.fullmatch(r"[A-Za-z0-9._/+-]+", value):
            msg = f"--device {text!r}: the only query is ?python=/path/to/python3 (a plain path)"
            raise UsageError(msg)
        python = value
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        msg = f"--device {text!r}: port {port} is outside 1..65535"
        raise UsageError(msg)
    return SshDevice(host=match["host"].strip("[]"), user=match["user"], port=port, python=python)


# --------------------------------------------------------------------------------------------
# The transport


def _classify(device: SshDevice, stderr: str, step: str) -> str:
    """ssh's exit 255 -> one line naming the problem."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("@")]
    last = lines[-1] if lines else "no message"
    text = stderr.lower()
    if "host key verification failed" in text or "remote host identification has changed" in text:
        return (f"the host key of {device.where} is unknown or differs from known_hosts ({last}); verify the "
                "device's key and add it (ssh once by hand, or ssh-keyscan); host key checking stays on")
    if "permission denied" in text or "too many authentication failures" in text:
        return (f"{device.url}: the device refused the login ({last}); add your public key to its "
                "~/.ssh/authorized_keys or load it into ssh-agent (no password is ever asked)")
    if any(s in text for s in ("connection refused", "no route to host", "could not resolve", "timed out",
                               "network is unreachable", "name or service not known")) and step == "connect":
        return f"cannot reach {device.where} over SSH: {last}"
    if step == "connect":
        return f"cannot open an SSH session to {device.url}: {last}"
    return f"the SSH connection to {device.where} dropped while {step} ({last}); rerun to resume (the device keeps what it received)"


class Session:
    """ssh calls to one device, each a fresh connection of the user's own client."""

    def __init__(self, device: SshDevice, ssh: str = "ssh", echo: bool = False):
        self.device = device
        self.echo = echo  # show the agent's progress lines on stderr
        self.ssh = ssh
        self.extra = shlex.split(os.environ.get(SSH_OPTIONS_ENV, ""))
        self.boot = BOOT.read_text()
        self.run_dir: str | None = None
        self.root = os.environ.get(REMOTE_ROOT_ENV) or REMOTE_ROOT

    def argv(self, words: list[str]) -> list[str]:
        d = self.device
        dest = ["-p", str(d.port)] if d.port else []
        dest += ["-l", d.user] if d.user else []
        remote = " ".join(shlex.quote(w) for w in words)
        return [self.ssh, *BASE_OPTIONS, *self.extra, *dest, "--", d.host, remote]

    def boot_words(self, *args: str) -> list[str]:
        return [self.device.python, "-c", self.boot, *args]

    def call(self, args: list[str], data: bytes | IO[bytes], step: str, timeout_s: float = 120) -> bytes:
        """One boot command; ``data`` is its stdin (bytes, or a real file streamed as is)."""
        feed = {"input": data} if isinstance(data, bytes) else {"stdin": data}
        try:
            proc = subprocess.run(self.argv(self.boot_words(*args)), capture_output=True, timeout=timeout_s, **feed)
        except FileNotFoundError as err:
            msg = f"no `{self.ssh}` client on this workstation ({err.strerror}); install OpenSSH's client"
            raise MissingRequirement(msg) from err
        except subprocess.TimeoutExpired as err:
            msg = f"{self.device.where} did not answer within {timeout_s:g} s while {step}"
            raise MissingRequirement(msg) from err
        self._check(proc.returncode, proc.stderr.decode(errors="replace"), step)
        return proc.stdout

    def _check(self, code: int, stderr: str, step: str) -> None:
        if code == 0:
            return
        if code == 255:
            raise MissingRequirement(_classify(self.device, stderr, step))
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {code}"
        if code == 127 or "not found" in last and self.device.python in last:
            msg = f"{self.device.url} has no `{self.device.python}`: install Python 3.8+ there, or pass ?python=/path in --device"
            raise MissingRequirement(msg)
        if last.startswith("device: "):
            last = last[len("device: "):]
        msg = f"{self.device.url}: {last}"
        raise MissingRequirement(msg)

    def hello(self) -> dict[str, Any]:
        """Reach the device, log in, check its Python and numpy: before any work here."""
        answer = json.loads(self.call(["hello", self.root], b"", "connect"))
        if not answer.get("numpy"):
            msg = (f"{self.device.url} has no numpy for {self.device.python} (Python {'.'.join(map(str, answer['python']))}): "
                   "the agent needs numpy and the target's runtime there (pip install numpy)")
            raise MissingRequirement(msg)
        return answer

    def prepare(self, files: dict[str, Path]) -> list[str]:
        digests = _digests(files)
        hashes = sorted(set(digests.values()))
        sizes = {digests[rel]: path.stat().st_size for rel, path in files.items()}
        request = json.dumps({"hashes": hashes, "sizes": sizes}).encode()
        answer = json.loads(self.call(["prepare", self.root], request, "preparing the device"))
        self.run_dir = answer["run_dir"]
        return answer["missing"]

    def send(self, files: dict[str, Path], missing: list[str]) -> None:
        if not missing:
            return
        wanted = set(missing)
        by_hash = {h: files[rel] for rel, h in _digests(files).items() if h in wanted}
        buffer = tempfile.TemporaryFile()
        with tarfile.open(fileobj=buffer, mode="w|") as tar:
            for digest, path in sorted(by_hash.items()):
                info = tar.gettarinfo(str(path), arcname=digest)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        buffer.seek(0)
        with buffer:
            self.call(["receive", self.root], buffer, "sending the bundle", timeout_s=1800)

    def run(self, files: dict[str, Path], job: dict[str, Any], timeout_s: float) -> tuple[int, bytes, str]:
        if self.run_dir is None:
            msg = "Session.run before Session.prepare"
            raise RuntimeError(msg)
        payload = json.dumps({"files": _digests(files), "job": job}).encode()
        lines: list[str] = []
        with tempfile.TemporaryFile() as stdout:
            proc = subprocess.Popen(self.argv(self.boot_words("run", self.root, self.run_dir)), stdin=subprocess.PIPE,
                                    stdout=stdout, stderr=subprocess.PIPE)
            reader = threading.Thread(target=self._relay, args=(proc, lines), daemon=True)
            reader.start()
            try:
                proc.stdin.write(payload)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the connection is gone: the exit code says so below
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired as err:
                proc.kill()
                proc.wait()
                msg = f"{self.device.where} ran longer than {timeout_s:g} s (the rows' timeouts and the engine builds)"
                raise CheckFailed(msg) from err
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            reader.join(timeout=10)
            stdout.seek(0)
            data = stdout.read()
        stderr = "\n".join(lines)
        if code == 255 or (code != 0 and not data):
            self._check(code, stderr, "the device ran the rows")
        return code, data, stderr

    def _relay(self, proc: subprocess.Popen[bytes], lines: list[str]) -> None:
        """Keep the device's messages for errors and, unless quiet, show its progress lines."""
        if proc.stderr is None:
            return
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if self.echo and line.startswith(PROGRESS_PREFIX):
                print(f"{self.device.where}: {line[len(PROGRESS_PREFIX):]}", file=sys.stderr, flush=True)

    def clean(self) -> None:
        """Remove the run folder on the device, when the connection still allows."""
        if self.run_dir is None:
            return
        try:
            self.call(["clean", self.root, self.run_dir], b"", "cleaning up", timeout_s=30)
        except MissingRequirement:
            pass  # unreachable now; the next run removes it once stale
        self.run_dir = None


_DIGEST_CACHE: dict[tuple[str, int, int], str] = {}


def _digests(files: dict[str, Path]) -> dict[str, str]:
    out = {}
    for rel, path in files.items():
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _DIGEST_CACHE:
            _DIGEST_CACHE[key] = sha256_file(path)
        out[rel] = _DIGEST_CACHE[key]
    return out


def _module_file(module: str) -> Path | None:
    """The source file of one of our modules (package or plain module), or None if not ours."""
    if module.split(".")[0] not in CODE_PACKAGES:
        return None
    base = REPO_ROOT.joinpath(*module.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _own_imports(module: str, path: Path) -> set[str]:
    """Our modules that ``path`` imports anywhere in its body (read with ast, nothing run)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, or just a name
    return {m for m in found if _module_file(m) is not None}


def code_closure(roots: tuple[str, ...] = AGENT_ROOTS) -> dict[str, Path]:
    """Our modules the device runs: ``roots`` and everything they import, with their packages' __init__.

    Read from the source with ast, so what is shipped is what the agent can import, and nothing
    else (the workstation-only modules, which need torch or a newer Python, stay here).
    """
    files: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            name = ".".join(parts[:i])
            path = _module_file(name)
            if path is None:
                msg = f"the device bundle needs {name}, which is not a module of this repository"
                raise RuntimeError(msg)
            rel = path.relative_to(REPO_ROOT).as_posix()
            if rel in files:
                continue
            if any(rel.startswith(ex + "/") for ex in CODE_EXCLUDE):
                msg = f"{module} imports {name}, which must not run on the device ({rel}); import it lazily or not at all"
                raise RuntimeError(msg)
            files[rel] = path
            todo.extend(_own_imports(name, path))
    return dict(sorted(files.items()))


def code_files() -> dict[str, Path]:
    """The agent's code (code_closure), plus PyYAML's pure-Python modules (lowlight_edge.targets needs them)."""
    files = code_closure()
    yaml_dir = Path(yaml.__file__).parent
    for path in sorted(yaml_dir.glob("*.py")):
        files[f"_vendor/yaml/{path.name}"] = path
    return files


@dataclass
class RemoteJob:
    """Rows for the agent: worker specs whose paths are relative to the shipped tree."""

    target: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def ship(self, path: Path, prefix: str) -> str:
        rel = f"{prefix}/{path.name}"
        self.files[rel] = path
        return rel


def run_remote(device: SshDevice, job: RemoteJob, out: Path, timeout_s: float, session: Session | None = None,
               mode: str = "bench") -> dict[str, Any]:
    """Send the bundle, run the agent, return its result.json with engine paths made local under ``out``.

    Engines (and sidecars) built on the device are placed under out/engines/ only once every
    step succeeded; a failure raises with one line and leaves nothing locally.
    """
    session = Session(device) if session is None else session
    files = {**code_files(), **job.files}
    try:
        missing = session.prepare(files)
        session.send(files, missing)
        code, tar_bytes, stderr = session.run(
            files, {"target": job.target, "rows": job.rows, "remote": device.url, "mode": mode}, timeout_s)
    except BaseException:
        session.clean()
        raise
    session.run_dir = None  # the boot removed it
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        _extract(tar_bytes, Path(tmp), device)
        result_file = Path(tmp) / "out" / "result.json"
        if not result_file.is_file():
            lines = [line for line in stderr.splitlines() if line.strip()]
            msg = f"{device.url}: the agent ended (exit {code}) without results: {lines[-1].strip() if lines else 'no message'}"
            raise CheckFailed(msg)
        result = json.loads(result_file.read_text())
        if result.get("error"):
            msg = f"device {device.url}: {result['error']}"
            raise (MissingRequirement if result.get("exit_code", 2) == 2 else CheckFailed)(msg)
        engines = Path(tmp) / "out" / "engines"
        for row in result["rows"]:
            if row.get("engine"):
                row["engine"] = str(out / row["engine"])
        if engines.is_dir():
            _place(engines, out / "engines")
    return result


def _extract(data: bytes, dest: Path, device: SshDevice) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if name.is_absolute() or ".." in name.parts or name.parts[:1] != ("out",) or not (member.isfile() or member.isdir()):
                    msg = f"{device.url} sent back an unexpected entry {member.name!r}; nothing was kept"
                    raise CheckFailed(msg)
            if sys.version_info >= (3, 12):
                tar.extractall(dest, filter="data")
            else:
                tar.extractall(dest)  # noqa: S202 - every member checked above
    except tarfile.TarError as err:
        msg = f"{device.url} sent back damaged results ({err}); rerun"
        raise CheckFailed(msg) from err


def _place(engines: Path, final: Path) -> None:
    for path in sorted(p for p in engines.rglob("*") if p.is_file()):
        target = final / path.relative_to(engines)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target)


# --------------------------------------------------------------------------------------------
# What a TensorRT device builds from, and building it there (python -m export --device)

SOURCE_ROLES = {"fp32": "simplified", "fp16": "fp16_onnx", "int8": "qdq_onnx"}


class Fp16Onnx(Stage):
    """The FP16 ONNX a device builds its fp16 engine from, made and gated here as the engine stage
    makes it (the plan's float nodes kept FP32, the budget checked in ONNX Runtime); cached by key."""

    name = "fp16_onnx"

    def key(self, ctx: Context) -> dict:
        return {
            "stage": self.name,
            "inputs": {role: r.sha256 for role, r in sorted(ctx.records.items())},
            "precisions": list(ctx.target.precisions),
            "budget": [ctx.target.budget.psnr_mean_db, ctx.target.budget.psnr_min_db],
        }

    def run(self, ctx: Context) -> list[FileRecord]:
        if ctx.target.runtime != "tensorrt" or "fp16" not in ctx.target.precisions:
            return []
        record = BuildEngine()._fp16_onnx(ctx)
        return [record] if record is not None else []


def engine_builds(model: str, records: dict[str, FileRecord], folder: Path, precisions, shape, job: RemoteJob,
                  notes: list[str]) -> list[dict]:
    """One agent build per precision whose source ONNX is here (what is missing is said in ``notes``)."""
    builds = []
    plan = records.get("plan")
    for precision in precisions:
        role = SOURCE_ROLES[precision]
        if role not in records:
            why = (plan.notes[0] if plan is not None and plan.notes else "no quantize stage ran") if precision == "int8" \
                else f"no {role} here"
            notes.append(f"{precision} engine not built on the device: {why}")
            continue
        prefix = f"artifacts/{model}/{precision}"
        builds.append({
            "model": model,
            "precision": precision,
            "onnx": job.ship(folder / records[role].path, prefix),
            "input_shape": list(shape) if shape else None,
            "plan": job.ship(folder / plan.path, prefix) if plan is not None else None,
            "cache": _cached_engines(folder, records[role].sha256, precision, job, f"cache/{model}/{precision}"),
        })
    return builds


def _cached_engines(folder: Path, onnx_sha256: str, precision: str, job: RemoteJob, prefix: str) -> list[str]:
    """Engines built earlier from this very ONNX (and their sidecars), shipped so that the device's
    build reuses one whose sidecar matches its TensorRT and GPU instead of building again."""
    shipped = []
    for sidecar in sorted((folder / "tensorrt").glob("*.engine.json")):
        try:
            side = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        engine = sidecar.with_name(sidecar.name[: -len(".json")])
        fields = side.get("fields") if isinstance(side, dict) else None
        if engine.is_file() and isinstance(fields, dict) and fields.get("onnx_sha256") == onnx_sha256 \
                and side.get("precision") == precision:
            shipped += [job.ship(engine, prefix), job.ship(sidecar, prefix)]
    return shipped


def build_on_device(ctx: Context, device: SshDevice, session: Session | None = None,
                    timeout_s: float = 3600) -> list[FileRecord]:
    """Send the ONNX (+ QDQ, + plan) to ``device``, build the engines there with its TensorRT, and
    place each engine and its .engine.json sidecar under ``ctx.model_dir/tensorrt/``.

    Nothing is placed unless every build succeeded; the records (sha256 of what landed) are
    returned for the manifest, which the pipeline writes last.
    """
    session = Session(device) if session is None else session
    target = ctx.target
    job = RemoteJob(target=target_fields(target))
    shape, profile = BuildEngine()._shapes(ctx)
    if profile is not None:
        msg = "--dynamic with --device: the device builds static-shape engines only; export at the size you deploy"
        raise UsageError(msg)
    builds = engine_builds(ctx.spec.name, ctx.records, ctx.model_dir, target.precisions, shape, job, ctx.notes)
    if not builds:
        msg = f"nothing to build on {device.url}: {'; '.join(ctx.notes) or 'no ONNX for ' + ', '.join(target.precisions)}"
        raise UsageError(msg)
    job.rows = [{"spec": None, "build": b, "label": f"{ctx.spec.name}: building the {b['precision']} engine"} for b in builds]
    ctx.prepare_folder()
    landing = Path(tempfile.mkdtemp(prefix=".tmp-device-", dir=ctx.model_dir))  # removed below, or by the next run
    try:
        result = run_remote(device, job, landing, timeout_s, session, mode="build")
        final = ctx.model_dir / "tensorrt"
        final.mkdir(exist_ok=True)
        records = []
        placed = []
        for build, row in zip(builds, result["rows"], strict=False):
            engine = Path(row["engine"])
            sidecar = Path(f"{engine}.json")
            if not engine.is_file() or not sidecar.is_file():
                msg = f"{device.url} reported the {build['precision']} engine but sent back no engine and sidecar; rerun"
                raise CheckFailed(msg)
            placed.append((build, engine, sidecar))
        for build, engine, sidecar in placed:  # every build succeeded: now they land, sidecar last
            source = ctx.records[SOURCE_ROLES[build["precision"]]]
            side = json.loads(sidecar.read_text())
            # the device's run-folder paths mean nothing here: name the sources as this folder has them
            plan = ctx.records.get("plan")
            side.update(onnx=source.path, plan=plan.path if plan is not None else None, built_on=device.url)
            write_json(sidecar, side)
            (final / sidecar.name).unlink(missing_ok=True)  # never an old sidecar beside the new engine
            os.replace(engine, final / engine.name)
            os.replace(sidecar, final / sidecar.name)
            fid = dict(source.fidelity or {})
            fid["numerics"] = f"{source.path} in {checker_name(fid.get('runtime'))} on the workstation; the engine was built on {device.url} and not run by the export"
            notes = [f"built on {device.url} by {side.get('builder')} from {source.path}",
                     f"for {side.get('fields', {}).get('gpu_name')} (compute capability {side.get('compute_capabilities')})"]
            rel = f"tensorrt/{engine.name}"
            precision = build["precision"]
            records.append(FileRecord(rel, "engine", precision, f"engine_{precision}", fidelity=fid, notes=notes).fill_digest(ctx.model_dir))
            records.append(FileRecord(rel + ".json", "engine", precision, f"engine_{precision}_json").fill_digest(ctx.model_dir))
        ctx.stage_runs["engine"] = {"device": device.url, "host": result.get("host", {}).get("cpu")}
        return records
    finally:
        shutil.rmtree(landing, ignore_errors=True)


TARGET_FIELDS = ("name", "runtime", "device", "precisions", "resolutions", "threads", "timeout_s", "requires", "options")


def target_fields(target: Any) -> dict[str, Any]:
    """What the agent needs of a Target, JSON-able (bench.agent.target_from_job is the inverse)."""
    fields = {k: getattr(target, k) for k in TARGET_FIELDS}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
