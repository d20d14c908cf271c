"""The kernel's log lines: who they are about, and how they are written.

Two context variables say what the code running now is working for: the
request id (set by the web layer for a request, by the task layer for a task a
request started) and the task id (set by the task layer on a worker).
:class:`LogContextFilter` copies them onto every record a handler sees, as
``record.request_id`` and ``record.task_id``, so every line written while a
request or a task runs names it, whichever library logged it.

``LOG_FORMAT`` picks the formatter: ``text`` (:class:`TextFormatter`, for
people) or ``json`` (:class:`JsonLineFormatter`, one JSON object per line,
for log shippers). :func:`install_logging` gives the root logger such a
handler, on stderr, unless the deployment configured logging itself;
:func:`log_to_file` moves it to a file (a Celery worker's or beat's ``--logfile``).
"""

from __future__ import annotations

import logging
import os
import sys
import typing as t
from contextvars import ContextVar
from logging.handlers import WatchedFileHandler

from pythonjsonlogger.json import JsonFormatter

from .errors import SettingsError

#: The id of the request being served, or of the request that started the task being run.
REQUEST_ID: ContextVar[str | None] = ContextVar("kernkoa_request_id", default=None)

#: The id of the task being run (on a worker).
TASK_ID: ContextVar[str | None] = ContextVar("kernkoa_task_id", default=None)

#: The record attributes :class:`LogContextFilter` sets, and the context variables they copy.
CONTEXT_FIELDS: tuple[tuple[str, ContextVar[str | None]], ...] = (
    ("request_id", REQUEST_ID), ("task_id", TASK_ID))


class LogContextFilter(logging.Filter):
    """Adds ``request_id`` and ``task_id`` to every record (``None`` outside one).

    Attach it to a handler (``handler.addFilter(LogContextFilter())``) so that
    its formatter may use ``%(request_id)s``. A value the caller passed in
    ``extra`` is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the context fields on ``record``; never drops it."""
        for name, variable in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, variable.get())
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request_id=... task_id=...]``, the context
    part only for a record that has one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line of ``record``, its context appended."""
        line = super().format(record)
        context = " ".join(f"{name}={value}" for name, _ in CONTEXT_FIELDS
                           if (value := getattr(record, name, None)) is not None)
        if not context:
            return line
        # Keep the context on the first line when a traceback follows.
        first, newline, rest = line.partition("\n")
        return f"{first} [{context}]{newline}{rest}"


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``,
    ``request_id`` and ``task_id`` when set, then the record's ``extra`` fields
    (the access line's ``route``, ``status``...) and ``exc_info`` for a traceback.

    Everything is escaped by the JSON encoder, so no message can break a line.
    """

    def __init__(self) -> None:
        super().__init__(["levelname", "name", "message"], timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"})

    def process_log_record(self, log_data: dict[str, t.Any]) -> dict[str, t.Any]:
        """Put ``time`` first and leave out the context fields that are unset."""
        for name, _ in CONTEXT_FIELDS:
            if log_data.get(name, "") is None:
                del log_data[name]
        return {"time": log_data.pop("time"), **log_data}


#: The formatter of each ``LOG_FORMAT``.
FORMATTERS: dict[str, type[logging.Formatter]] = {
    "text": TextFormatter, "json": JsonLineFormatter}


def formatter_for(log_format: str) -> logging.Formatter:
    """A new formatter for ``LOG_FORMAT`` ``log_format``.

    :raises SettingsError: for a format that is neither ``text`` nor ``json``.
    """
    try:
        return FORMATTERS[log_format]()
    except KeyError:
        raise SettingsError(f"LOG_FORMAT must be one of {', '.join(FORMATTERS)}, "
                            f"not {log_format!r}") from None


class KernKoaLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`install_logging` puts on the root logger (told apart from a
    deployment's own by its class)."""


class KernKoaFileHandler(WatchedFileHandler, KernKoaLogHandler):
    """The kernel's handler once :func:`log_to_file` moved it to a file; it reopens
    the file when it was rotated away (as Celery's own ``--logfile`` handler does)."""


def make_handler(log_format: str, stream: t.IO[str] | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr) in ``log_format``, with the context filter."""
    handler = KernKoaLogHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    handler.addFilter(LogContextFilter())
    return handler


def owns_logging(root: logging.Logger | None = None) -> bool:
    """Whether the root logger's handlers are the kernel's own (at least one)."""
    handlers = (root if root is not None else logging.getLogger()).handlers
    return bool(handlers) and all(isinstance(h, KernKoaLogHandler) for h in handlers)


def install_logging(log_format: str, root: logging.Logger | None = None) -> bool:
    """Write the process's log lines to stderr in ``log_format``, at INFO, unless
    logging was configured otherwise; return whether the kernel's handler is in place.

    As :func:`logging.basicConfig`, it leaves alone a root logger that already has
    a handler of someone else's (a deployment's ``dictConfig``, a test runner's):
    add :class:`LogContextFilter` to yours to get the request ids. A handler it
    installed before gets the new format (the last app built decides).

    :raises SettingsError: for an unknown format.
    """
    root = root if root is not None else logging.getLogger()
    formatter = formatter_for(log_format)
    ours = [h for h in root.handlers if isinstance(h, KernKoaLogHandler)]
    if len(ours) != len(root.handlers):
        return False
    if ours:
        for handler in ours:
            handler.setFormatter(formatter)
        return True
    root.addHandler(make_handler(log_format))
    root.setLevel(logging.INFO)
    return True


def log_to_file(path: str, root: logging.Logger | None = None) -> bool:
    """Write the lines of the kernel's handler to the file ``path`` (appended to)
    instead of stderr, in the same format; return whether it did.

    A root logger with a handler of someone else's is left alone, as by
    :func:`install_logging`.

    :raises OSError: when the file cannot be opened.
    """
    root = root if root is not None else logging.getLogger()
    if not owns_logging(root):
        return False
    for handler in list(root.handlers):
        if (isinstance(handler, KernKoaFileHandler)
                and handler.baseFilename == os.path.abspath(path)):
            continue
        moved = KernKoaFileHandler(path, encoding="utf-8")
        moved.setFormatter(handler.formatter)
        for kept in handler.filters:
            moved.addFilter(kept)
        root.addHandler(moved)
        root.removeHandler(handler)
        if isinstance(handler, KernKoaFileHandler):
            handler.close()
    return True
