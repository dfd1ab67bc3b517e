"""The device bundle runs on Python 3.8 (JetPack 5's): read every shipped file as 3.8 would, and run it.

``py38_problems`` reads a file with ``ast.parse(feature_version=(3, 8))`` and looks for what 3.8
cannot run although it parses: builtin / collections.abc generics and ``X | Y`` evaluated at run
time (outside annotations, which ``from __future__ import annotations`` leaves as strings), the
3.9+ keyword arguments and functions this code base has used (``zip(strict=)``,
``str.removesuffix``, ``math.lcm``, ...), ``functools.cache``, dict ``|``, parenthesised context
managers. It is checked against the code as it was before the 3.8 port (known snippets), so it can
fail. When a Python 3.8 interpreter is here (``python3.8``, pyenv's, or LOWLIGHT_EDGE_PYTHON38), the
agent is also run under it for real, through the real sshd of tests/test_remote.py.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.remote import code_files
from tests.test_remote import server, ssh_env  # noqa: F401 - the real sshd fixtures

# names whose subscription builds a generic alias: a TypeError on 3.8 when evaluated
GENERIC_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "type"}
ABC_GENERICS = {
    "Callable", "Iterable", "Iterator", "Sequence", "Mapping", "MutableMapping", "MutableSequence", "Generator",
    "Collection", "Container", "AbstractSet", "MutableSet", "KeysView", "ValuesView", "ItemsView", "Awaitable",
    "Coroutine", "AsyncIterator", "AsyncIterable", "Reversible",
}
# attribute / function -> the Python that added it
NEW_ATTRIBUTES = {
    "removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9", "with_stem": "3.9", "readlink": "3.9",
    "lcm": "3.9", "nextafter": "3.9", "ulp": "3.9", "randbytes": "3.9", "waitstatus_to_exitcode": "3.9",
    "unparse": "3.9", "to_thread": "3.9", "bit_count": "3.10", "pairwise": "3.10", "stdlib_module_names": "3.10",
    "packages_distributions": "3.10", "hardlink_to": "3.10", "orig_argv": "3.10", "freedesktop_os_release": "3.10",
    "file_digest": "3.11", "chdir": "3.11", "add_note": "3.11", "batched": "3.12", "walk": "3.12",
    "process_cpu_count": "3.13", "correlation": "3.10", "NoneType": "3.10", "EllipsisType": "3.10",
    "StrEnum": "3.11", "UTC": "3.11",
}
ATTRIBUTE_OWNERS = {"walk": {"Path", "path"}, "chdir": {"contextlib"}, "UTC": {"datetime"}}  # os.walk, os.chdir are old
NEW_TYPING = {"TypeAlias", "ParamSpec", "Concatenate", "TypeGuard", "Self", "Annotated", "Never", "LiteralString",
              "Required", "NotRequired", "Unpack", "TypeVarTuple", "override"}
NEW_KEYWORDS = {  # call name -> keyword arguments added after 3.8
    "zip": {"strict"}, "dataclass": {"slots", "kw_only", "match_args"}, "field": {"kw_only"},
    "TemporaryDirectory": {"ignore_cleanup_errors", "delete"}, "Popen": {"process_group", "pipesize"},
    "run": {"process_group"}, "rmtree": {"onexc"}, "basicConfig": {"encoding", "errors"},
    "bisect": {"key"}, "bisect_left": {"key"}, "bisect_right": {"key"}, "insort": {"key"},
    "glob": {"root_dir", "dir_fd", "include_hidden"},
}
BUILTIN_NAMES = {"int", "float", "str", "bytes", "bool", "complex", "object", *GENERIC_BUILTINS}


def _call_name(func: ast.AST) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_type_like(node: ast.AST) -> bool:
    """An operand of ``|`` that makes it a type union (or a dict merge) rather than an int/set/flag or."""
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name) and node.id in BUILTIN_NAMES | {"Path", "Any"}:
        return True
    if isinstance(node, (ast.Dict, ast.DictComp)):
        return True
    if isinstance(node, ast.Subscript):
        return _is_generic(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type_like(node.left) or _is_type_like(node.right)
    return False


def _is_generic(node: ast.Subscript) -> bool:
    value = node.value
    name = value.id if isinstance(value, ast.Name) else value.attr if isinstance(value, ast.Attribute) else ""
    return name in GENERIC_BUILTINS | ABC_GENERICS


def py38_problems(source: str, filename: str = "<source>") -> list[str]:
    """What Python 3.8 cannot parse or run in ``source``, one phrase each with its line."""
    try:
        tree = ast.parse(source, filename, feature_version=(3, 8))
    except SyntaxError as err:
        return [f"{filename}:{err.lineno}: not Python 3.8 syntax ({err.msg})"]
    lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
               for n in tree.body)
    skip: set[int] = set()  # ids of nodes Python does not evaluate at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
        if not lazy:
            continue
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations += [a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
                            if a is not None and a.annotation is not None]
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        skip.update(id(n) for a in annotations if a is not None for n in ast.walk(a))
    lines = source.splitlines()
    problems = []

    def say(node: ast.AST, what: str) -> None:
        problems.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Subscript) and _is_generic(node):
            say(node, f"{ast.get_source_segment(source, node.value)}[...] evaluated at run time (3.9+)")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and (_is_type_like(node.left) or _is_type_like(node.right)):
            say(node, "X | Y of types (or dicts) evaluated at run time (3.10+ / 3.9+)")
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.BitOr) and _is_type_like(node.value):
            say(node, "dict |= evaluated at run time (3.9+)")
        elif isinstance(node, ast.Call):
            name = _call_name(node.func)
            for kw in node.keywords:
                if kw.arg in NEW_KEYWORDS.get(name, ()):
                    say(node, f"{name}({kw.arg}=) (3.9+)")
        elif isinstance(node, ast.Attribute) and node.attr in NEW_ATTRIBUTES:
            owner = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
            owners = ATTRIBUTE_OWNERS.get(node.attr)
            if owners is None or owner in owners or (node.attr == "walk" and owner not in {"os", "ast"} and "Path" in owner):
                if not (node.attr == "walk" and owner in {"os", "ast", "pkgutil"}):
                    say(node, f".{node.attr} ({NEW_ATTRIBUTES[node.attr]}+)")
        elif isinstance(node, ast.ImportFrom):
            names = {a.name for a in node.names}
            if node.module == "functools" and "cache" in names:
                say(node, "functools.cache (3.9+; use lru_cache(maxsize=None))")
            if node.module == "typing" and names & NEW_TYPING:
                say(node, f"typing.{', '.join(sorted(names & NEW_TYPING))} (3.9+)")
            if node.module in ("zoneinfo", "graphlib", "tomllib"):
                say(node, f"{node.module} (3.9+)")
            for alias in node.names:
                if alias.name in NEW_ATTRIBUTES and node.module in ("math", "itertools", "sys", "os", "ast", "random",
                                                                     "asyncio", "hashlib", "contextlib", "types",
                                                                     "enum", "statistics", "importlib.metadata"):
                    say(node, f"{node.module}.{alias.name} ({NEW_ATTRIBUTES[alias.name]}+)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("zoneinfo", "graphlib", "tomllib"):
                    say(node, f"{alias.name} (3.9+)")
        elif isinstance(node, (ast.With, ast.AsyncWith)) and len(node.items) > 1:
            head = lines[node.lineno - 1][node.col_offset:]
            if head.replace("async ", "", 1).startswith("with (") or head.rstrip().endswith("("):
                say(node, "parenthesised context managers (3.10+)")
        elif isinstance(node, ast.Name) and node.id in ("aiter", "anext") and isinstance(getattr(node, "ctx", None), ast.Load):
            say(node, f"{node.id}() (3.10+)")
    return problems


# --- the checker is honest: it fails on what the bundle held before the port ------------------

OLD_CODE = {
    "runtimes/base.py": "from __future__ import annotations\nShape = tuple[int, int, int, int]\n",
    "lowlight_edge/metrics.py": "from __future__ import annotations\ndef f(outs, refs):\n    for out, ref in zip(outs, refs, strict=True):\n        pass\n",
    "runtimes/backend_openvino.py": "from __future__ import annotations\nname = op.get_friendly_name().removesuffix('/WithoutBiases')\n",
    "union": "from __future__ import annotations\nif isinstance(x, int | None):\n    pass\n",
    "alias": "from __future__ import annotations\nfrom collections.abc import Callable\nHook = Callable[[int], None] | None\n",
    "cache": "from functools import cache\n",
    "match": "match x:\n    case 1:\n        pass\n",
    "with": "with (open('a') as a,\n      open('b') as b):\n    pass\n",
    "merge": "a = {'x': 1} | b\n",
    "lcm": "import math\nm = math.lcm(2, 3)\n",
    "no future": "def f(x: list[int]) -> int | None:\n    pass\n",
}


@pytest.mark.parametrize("name", sorted(OLD_CODE))
def test_the_checker_finds_what_3_8_cannot_run(name: str) -> None:
    assert py38_problems(OLD_CODE[name], name), name


def test_the_checker_leaves_3_8_code_alone() -> None:
    ok = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING, Dict, Optional\n"
        "if TYPE_CHECKING:\n    Alias = dict[str, int] | None\n"
        "def f(x: list[int] | None = None, *, y: dict[str, int] | None = None) -> tuple[int, ...] | None:\n"
        "    z: set[int] = set()\n    flags = 1 | 2\n    with open('a') as a, open('b') as b:\n        pass\n"
        "    return tuple(zip(x or [], x or []))\n"
        "T = Dict[str, Optional[int]]\n"
    )
    assert py38_problems(ok) == []


def test_every_shipped_file_is_python_3_8() -> None:
    """Every file the device receives (our code and the vendored PyYAML) parses and runs as 3.8."""
    files = code_files()
    assert "bench/agent.py" in files and "runtimes/backend_tensorrt.py" in files and "runtimes/cuda.py" in files
    problems = [p for rel, path in sorted(files.items()) for p in py38_problems(path.read_text(), rel)]
    assert not problems, "\n".join(problems)


def test_boot_and_agent_ask_for_3_8() -> None:
    from bench import remote_boot

    assert remote_boot.MIN_PYTHON == (3, 8)
    assert py38_problems(Path(remote_boot.__file__).read_text(), "bench/remote_boot.py") == []


# --- a real Python 3.8 --------------------------------------------------------------------------

PY38_ENV = "LOWLIGHT_EDGE_PYTHON38"


def python38() -> str | None:
    """A Python 3.8 interpreter here: $LOWLIGHT_EDGE_PYTHON38, python3.8 on PATH, or pyenv's."""
    candidates = [os.environ.get(PY38_ENV), shutil.which("python3.8"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))]
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                              capture_output=True, text=True)
        if done.stdout.strip() == "True":
            return candidate
    return None


@pytest.fixture(scope="module")
def py38_with_numpy(tmp_path_factory) -> str:
    """A 3.8 interpreter with numpy, onnx and ONNX Runtime (what a CPU device needs): the given one, else a venv of it made once under
    ~/.cache/lowlight-edge (pip from the package index); skipped when neither can be had."""
    base = python38()
    if base is None:
        pytest.skip(f"no Python 3.8 here (python3.8, ~/.pyenv/versions/3.8*, or {PY38_ENV}); the AST check above still ran")
    probe = [base, "-c", "import numpy, onnx, onnxruntime"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return base
    venv = Path(os.path.expanduser("~/.cache/lowlight-edge/py38-venv"))
    python = venv / "bin" / "python"
    if not python.is_file() or subprocess.run([str(python), "-c", "import numpy, onnx, onnxruntime"], capture_output=True).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        made = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make a Python 3.8 venv: {made.stderr.strip().splitlines()[-1:]}")
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy<1.25", "onnxruntime<1.20", "onnx<1.18"],
                             capture_output=True, text=True, timeout=600)
        if pip.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"cannot install numpy, onnx and onnxruntime for Python 3.8: {pip.stderr.strip().splitlines()[-1:]}")
    return str(python)


def test_the_bundle_imports_under_python_3_8(py38_with_numpy: str, tmp_path: Path) -> None:
    """A bare copy of the bundle: the agent, worker and every backend module import under 3.8."""
    tree = tmp_path / "tree"
    for rel, path in code_files().items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tree / rel)
    probe = (
        "import sys, json\n"
        f"sys.path[:0] = [{str(tree)!r}, {str(tree / '_vendor')!r}]\n"
        "import bench.agent, bench.worker, runtimes.backend_onnxruntime, runtimes.backend_openvino\n"
        "import runtimes.backend_tensorrt, runtimes.cuda\n"
        "from runtimes import get_backend\n"
        "print(json.dumps({'version': list(sys.version_info[:2]), 'trt': get_backend('tensorrt').is_available('tensorrt')}))\n"
    )
    done = subprocess.run([py38_with_numpy, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["version"] == [3, 8]
    assert found["trt"][0] is False and "tensorrt" in found["trt"][1]  # no TensorRT here: one line, no crash
    status = subprocess.run([py38_with_numpy, "-I", "-c", f"import sys; sys.path[:0] = [{str(tree)!r}]\n"
                             "from runtimes.cuda import cuda_status; print(cuda_status())"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert status.returncode == 0 and ("cudaGetDeviceCount" in status.stdout or "libcudart" in status.stdout
                                       or "True" in status.stdout), status.stdout + status.stderr


TINY_ORT = """
version: 1
targets:
  tiny-ort:
    description: a tiny ONNX Runtime target for the Python 3.8 device test
    runtime: onnxruntime
    device: cpu
    precisions: [fp32]
    threads: 1
    budget: {psnr_mean_db: 40.0, psnr_min_db: 38.0}
    warmup: 1
    iterations: 3
    timeout_s: 300
    resolutions:
      default: 48x72
    requires: [onnxruntime]
"""


def test_a_python_3_8_device_benches_through_the_real_sshd(py38_with_numpy: str, server, ssh_env, tmp_path: Path, capsys) -> None:  # noqa: F811 (fixtures)
    """`python -m bench --device ssh://...?python=<3.8>`: hello, the agent and the worker all run on 3.8."""
    from bench.cli import main as bench_main
    from lowlight_edge.console import run_main

    targets = tmp_path / "targets.yaml"
    targets.write_text(TINY_ORT)
    out = tmp_path / "r"
    code = run_main(bench_main, ["--targets", str(targets), "--target", "tiny-ort", "--models", "tinydce", "--out", str(out),
                                 "--artifacts", str(tmp_path / "artifacts"), "--quiet",
                                 "--device", f"ssh://127.0.0.1:{server.port}?python={py38_with_numpy}"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())
    assert [(r["runtime"], r["precision"]) for r in rows] == [("onnxruntime", "fp32")]
    row = rows[0]
    assert row["host"]["versions"]["python"].startswith("3.8."), row["host"]
    assert row["psnr_db"]["mean"] > 60 and row["nonfinite"] == 0 and row["latency_ms"]["p50"] > 0
