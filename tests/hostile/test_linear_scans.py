"""No regular expression in the kernel or its add-ons can backtrack.

Every call of the ``re`` module in ``kernel/`` and ``system/addons/`` is found
in the source; its pattern must repeat only possessively (``*+``, ``++``,
``?+``, ``{m,n}+``), which never gives back what it matched: the match runs
in time linear in its input, whatever the client sent. A pattern built at run
time is checked through the function that builds it.
"""

from __future__ import annotations

import ast
import re
import typing as t
from pathlib import Path

import pytest

from kernel.core.settings import PROJECT_ROOT
from kernel.web.fastmatch import path_grammar

#: The ``re`` functions that take a pattern first.
PATTERN_FUNCTIONS = {"compile", "match", "fullmatch", "search", "sub", "subn", "split",
                     "findall", "finditer"}

#: Patterns built at run time: where they are built, and one pattern each builds.
BUILT = {("kernel/web/fastmatch.py", "path_grammar"): path_grammar("/some/prefix/").pattern}

#: Repeats that may give back what they matched (greedy or lazy).
BACKTRACKING = {re._constants.MAX_REPEAT, re._constants.MIN_REPEAT}  # type: ignore[attr-defined]


def sources() -> list[Path]:
    """The Python files of the kernel and of the shipped add-ons."""
    return sorted([*(PROJECT_ROOT / "kernel").rglob("*.py"),
                   *(PROJECT_ROOT / "system" / "addons").glob("*.py")])


def regex_calls(path: Path) -> t.Iterator[tuple[str, str | None, str]]:
    """Each ``re.<function>(pattern, ...)`` call in ``path``: where it is, the
    pattern when it is a literal, and the function it is called in."""
    tree = ast.parse(path.read_text())
    owners: dict[ast.AST, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                owners.setdefault(inner, node.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                and node.func.attr in PATTERN_FUNCTIONS):
            first = node.args[0] if node.args else None
            literal = first.value if isinstance(first, ast.Constant) else None
            assert literal is None or isinstance(literal, str), f"{path}:{node.lineno}"
            yield f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}", literal, owners.get(node, "")


def backtracking_repeats(pattern: str | bytes) -> list[str]:
    """The repeats of ``pattern`` that can backtrack, as text (empty: none)."""
    found: list[str] = []

    def walk(items: t.Any) -> None:
        for op, value in items:
            if op in BACKTRACKING:
                found.append(f"{op} {value[:2]}")
            if isinstance(value, (list, tuple)):
                for part in value:
                    if isinstance(part, re._parser.SubPattern):  # type: ignore[attr-defined]
                        walk(part)
                    elif isinstance(part, (list, tuple)):
                        walk([p for p in part if isinstance(p, tuple) and len(p) == 2])
    walk(re._parser.parse(pattern))  # type: ignore[attr-defined]
    return found


CALLS = [call for path in sources() for call in regex_calls(path)]


def test_the_kernel_has_regular_expressions_to_check() -> None:
    # The source walk finds them (a broken walk would pass every check below).
    assert len(CALLS) >= 8
    assert any(where.startswith("kernel/catalog/routing.py") for where, _, _ in CALLS)


@pytest.mark.parametrize(("where", "literal", "owner"), CALLS, ids=[c[0] for c in CALLS])
def test_no_pattern_can_backtrack(where: str, literal: str | None, owner: str) -> None:
    if literal is None:
        key = (where.split(":")[0], owner)
        assert key in BUILT, f"{where}: a pattern built at run time that no test checks"
        literal = BUILT[key]
    assert backtracking_repeats(literal) == [], f"{where}: {literal!r}"


@pytest.mark.parametrize(("greedy", "possessive"), [
    (r"a*", r"a*+"), (r"(?:/b+)*", r"(?:/b++)*+"), (r"x{0,63}", r"x{0,63}+"),
    (r"https?://", r"https?+://"), (r"a*?b", r"a*+b"), (r"(a|b(c+))*", r"(a|b(c++))*+"),
])
def test_the_check_tells_greedy_from_possessive(greedy: str, possessive: str) -> None:
    assert backtracking_repeats(greedy)
    assert backtracking_repeats(possessive) == []
