"""Every code example of README.md and docs/*.md runs as written.

Each fenced block in those files is preceded by an HTML comment (invisible
when the Markdown is rendered) saying what it is:

- ``<!-- file: catalog/controller/hello.py -->``: the block is that file of a
  project (``catalog/...`` or ``templates/...``); the test writes it into a
  temporary copy of the shipped catalog and templates;
- ``<!-- calls -->``: a shell block of ``curl`` commands, each followed by what
  it answers: a ``# comment`` at the end of its line or on the lines after it,
  optionally starting with the HTTP status (``# 422 {...}``; without one, any
  2xx). No comment: the call must simply succeed;
- ``<!-- output of: curl ... -->``: the block is what that command answers;
- ``<!-- python -->``: a client script, run by the project's Python
  (``http://127.0.0.1:5000`` becoming the test server's address); its
  ``assert`` statements are what it expects, and it must exit with 0;
- ``<!-- not run: why -->``: a block the suite cannot run as a call (the
  Makefile's targets, ``setup.sh``, settings), and where it is tested instead.

The files are served by a real ``kernkoa serve`` with its task worker, the
commands are run by ``curl`` itself (``http://127.0.0.1:5000`` becoming the
test server's address), and each answer is compared with the document: as JSON
when the expectation is JSON, else as text; ``...`` stands for anything.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernel.core.settings import PROJECT_ROOT
from tests.support.servers import LiveServer

#: The documents whose examples run.
DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]

#: The address the documents use for the server.
DOCUMENTED_BASE = "http://127.0.0.1:5000"

#: Stands for any text (or any JSON value) in an expectation.
ANYTHING = "..."

_FENCE = re.compile(r"^(\s*)```")
_MARKER = re.compile(r"^\s*<!--\s*(file|calls|output of|not run|python):?\s*(.*?)\s*-->\s*$")
_STATUS = re.compile(r"^(\d{3})(?:\s+|$)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document, and the marker before it."""

    document: Path
    line: int
    kind: str | None
    argument: str
    text: str

    @property
    def where(self) -> str:
        """``README.md:35``."""
        return f"{self.document.relative_to(PROJECT_ROOT)}:{self.line}"


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of ``document``, each with its marker (or none)."""
    lines = document.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = len(opening.group(1))
        end = next(i for i in range(index + 1, len(lines)) if _FENCE.match(lines[i]))
        body = "\n".join(line[indent:] for line in lines[index + 1:end])
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = _MARKER.match(previous)
        found.append(Block(document, index + 1, marker.group(1) if marker else None,
                           marker.group(2) if marker else "", body + "\n"))
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    """The blocks of every document."""
    return [block for document in DOCUMENTS for block in blocks(document)]


@dataclass(frozen=True)
class Call:
    """One documented command and what it answers."""

    where: str
    command: str
    expected: str | None


def calls(block: Block) -> list[Call]:
    """The commands of a ``calls`` block with their expectations."""
    found: list[Call] = []
    command: list[str] = []
    expected: list[str] = []

    def close() -> None:
        if command:
            found.append(Call(block.where, " ".join(command),
                              "\n".join(expected) if expected else None))
        command.clear()
        expected.clear()

    continued = False
    for line in block.text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#") and not continued:
            expected.append(stripped[1:].strip())
            continue
        if not continued:
            close()
        # A comment starts at " # " (a URL's own "#" has no space after it).
        comment_at = re.search(r"\s+#\s", stripped)
        code = stripped[:comment_at.start()] if comment_at else stripped
        comment = stripped[comment_at.end():] if comment_at else ""
        continued = code.endswith("\\")
        command.append(code.rstrip("\\").strip())
        if comment:
            expected.append(comment.strip())
    close()
    return found


def matches(expected: t.Any, actual: t.Any) -> bool:
    """Whether ``actual`` is what ``expected`` describes (``...`` stands for anything)."""
    if isinstance(expected, str):
        if not isinstance(actual, str):
            return expected == ANYTHING
        pattern = ".*".join(re.escape(part) for part in expected.split(ANYTHING))
        return re.fullmatch(pattern, actual, re.DOTALL) is not None
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(matches(v, actual[k]) for k, v in expected.items()))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(matches(e, a) for e, a in zip(expected, actual, strict=True)))
    return type(expected) is type(actual) and expected == actual


def run_curl(command: str, base: str) -> tuple[int, str]:
    """Run a documented ``curl`` command against ``base``; its status and body."""
    words = shlex.split(command.replace(DOCUMENTED_BASE, base))
    assert words[0] == "curl", command
    result = subprocess.run(
        [*words, "-sS", "--max-time", "30", "-w", "\n%{http_code}"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def run_python(where: str, script: str, base: str) -> None:
    """Run a documented client script against ``base``; fail unless it exits with 0."""
    result = subprocess.run([sys.executable, "-c", script.replace(DOCUMENTED_BASE, base)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{where}: {result.stdout}{result.stderr}"


def check_answer(where: str, command: str, expected: str | None, base: str,
                 any_status: bool = False) -> None:
    """Run ``command``; fail unless it answers ``expected`` (see the module doc).

    :param any_status: the HTTP status is not part of the expectation (an error
        envelope states its own).
    """
    status, body = run_curl(command, base)
    if expected is None:
        assert 200 <= status < 300, f"{where}: {command} answered {status}: {body}"
        return
    expected = expected.replace(DOCUMENTED_BASE, base)
    wanted_status = None if any_status else _STATUS.match(expected)
    if wanted_status:
        assert status == int(wanted_status.group(1)), f"{where}: {command}: {status} {body}"
        expected = expected[wanted_status.end():]
    elif not any_status:
        assert 200 <= status < 300, f"{where}: {command} answered {status}: {body}"
    try:
        document = json.loads(expected)
    except ValueError:
        assert matches(expected.strip(), body.strip()), (
            f"{where}: {command}\nexpected: {expected.strip()}\nanswered: {body.strip()}")
        return
    assert matches(document, json.loads(body)), (
        f"{where}: {command}\nexpected: {expected}\nanswered: {body}")


def test_every_code_block_says_what_it_is() -> None:
    unmarked = [block.where for block in all_blocks() if block.kind is None]
    assert not unmarked, f"code blocks without a marker comment: {unmarked}"
    not_run = [block for block in all_blocks() if block.kind == "not run"]
    assert all(block.argument for block in not_run), "a not-run block must say why"


def test_each_file_is_written_once() -> None:
    paths = [block.argument for block in all_blocks() if block.kind == "file"]
    assert len(paths) == len(set(paths)), paths
    assert all(p.startswith(("catalog/", "templates/")) for p in paths), paths


@pytest.mark.parametrize(("expected", "actual", "fits"), [
    ({"id": "...", "n": 1}, {"id": "3f2a", "n": 1}, True),
    ({"id": "...", "n": 1}, {"id": "3f2a", "n": 2}, False),
    ({"n": 1}, {"n": 1, "extra": 0}, False),
    ({"n": 1}, {"n": True}, False),
    ("<a href='.../status/...'>", "<a href='http://h/status/42'>", True),
    ("hello, everyone", "hello, every one", False),
    (["..."], [{"deep": [1]}], True),
])
def test_expectations_match_as_documented(expected: t.Any, actual: t.Any, fits: bool) -> None:
    assert matches(expected, actual) is fits


def test_calls_are_read_with_their_expectations() -> None:
    block = Block(PROJECT_ROOT / "README.md", 1, "calls", "",
                  "curl http://127.0.0.1:5000/a      # one\n"
                  "curl -X POST \\\n     http://127.0.0.1:5000/b\n# 422 {\"a\":\n#  1}\n"
                  "curl http://127.0.0.1:5000/c\n")
    assert [(c.command, c.expected) for c in calls(block)] == [
        ("curl http://127.0.0.1:5000/a", "one"),
        ("curl -X POST http://127.0.0.1:5000/b", '422 {"a":\n1}'),
        ("curl http://127.0.0.1:5000/c", None),
    ]


def project(root: Path) -> Path:
    """The shipped catalog and templates, plus every documented file, in ``root``."""
    shutil.copytree(PROJECT_ROOT / "catalog", root / "catalog")
    shutil.copytree(PROJECT_ROOT / "templates", root / "templates")
    for block in all_blocks():
        if block.kind == "file":
            path = root / block.argument
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
    return root


def test_documented_examples_answer_as_written(serve: t.Callable[..., LiveServer],
                                               tmp_path: Path) -> None:
    root = project(tmp_path / "project")
    server = serve(worker=True, CATALOG=str(root / "catalog"),
                   TEMPLATES=str(root / "templates"))
    checked = 0
    for block in all_blocks():
        if block.kind == "calls":
            for call in calls(block):
                check_answer(call.where, call.command, call.expected, server.base)
                checked += 1
        elif block.kind == "python":
            run_python(block.where, block.text, server.base)
            checked += 1
        elif block.kind == "output of":
            check_answer(block.where, block.argument, block.text, server.base,
                         any_status=True)
            checked += 1
    assert checked >= 10, "the documents should show what their examples answer"
