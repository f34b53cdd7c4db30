"""The house rules of imports: dependencies point down, no module imports itself back, and
tests use public names only.

``barista`` (the application) sits on top and may import every library;
``caffe_bridge`` is a pure Caffe runtime; ``barista_hw`` is the hardware at the
bottom; ``sim`` and ``boards`` are built on it (``boards`` simulates its boards
with ``sim``'s Verilator tools); ``barista_base`` holds the basics all of them share.
Every import counts, including those made inside functions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Package -> the Barista packages it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "barista_base": set(),
    "caffe_bridge": {"barista_base"},
    "barista_hw": {"barista_base"},
    "sim": {"barista_hw", "barista_base"},
    "boards": {"sim", "barista_hw", "barista_base"},
    "barista": {"caffe_bridge", "boards", "sim", "barista_hw", "barista_base"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every import statement of ``module``, resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            for alias in node.names:  # ``from pkg import module`` imports the module
                sub = f"{name}.{alias.name}"
                yield (sub if sub in MODULES else name), node.lineno


def _edges() -> dict[str, dict[str, int]]:
    edges: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        out = edges.setdefault(module, {})
        for name, line in _imported(module, path):
            target = name
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module:
                out.setdefault(target, line)
    return edges


def test_every_package_is_checked() -> None:
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert found - {"tests"} <= set(ALLOWED), f"add the new package to ALLOWED: {found}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependencies_point_down(package: str) -> None:
    wrong = []
    for module, targets in _edges().items():
        if module.split(".")[0] != package:
            continue
        for target, line in targets.items():
            top = target.split(".")[0]
            if top != package and top not in ALLOWED[package]:
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    """Strongly connected components of the module graph (Tarjan) must be single modules."""
    edges = _edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
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
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _private_uses(path: Path) -> Iterator[str]:
    """``_name`` imported from, or looked up on, one of our modules in a test file."""
    tree = ast.parse(path.read_text(), str(path))
    ours: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ALLOWED:
            for alias in node.names:
                if alias.name.startswith("_"):
                    yield f"{path.name}:{node.lineno} imports {node.module}.{alias.name}"
                ours.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ALLOWED:
                    ours.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in ours
        ):
            yield f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}"


def test_tests_use_public_names() -> None:
    found = [use for path in sorted((ROOT / "tests").rglob("*.py")) for use in _private_uses(path)]
    assert not found, "tests reach into private names:\n" + "\n".join(found)
