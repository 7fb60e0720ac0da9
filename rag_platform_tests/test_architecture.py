"""Imports flow one way: entry points -> Dagster layer -> pipeline steps -> run parts -> domain -> base.

Every import of a ``rag_platform`` module counts, including those inside functions and under
``TYPE_CHECKING``, so no cycle can hide behind a late import.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

# Highest first. A module may import its own layer or any layer below it; anything not named is domain.
LAYERS: dict[str, tuple[str, ...]] = {
    "entry": ("rag_platform.cli", "rag_platform.api", "rag_platform.definitions"),
    "dagster": ("rag_platform.defs",),
    "steps": ("rag_platform.pipeline",),
    "parts": ("rag_platform.parts",),
    "domain": ("rag_platform",),
    "base": (
        "rag_platform.config",
        "rag_platform.records",
        "rag_platform.warehouse",
        "rag_platform.faults",
        "rag_platform.progress",
        "rag_platform.locking",
        "rag_platform.gates",
        "rag_platform.environment",
    ),
}
RANK = {name: rank for rank, name in enumerate(reversed(LAYERS))}


def package_root() -> Path:
    spec = importlib.util.find_spec("rag_platform")
    assert spec and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def module_name(path: Path, root: Path) -> str:
    parts = ("rag_platform", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer whose longest prefix matches (``rag_platform.api.app`` -> entry)."""
    best, length = "domain", 0
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = layer, len(prefix)
    return best


def imports_of(path: Path, module: str) -> set[str]:
    """Every rag_platform module ``path`` imports, wherever the import statement stands."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rag_platform"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if not base.startswith("rag_platform"):
                continue
            # ``from rag_platform.pipeline import steps`` imports the package and its submodule ``steps``
            # (names that are not modules are dropped by the caller).
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    root = package_root()
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: {m for m in imports_of(path, name) if m in modules and m != name} for name, path in modules.items()}


def test_no_module_imports_a_higher_layer() -> None:
    violations = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if RANK[layer_of(target)] > RANK[layer_of(module)]
    ]
    assert not violations, "\n".join(violations)


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("rag_platform.retrieval", "rag_platform.parts", False),
        ("rag_platform.pipeline.steps", "rag_platform.defs.runner", False),
        ("rag_platform.defs.runner", "rag_platform.definitions", False),
        ("rag_platform.cli", "rag_platform.defs.runner", True),
        ("rag_platform.index_sync", "rag_platform.warehouse", True),
    ],
)
def test_the_layer_rule_itself(importer: str, imported: str, allowed: bool) -> None:
    assert (RANK[layer_of(imported)] <= RANK[layer_of(importer)]) is allowed
