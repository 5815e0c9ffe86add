"""The import graph of ``gateway`` and ``sessions``: layers point one way, and nothing circles.

Read from the source with ``ast``, so it sees every import: top-level ones, those inside
functions and those under ``if TYPE_CHECKING:`` (a circle hidden there is still a circle a
reader has to untangle). A failure names the offending modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "sessions")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports (first-party modules resolved; others by top name)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "gateway.app" in graph and "sessions.router" in graph
    assert "sessions.router" in graph["gateway.app"]  # proves resolution works


def test_sessions_never_import_gateway_or_aiohttp() -> None:
    graph = _graph()
    offenders = {
        module: sorted(i for i in imports if i.split(".")[0] in ("gateway", "aiohttp"))
        for module, imports in graph.items()
        if module.startswith("sessions")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_formats_are_pure_and_below_the_http_layer() -> None:
    """Formats are shared by produce and consume: they import no HTTP, no sessions."""
    graph = _graph()
    offenders = {
        module: sorted(
            i
            for i in imports
            if i.split(".")[0] in ("aiohttp", "sessions", "aiokafka")
            or (i.startswith("gateway.") and not i.startswith("gateway.formats"))
        )
        for module, imports in graph.items()
        if module.startswith("gateway.formats")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_produce_and_consume_do_not_import_each_other() -> None:
    graph = _graph()
    crossings = sorted(
        (module, i)
        for module, imports in graph.items()
        for i in imports
        if (module.startswith("gateway.produce") and i.startswith("gateway.consume"))
        or (module.startswith("gateway.consume") and i.startswith("gateway.produce"))
    )
    assert crossings == []


def test_no_import_circles() -> None:
    graph = _graph()
    first_party = {m: {i for i in imports if i in graph} for m, imports in graph.items()}
    circles = [sorted(c) for c in _strongly_connected(first_party) if len(c) > 1]
    circles += [[m] for m, imports in first_party.items() if m in imports]
    assert circles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on deep graphs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
    return found


def test_the_circle_finder_finds_circles() -> None:
    """The check above can fail: a known circle is found, a chain is not."""
    circle = _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert {"a", "b", "c"} in circle
    assert all(len(c) == 1 for c in _strongly_connected({"a": {"b"}, "b": {"c"}, "c": set()}))
