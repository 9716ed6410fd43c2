"""The package's shape: modules stand one above the other (no import circles), none grows past
500 lines, the Protocol knows no backend, and the simulator is loaded only where settings
choose it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 500


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that `name` imports anywhere in its text (functions and
    TYPE_CHECKING blocks included: a circle drawn only for the type checker is still one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in modules else base)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = _modules(root)
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_circles_finds_a_circle_of_three_and_ignores_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_graph_reads_relative_and_nested_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "one.py").write_text("from . import two\n")
    (pkg / "sub" / "two.py").write_text("def f():\n    from pkg.sub.one import x\n")
    graph = import_graph(tmp_path)
    assert graph["pkg.sub.one"] == {"pkg.sub.two"}
    assert graph["pkg.sub.two"] == {"pkg.sub.one"}
    assert circles(graph) == [["pkg.sub.one", "pkg.sub.two"]]


def test_no_import_circle_in_src() -> None:
    assert circles(import_graph(SRC)) == []


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_over_500_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_state_protocol_imports_no_backend() -> None:
    graph = import_graph(SRC)
    backends = ("outlay.state.sqlite", "outlay.state.redis", "outlay.state.postgres")
    assert not {m for m in graph["outlay.state.base"] if m.startswith(backends)}
    # backends do not lean on each other: what two share lives in outlay.state itself
    for name, imports in graph.items():
        own = next((b for b in backends if name.startswith(b)), None)
        if own is None:
            continue
        others = {m for m in imports if m.startswith(backends) and not m.startswith(own)}
        if own == "outlay.state.redis":  # Redis keeps its durable half in PostgreSQL
            others = {m for m in others if not m.startswith("outlay.state.postgres")}
        assert not others, f"{name} imports {sorted(others)}"


def test_the_simulator_is_imported_only_where_settings_choose_it() -> None:
    graph = import_graph(SRC)
    users = {name for name, imports in graph.items()
             if not name.startswith("outlay.simulator")
             and any(m.startswith("outlay.simulator") for m in imports)}
    assert users == {"outlay.gateway.wiring"}
