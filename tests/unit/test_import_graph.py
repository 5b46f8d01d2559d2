"""No import cycle anywhere in provisioner/, counting the imports hidden inside functions too.

A cycle hidden by a function-level import (load -> validate -> load, as it once was) works until someone
moves the import to the top; then the package fails to import. The graph is read from the source, so a
new cycle fails here with the modules that form it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "provisioner"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("").parts
        if rel[1] in ("templates", "playbooks"):
            continue
        mods[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every module of the package that ``name`` imports, at the top or inside a function."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            for alias in node.names:
                out.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in mods else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    # A package's __init__ runs before any of its modules; importing it is not an edge of a cycle.
    return {m for m in out if m in mods and m != name and mods[m].name != "__init__.py"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycle_in_the_package():
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert "provisioner.load" in graph and "provisioner.validate" in graph["provisioner.load"]
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    # The checker itself can fail: a two-module and a three-module cycle, and a plain chain that is not one.
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert _cycles(graph) == [["a", "b"], ["c", "d", "e"]]


CORE = ["model", "util", "errors", "load", "validate", "ipam", "plan", "render", "write", "check", "limits",
        "capacity", "pipeline"]


@pytest.mark.parametrize("module", CORE)
def test_each_core_module_imports_alone(module: str):
    # First in a fresh interpreter: a cycle through top-level imports fails with ImportError here.
    proc = subprocess.run([sys.executable, "-c", f"import provisioner.{module}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
