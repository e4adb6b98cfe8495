"""The package's structure stays: no import runs up a layer, no modules import each other in a circle.

Layers, top to bottom (CONTRIBUTING.md says what each holds)::

    commands (genloop.cli, the package root's API façade)
    report
    results
    sweep
    store, config, theory, testing
    loop
    metrics
    models
    data
    registry, _validation
    _fs, _grids, _json, _text, errors, rng

A module may import its own layer and any layer below it. Every import counts, also those
inside functions and under ``TYPE_CHECKING`` (a lazy import still ties the layers together).
"""

from __future__ import annotations

import ast
from pathlib import Path


import genloop

ROOT = Path(genloop.__file__).parent
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("report",),
    ("results",),
    ("sweep",),
    ("store", "config", "theory", "testing"),
    ("loop",),
    ("metrics",),
    ("models",),
    ("data",),
    ("registry", "_validation"),
    ("_fs", "_grids", "_json", "_text", "errors", "rng"),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def layer_of(module: str) -> int:
    """The layer index of a genloop module (0 = top); the package root is the API façade (top)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return 0
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    raise AssertionError(f"module {module} is in no layer: add its top-level name to LAYERS (and CONTRIBUTING.md)")


def imports_of(module: str) -> set[str]:
    """The genloop modules ``module`` imports (``from pkg import sub`` names the submodule)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            found.update(subs if len(subs) == len(node.names) else [node.module, *subs])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def upward_imports(graph: dict[str, set[str]] = GRAPH) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if layer_of(t) < layer_of(m))


def circles(graph: dict[str, set[str]] = GRAPH) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_import_runs_up_a_layer() -> None:
    assert upward_imports() == []


def test_no_import_circles() -> None:
    assert circles() == []


def test_no_library_module_imports_the_commands() -> None:
    offenders = sorted(m for m, targets in GRAPH.items() if layer_of(m) > 0
                       and any(t == "genloop.cli" or t.startswith("genloop.cli.") for t in targets))
    assert offenders == []


def test_the_checks_catch_a_violation() -> None:
    """The checks are not vacuous: an injected upward import and an injected circle are found."""
    graph = {m: set(t) for m, t in GRAPH.items()}
    graph["genloop.errors"].add("genloop.sweep.runs")
    assert "genloop.errors -> genloop.sweep.runs" in upward_imports(graph)
    graph["genloop.rng"].add("genloop._fs")
    graph["genloop._fs"].add("genloop.rng")
    assert ["genloop._fs", "genloop.rng"] in circles(graph)
