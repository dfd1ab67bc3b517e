"""The device side's first step: a stdlib-only script sent as ``python3 -c SOURCE CMD ARGS``.

bench/remote.py runs this file's source on the device through the user's own ``ssh``; it needs
nothing but the device's Python (the agent needs 3.8+) and imports nothing of ours. Everything it writes lives
under ROOT (``~/.cache/lowlight-edge/bundle`` on the device):

    ROOT/blobs/<sha256>        content-addressed files (code and artifacts): a rerun sends only
                               what the device lacks
    ROOT/runs/<tmp>/           one run: its tree of links to the blobs, its outputs; removed at
                               the end of the run, on a dropped connection, or by the next run
                               once it is a day old

Commands (stdout is JSON, or the result tar for ``run``; messages go to stderr):

    hello ROOT            answers {"python", "numpy", "root", "free_bytes"}; exit 3 if Python < 3.8
    prepare ROOT          stdin: JSON {"hashes": [...], "sizes": {hash: bytes}}; makes a run dir,
                          answers {"run_dir", "missing", "free_bytes"}; exit 4 if they do not fit
    receive ROOT          stdin: a tar stream of files named by their sha256; each is checked
    run ROOT RUN_DIR      stdin: JSON {"files": {relpath: hash}, "job": {...}}; links the tree,
                          runs ``python -m bench.agent job.json out/`` in it, writes a tar of out/
                          to stdout, removes RUN_DIR
    clean ROOT RUN_DIR    removes RUN_DIR

Exit codes: 0 ok, 3 this Python is too old or lacks numpy, 4 out of disk, 5 a bad request;
``run`` passes on the agent's own (1 a check, 2 a missing requirement).
"""

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

# The boot itself runs on 3.6+; the shipped sources are kept Python 3.8 (JetPack 5's; JetPack 6 has
# 3.10): tests/test_agent_py38.py reads every shipped file as 3.8 and runs the bundle under a real 3.8.
MIN_PYTHON = (3, 8)
STALE_RUN_S = 24 * 3600
DISK_MARGIN = 64 * 2**20


def _fail(code, message):
    sys.stderr.write("device: " + message + "\n")
    sys.stderr.flush()
    sys.exit(code)


def _root(path):
    root = os.path.abspath(os.path.expanduser(path))
    for sub in ("blobs", "runs"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    return root


def _run_dir(root, path):
    runs = os.path.join(root, "runs")
    path = os.path.abspath(path)
    if os.path.dirname(path) != runs:
        _fail(5, f"refusing to touch {path}: not a run folder under {runs}")
    return path


def _disk_full(err):
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def hello(root):
    """What the device's Python is and whether numpy imports (before any work on the workstation)."""
    if sys.version_info[:2] < MIN_PYTHON:
        have, need = ".".join(map(str, sys.version_info[:2])), ".".join(map(str, MIN_PYTHON))
        _fail(3, f"Python {have} is too old: the agent needs {need} or newer")
    try:
        import numpy  # noqa: F401 - only whether it imports

        has_numpy = True
    except ImportError:
        has_numpy = False
    json.dump({"python": list(sys.version_info[:3]), "numpy": has_numpy, "root": root,
               "free_bytes": shutil.disk_usage(root).free}, sys.stdout)


def prepare(root):
    request = json.load(sys.stdin)
    blobs = os.path.join(root, "blobs")
    missing = [h for h in request["hashes"] if not os.path.isfile(os.path.join(blobs, h))]
    need = sum(int(request.get("sizes", {}).get(h, 0)) for h in missing)
    free = shutil.disk_usage(root).free
    if need + DISK_MARGIN > free:
        more, left = (need + DISK_MARGIN) // 2**20, free // 2**20
        _fail(4, f"out of disk: the bundle needs {more} MB more under {root} and {left} MB are free")
    runs = os.path.join(root, "runs")
    now = time.time()
    for name in os.listdir(runs):  # runs left behind by a connection that never came back
        old = os.path.join(runs, name)
        try:
            if now - os.stat(old).st_mtime > STALE_RUN_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    run_dir = tempfile.mkdtemp(prefix="run-", dir=runs)
    json.dump({"run_dir": run_dir, "missing": missing, "free_bytes": free}, sys.stdout)


def receive(root):
    blobs = os.path.join(root, "blobs")
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            for member in tar:
                name = member.name
                if not member.isfile() or len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
                    _fail(5, f"unexpected entry {name!r} in the bundle stream")
                source = tar.extractfile(member)
                digest = hashlib.sha256()
                fd, tmp = tempfile.mkstemp(prefix=".part-", dir=blobs)
                try:
                    with os.fdopen(fd, "wb") as out:
                        for chunk in iter(lambda s=source: s.read(1 << 20), b""):
                            digest.update(chunk)
                            out.write(chunk)
                    if digest.hexdigest() != name:
                        _fail(5, f"file {name} arrived damaged (sha256 {digest.hexdigest()})")
                    os.replace(tmp, os.path.join(blobs, name))
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
    except OSError as err:
        if _disk_full(err):
            _fail(4, f"out of disk while receiving the bundle under {root}")
        raise


def _link_tree(root, tree, files):
    blobs = os.path.join(root, "blobs")
    for rel, digest in files.items():
        if rel.startswith("/") or ".." in rel.split("/"):
            _fail(5, f"bad path {rel!r} in the bundle")
        dest = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        source = os.path.join(blobs, digest)
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)


def _watch_parent(proc, run_dir):
    """The connection dropped (sshd went, we were re-parented): stop the agent, remove the run."""
    parent = os.getppid()
    while proc.poll() is None:
        if os.getppid() != parent:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            shutil.rmtree(run_dir, ignore_errors=True)
            os._exit(6)
        time.sleep(0.2)


def run(root, run_dir):
    request = json.load(sys.stdin)
    tree = os.path.join(run_dir, "tree")
    out = os.path.join(run_dir, "out")
    try:
        try:
            _link_tree(root, tree, request["files"])
            os.makedirs(out)
            with open(os.path.join(run_dir, "job.json"), "w") as handle:
                json.dump(request["job"], handle)
        except OSError as err:
            if _disk_full(err):
                _fail(4, f"out of disk while laying out the run under {run_dir}")
            raise
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (tree, os.path.join(tree, "_vendor"), env.get("PYTHONPATH", "")) if p)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written next to the linked sources
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.agent", os.path.join(run_dir, "job.json"), out],
            cwd=run_dir, env=env, stdout=sys.stderr.fileno(), start_new_session=True,
        )
        threading.Thread(target=_watch_parent, args=(proc, run_dir), daemon=True).start()
        code = proc.wait()
        with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
            tar.add(out, arcname="out")
        sys.stdout.flush()
        return code
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main(argv):
    if len(argv) < 2:
        _fail(5, "usage: prepare|receive|run|clean ROOT [RUN_DIR]")
    command, root = argv[0], _root(argv[1])
    if command == "hello":
        hello(root)
    elif command == "prepare":
        prepare(root)
    elif command == "receive":
        receive(root)
    elif command == "run" and len(argv) == 3:
        sys.exit(run(root, _run_dir(root, argv[2])))
    elif command == "clean" and len(argv) == 3:
        shutil.rmtree(_run_dir(root, argv[2]), ignore_errors=True)
    else:
        _fail(5, f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
