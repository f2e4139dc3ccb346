"""The one-way flow the README draws, read from the imports of the code itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from repo_paths import REPO_ROOT

ROOT = REPO_ROOT / "rso_lib"

#: The README's order: a package may import only from packages to its left (or shared modules).
FLOW = ("data", "llm", "experts", "train", "baselines", "dialogue", "eval", "experiments", "plots")
SHARED = {"strategies", "paths", "threads", "results", "notebook"}
TOP = {"run", "report", "__init__"}  # entry points: may import anything


def _unit(path: Path) -> str:
    return path.relative_to(ROOT).with_suffix("").parts[0]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """rso_lib modules imported by ``path`` (with ``top_level_only``: at module level only, the
    imports that run when the module is imported)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("rso_lib"):
            out.add(n.module)
            out.update(f"{n.module}.{a.name}" for a in n.names)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names if a.name.startswith("rso_lib"))
    modules = {_module(p) for p in ROOT.rglob("*.py")}
    return {m for m in out if m in modules}


FILES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_flow_leftwards(path):
    unit = _unit(path)
    if unit in TOP or unit in SHARED:
        allowed = set(FLOW) | SHARED | TOP if unit in TOP else SHARED
    else:
        assert unit in FLOW, f"{path}: package {unit!r} is not placed in the README's flow"
        allowed = set(FLOW[: FLOW.index(unit) + 1]) | SHARED
    bad = sorted(m for m in _imports(path) if m.split(".")[1] not in allowed)
    assert not bad, f"{path.relative_to(ROOT)} ({unit}) imports {bad}, to the right of it in {FLOW}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_at_module_level():
    graph = {_module(p): _imports(p, top_level_only=True) - {_module(p)} for p in FILES}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_baselines_have_no_import_cycle_even_through_lazy_imports():
    files = sorted((ROOT / "baselines").glob("*.py"))
    graph = {_module(p): {m for m in _imports(p) if m.startswith("rso_lib.baselines.")} - {_module(p)} for p in files}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
