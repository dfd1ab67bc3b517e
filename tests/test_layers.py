"""The house's floors: every import points down, nothing runs in a circle (issue 14).

Floors from the ground up: shared plumbing -> the zoo -> runtimes -> the pipeline core -> the
stages -> the pipeline -> CLIs -> bench. Read from the source with ``ast``, so an import inside a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lowlight_edge", "runtimes", "export", "quantize", "bench")

# (module prefix, floor); the longest matching prefix decides.
FLOORS = {
    "lowlight_edge": 0,
    "lowlight_edge.zoo": 1,
    "runtimes": 2,
    "runtimes.cli": 6,
    "runtimes.__main__": 6,
    "export.core": 3,
    "export.config": 3,
    "export.manifest": 3,
    "export.verify": 3,
    "export": 4,
    "quantize": 4,
    "export.pipeline": 5,
    "export.cli": 6,
    "export.collect": 6,
    "export.__main__": 6,
    "quantize.cli": 6,
    "quantize.__main__": 6,
    "bench": 7,
}
# Only the runtimes floor talks to an inference runtime (NNCF and torch are the stages' tools).
RUNTIME_PACKAGES = {"openvino", "onnxruntime", "tensorrt", "tensorrt_rtx"}


def floor_of(module: str) -> int:
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[best]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for file in sorted((REPO / package).rglob("*.py")):
            parts = file.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = file
    return found


def imports(name: str, file: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in ``file``."""
    tree = ast.parse(file.read_text(), str(file))
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    out = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                out.append((base, child.lineno, nested))
                out.extend((f"{base}.{a.name}", child.lineno, nested) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return out


def own_edges() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, file in mods.items():
        for target, _, _ in imports(name, file):
            if target in mods and target != name:
                edges[name].add(target)
    return edges


def test_no_import_cycle():
    edges = own_edges()
    state: dict[str, int] = {}
    cycles = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                walk(nxt, path + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_import_points_down():
    up = [
        f"{src} (floor {floor_of(src)}) imports {dst} (floor {floor_of(dst)})"
        for src, targets in own_edges().items()
        for dst in targets
        if floor_of(dst) > floor_of(src)
    ]
    assert not up, "imports running up the floors:\n" + "\n".join(sorted(up))


def test_own_modules_are_imported_at_the_top():
    """Function-level imports are for optional heavy packages only, never to dodge a cycle."""
    mods = modules()
    nested = [
        f"{file.relative_to(REPO)}:{line} imports {target} inside a function"
        for name, file in mods.items()
        for target, line, inside in imports(name, file)
        if inside and target.split(".")[0] in PACKAGES
    ]
    assert not nested, "\n".join(sorted(set(nested)))


def test_only_runtimes_import_inference_runtimes():
    offenders = sorted(
        {
            f"{file.relative_to(REPO)}:{line} imports {target}"
            for name, file in modules().items()
            if not name.startswith("runtimes")
            for target, line, _ in imports(name, file)
            if target.split(".")[0] in RUNTIME_PACKAGES
        }
    )
    assert not offenders, "\n".join(offenders)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_installed_top_level_names_are_ours():
    """The wheel installs lowlight_edge and the four entry-point packages the user named, nothing generic."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"]["packages"]
    top = {p.split(".")[0] for p in packages} if isinstance(packages, list) else {
        p.rstrip("*").split(".")[0] for p in packages["find"]["include"]
    }
    assert top == set(PACKAGES)
    assert not (REPO / "common").exists() and not (REPO / "models").exists()
