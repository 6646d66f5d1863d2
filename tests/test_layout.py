"""The shape of the code base: no import cycles between the project's modules, no huge modules.

The import graph is read from the source with ``ast``, never by importing anything, so the test is
fast and sees imports that only run inside functions (or only for type checking) as well.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "tools", "strategies", "sandbox")
SIZED = (*PACKAGES, "tests", "bench")
MAX_LINES = 800


def _python_files(top: str) -> Iterator[Path]:
    for path in sorted((ROOT / top).rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


def _module_name(path: Path) -> str:
    """``agents/episodes/dialogue.py`` -> ``agents.episodes.dialogue``; a package's
    ``__init__.py`` is the package itself."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name a ``from <dots><target> import ...`` in ``module`` refers to."""
    # One dot is the module's own package: the module itself for an __init__, else its parent.
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """Project modules that ``module`` imports explicitly, anywhere in its source.

    ``import a.b.c`` counts as an import of ``a.b.c`` only: the parent packages Python runs on
    the way are implicit, and counting them would make every module importing a sibling through
    its full name depend on its own package's ``__init__``. ``from a.b import c`` is an import of
    the submodule ``a.b.c`` when there is one, else of ``a.b``. Imports of modules outside the
    project (or of a namespace package, which has no code) add no edge.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                source = _resolve_relative(module, is_package, node.level, node.module)
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    found.add(submodule)
                elif source in modules:  # a name defined in the module (or package) itself
                    found.add(source)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every module of the project packages mapped to the project modules it imports."""
    files = {_module_name(p): p for top in PACKAGES for p in _python_files(top)}
    modules = set(files)
    return {name: _imports(path, name, modules) for name, path in files.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the first module of a strongly connected component."""
    members = set(component)
    start = component[0]
    # Breadth-first from start, inside the component, until an edge leads back to start.
    previous: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in seen:
                    seen.add(child)
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component  # unreachable for a real component


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert a_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_relative_imports_resolve_against_the_package() -> None:
    assert _resolve_relative("tools.service.retail", False, 1, "common") == "tools.service.common"
    assert _resolve_relative("tools.service", True, 1, "common") == "tools.service.common"
    assert _resolve_relative("tools.service.retail", False, 2, "base") == "tools.base"
    assert _resolve_relative("tools.service.retail", False, 1, None) == "tools.service"


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "tools.base" in graph and "agents.episodes.agent_loop" in graph
    cycles = []
    for component in strongly_connected(graph):
        cycle = a_cycle(graph, component)
        line = " -> ".join(cycle)
        if len(component) > len(cycle) - 1:  # the component holds more cycles than this one
            line += f"   (modules tangled together: {', '.join(component)})"
        cycles.append(line)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_is_too_long() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for top in SIZED
        for path in _python_files(top)
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"
