"""Log lines a test reads back: the kernel's JSON handler on the root logger, and the
JSON lines of a real process's log file."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import typing as t
from pathlib import Path

from kernel.core.logs import make_handler


class JsonLog:
    """The JSON lines the process logged while :func:`json_log` was active."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[dict[str, t.Any]]:
        """Every line so far, parsed (each one must be a JSON object)."""
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@contextlib.contextmanager
def json_log(level: int = logging.INFO) -> t.Iterator[JsonLog]:
    """Add the kernel's JSON handler to the root logger, at ``level``, for a while."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield JsonLog(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def json_lines(path: Path) -> list[dict[str, t.Any]]:
    """The JSON lines of a log file: every line that starts with ``{`` must parse
    as one JSON object (a server's own lines, uWSGI's or Celery's banner, are
    left out)."""
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError as error:
                raise AssertionError(f"{path.name}:{number} is not JSON: {line!r}") from error
    return found
