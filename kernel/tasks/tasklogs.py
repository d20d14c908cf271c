"""A task's request id and log context on a worker.

The request that starts a task puts its id into the message, in the request
snapshot (``"request_id"``, :func:`kernel.tasks.enqueue.request_snapshot`). On the
worker:

- :func:`bind_log_context` and :func:`unbind_log_context` (Celery's
  ``task_prerun`` / ``task_postrun`` signals) bind the task's id and its request
  id to the log context around the whole run, so every line of it names both,
  Celery's own ``succeeded`` / ``failed`` / ``retry`` lines included;
- :class:`RequestIdMeta`, mixed into the result backends, writes the request id
  into every state the task stores (STARTED, progress, SUCCESS, FAILURE,
  RETRY), where ``/status/<id>`` reads it;
- a method's ``print()`` is one INFO line of the task on the ``kernkoa.tasks.print``
  logger (:class:`PrintedLines`, standing in for Celery's redirection of the
  worker's stdout, which logs every piece a ``print`` writes as a line of its
  own), whatever else reaches stdout or stderr is logged at INFO too (Celery's
  ``worker_redirect_stdouts_level``, set in :mod:`kernel.tasks.celeryapp`), and
  the ``celery.task`` logger writes through the kernel's handler, in ``LOG_FORMAT``;
- with ``--logfile`` (a worker's, beat's), the kernel's handler writes to that file
  (:func:`log_to_celery_logfile`): Celery leaves alone a root logger that has a
  handler, so without it every line but the pool's would go to stderr.

A queued task has stored nothing yet: until a worker takes it, its status has no
``request_id`` (the trigger's ``X-Request-Id`` answer has it).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import typing as t

from celery import signals
from celery.utils.log import LoggingProxy
from celery.utils.log import get_multiprocessing_logger

from ..core.logs import REQUEST_ID
from ..core.logs import TASK_ID
from ..core.logs import KernKoaLogHandler
from ..core.logs import log_to_file
from ..core.logs import owns_logging
from .backends import REQUEST_ID_KEY
from .environ import request_id_of
from .run import TASK_NAME

#: The attribute of a running task's Celery request holding its context tokens.
_TOKENS = "kernkoa_log_tokens"


def message_request_id(task_kwargs: t.Any) -> str | None:
    """The request id a ``kernkoa.run`` message's kwargs carry (``None``: none, or not sane)."""
    return request_id_of(task_kwargs.get("request")) if isinstance(task_kwargs, dict) else None


def bind_log_context(sender: t.Any = None, task_id: str | None = None, task: t.Any = None,
                     kwargs: t.Any = None, **_: t.Any) -> None:
    """Bind a ``kernkoa.run`` task's id and request id to the log context (``task_prerun``)."""
    if getattr(sender, "name", None) != TASK_NAME or task is None:
        return
    tokens = (TASK_ID.set(task_id), REQUEST_ID.set(message_request_id(kwargs)))
    setattr(task.request, _TOKENS, tokens)


def unbind_log_context(sender: t.Any = None, task: t.Any = None, **_: t.Any) -> None:
    """Put the log context back as it was before the task (``task_postrun``), once
    what the task printed without an end of line is logged."""
    tokens = getattr(task.request, _TOKENS, None) if task is not None else None
    if tokens is None:
        return
    if isinstance(sys.stdout, PrintedLines):
        sys.stdout.flush()
    setattr(task.request, _TOKENS, None)
    TASK_ID.reset(tokens[0])
    REQUEST_ID.reset(tokens[1])


def log_tasks_through_root(logger: logging.Logger | None = None, **_: t.Any) -> None:
    """Let the ``celery.task`` logger write through the kernel's handler
    (``after_setup_task_logger``), when the kernel's handler is the process's one."""
    root = logging.getLogger()
    if logger is None or not any(isinstance(h, KernKoaLogHandler) for h in root.handlers):
        return
    logger.handlers.clear()
    logger.propagate = True


def log_to_celery_logfile(logfile: t.Any = None, **_: t.Any) -> None:
    """Move the kernel's handler to Celery's ``--logfile`` (a path), and let the
    pool's (multiprocessing) logger write through it too (``after_setup_logger``),
    when the kernel's handler is the process's one; without a log file, stderr stays."""
    ours = log_to_file(logfile) if isinstance(logfile, str) and logfile else owns_logging()
    if not ours:
        return
    pool = get_multiprocessing_logger()
    if pool is not None:
        pool.handlers.clear()
        pool.propagate = True


class PrintedLines(io.TextIOBase):
    """A worker's ``sys.stdout``: each line printed is one INFO record of ``logger``,
    in the log context of the moment (the running task's ids).

    The text of a line is kept until its end of line comes (or a ``flush``), per
    thread, so one ``print("a", "b")`` is one line, never three.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self._local = threading.local()

    def writable(self) -> bool:
        """It is written to."""
        return True

    def write(self, text: str) -> int:
        """Log every line ``text`` completes; keep the rest for the next write."""
        *lines, self._local.pending = (getattr(self._local, "pending", "") + text).split("\n")
        for line in lines:
            self._log(line)
        return len(text)

    def flush(self) -> None:
        """Log the line begun, if any."""
        pending = getattr(self._local, "pending", "")
        if pending:
            self._local.pending = ""
            self._log(pending)

    def _log(self, line: str) -> None:
        # A handler writing to stdout would come back here: drop that line instead.
        if getattr(self._local, "logging", False):
            return
        self._local.logging = True
        try:
            self.logger.info(line)
        finally:
            self._local.logging = False


def log_printed_lines(**_: t.Any) -> None:
    """Stand in for Celery's redirection of stdout, where it is in place
    (``worker_process_init`` in each pool process, ``worker_ready`` for the solo pool)."""
    if isinstance(sys.stdout, LoggingProxy):
        sys.stdout = PrintedLines(logging.getLogger("kernkoa.tasks.print"))


def connect_task_logging() -> None:
    """Connect the receivers above to Celery's signals (once per process)."""
    signals.worker_process_init.connect(log_printed_lines, weak=False,
                                        dispatch_uid="kernkoa.log_printed_lines")
    signals.worker_ready.connect(log_printed_lines, weak=False,
                                 dispatch_uid="kernkoa.log_printed_lines.ready")
    signals.task_prerun.connect(bind_log_context, weak=False,
                                dispatch_uid="kernkoa.bind_log_context")
    signals.task_postrun.connect(unbind_log_context, weak=False,
                                 dispatch_uid="kernkoa.unbind_log_context")
    signals.after_setup_logger.connect(log_to_celery_logfile, weak=False,
                                       dispatch_uid="kernkoa.log_to_celery_logfile")
    signals.after_setup_task_logger.connect(log_tasks_through_root, weak=False,
                                            dispatch_uid="kernkoa.log_tasks_through_root")


class RequestIdMeta:
    """Mixed into a Celery result backend: each stored state of a ``kernkoa.run``
    task carries its request id, read from the task's own message (the main
    process stores a pool process's death), else from the running task's log context.

    Celery builds every stored meta in ``_get_result_meta`` (its
    ``result_extended`` would add the whole arguments, request snapshot
    included): one more key, nothing else.
    """

    def _get_result_meta(self, result: t.Any, state: str, traceback: t.Any, request: t.Any,
                         *args: t.Any, **kwargs: t.Any) -> dict[str, t.Any]:
        meta: dict[str, t.Any] = super()._get_result_meta(  # type: ignore[misc]
            result, state, traceback, request, *args, **kwargs)
        request_id = message_request_id(getattr(request, "kwargs", None)) if request else None
        if request_id is None and TASK_ID.get() is not None:
            request_id = REQUEST_ID.get()
        if request_id is not None:
            meta[REQUEST_ID_KEY] = request_id
        return meta
