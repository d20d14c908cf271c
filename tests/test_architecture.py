"""The kernel's structure, as docs/architecture.md draws it.

import-linter (``make lint``) checks the layer contracts of ``pyproject.toml`` on
the imports Python sees. These tests check what it cannot see: the modules a
``LazyModule("...")`` or ``import_module("...")`` names, and cycles through any
import at any depth (function-level ones included, ``if TYPE_CHECKING:`` ones
not); and the shape of the tree itself.
"""

from __future__ import annotations

import ast
import typing as t
from pathlib import Path

import pytest

KERNEL = Path(__file__).resolve().parents[1] / "kernel"

#: The layers, bottom to top; siblings share a rank. The client, just above the core,
#: imports only its exception root (an import-linter contract says so).
RANKS = {"core": 0, "client": 1, "catalog": 2, "web": 3, "auth": 4, "api": 4, "tasks": 5,
         "pages": 6, "app": 7, "testing": 8, "cli": 9}

#: Modules allowed loose at kernel/'s top.
LOOSE_MAX = 4

#: Lines of the longest module.
LINES_MAX = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(KERNEL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(KERNEL.rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(inner) for inner in ast.walk(node))
    return found


def imports_of(name: str) -> set[str]:
    """Every kernel module ``name`` imports, at any depth, or names to a lazy loader."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ast.unparse(node.func).endswith(("LazyModule", "import_module"))):
            targets = [node.args[0].value]
        found.update(target for target in targets if target in MODULES and target != name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_kernel_module_is_in_a_layer() -> None:
    layers = {layer_of(name) for name in MODULES} - {None}
    assert layers == set(RANKS)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_point_down(name: str) -> None:
    """Lazy handles included: a LazyModule is an import made later, not a way around the layers."""
    source = layer_of(name)
    if source is None:
        return  # kernel/__init__.py: the package's face, above everything
    upward = sorted(target for target in GRAPH[name]
                    if (layer := layer_of(target)) is None or RANKS[layer] > RANKS[source]
                    or (RANKS[layer] == RANKS[source] and layer != source))
    assert upward == []


def _cycles(graph: t.Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_at_any_depth() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_few_modules_stay_loose_and_none_is_long() -> None:
    loose = sorted(p.name for p in KERNEL.glob("*.py"))
    assert len(loose) <= LOOSE_MAX, loose
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > LINES_MAX}
    assert long == {}


def test_every_layer_says_what_it_is() -> None:
    for layer in RANKS:
        package = KERNEL / layer / "__init__.py"
        if package.exists():
            assert ast.get_docstring(ast.parse(package.read_text())), layer


def _drawn_tree() -> set[str]:
    """The modules docs/architecture.md's tree draws, as paths under kernel/."""
    text = (KERNEL.parent / "docs" / "architecture.md").read_text()
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    drawn: set[str] = set()
    folders: list[str] = []
    for line in block.splitlines()[1:]:
        name = line.lstrip("│├└─ \u00a0").split(" ", 1)[0]
        depth = (len(line) - len(line.lstrip("│├└─ \u00a0"))) // 4
        if not name:
            continue
        del folders[depth - 1:]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        elif name.endswith(".py"):
            drawn.add("/".join([*folders, name]))
    return drawn


def test_the_documented_tree_is_the_tree() -> None:
    real = {p.relative_to(KERNEL).as_posix() for p in KERNEL.rglob("*.py")
            if p.name != "__init__.py" or p.parent == KERNEL}
    assert _drawn_tree() == real
