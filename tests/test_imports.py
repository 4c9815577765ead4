"""No two modules of src/sozo import each other, directly or through a cycle.

The import graph is read from the source with ``ast``: every ``import`` and ``from … import``
anywhere in a module (at the top, or inside a function, where a lazy import still ties two
modules together), with relative imports resolved and ``from . import x`` counted as an import of
the submodule ``x``. Imports under ``if TYPE_CHECKING:`` never run and are left out; so are
``importlib.import_module`` calls (the registry's lazy family list), which name no module to ``ast``.
An edge goes to the module named, not to its parent packages.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"



def module_files(root: Path, package: str) -> dict[str, Path]:
    """{dotted module name: file} for every .py file of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree`` (any depth), less those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """{module: modules of ``package`` it imports}, read from the source under ``root``."""
    files = module_files(root, package)
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]  # the package relative imports start from
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base_parts = here[:len(here) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from X import y`: the submodule X.y when there is one, X itself otherwise
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:  # `import a.b.c` of a name inside a module: that module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules (~100)
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One closed walk a -> b -> … -> a inside ``component`` (for the failure message)."""
    comp = set(component)
    start = component[0]
    # breadth-first from start's successors back to start, inside the component
    prev: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [start]
                    while v != start:
                        path.append(v)
                        v = prev[v]
                    return [start] + path[:0:-1] + [start] if len(path) > 1 else [start, start]
                if w not in seen:
                    seen.add(w)
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def _describe(graph: dict[str, set[str]], comps: list[list[str]]) -> str:
    lines = []
    for comp in comps:
        lines.append(f"{len(comp)} modules import each other: {', '.join(comp)}")
        lines.append("  e.g. " + " -> ".join(cycle_path(graph, comp)))
    return "\n".join(lines)


def test_sozo_has_no_import_cycles():
    graph = import_graph(SRC, "sozo")
    assert len(graph) > 50 and "sozo.training.trainer" in graph  # the walk found the package
    comps = cycles(graph)
    assert not comps, "import cycles in src/sozo:\n" + _describe(graph, comps)


def test_the_layers_point_one_way():
    """The trainer imports no family; no family imports the CLI; no family or measure imports the API."""
    graph = import_graph(SRC, "sozo")
    for mod, deps in graph.items():
        if mod.startswith("sozo.training"):
            assert not {d for d in deps if d.startswith("sozo.models.") and d != "sozo.models.base"}, mod
        if mod.startswith(("sozo.models", "sozo.metrics")):
            assert "sozo.cli" not in deps, mod
            assert "sozo.api" not in deps, mod


def test_the_graph_sees_lazy_relative_and_submodule_imports(tmp_path):
    """The checker itself: a cycle made of a function-level import, a `from . import x` and a
    relative `from ..y import z` is found and printed."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")  # the submodule pkg.b, not the package
    (pkg / "b.py").write_text("def f():\n    from .sub.c import g\n    return g\n")  # lazy, relative
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import thing\nimport pkg.sub\n")  # up a level
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a", "pkg.sub"}
    assert graph["pkg.d"] == set()  # type-checking imports never run
    comps = cycles(graph)
    assert comps == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert "pkg.a -> pkg.b -> pkg.sub.c -> pkg.a" in _describe(graph, comps)
    (pkg / "sub" / "c.py").write_text("import pkg.sub\n")
    assert cycles(import_graph(tmp_path, "pkg")) == []
