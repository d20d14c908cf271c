"""A started task, followed through ``/status/<id>``: status, progress, result, wait, cancel."""

from __future__ import annotations

import time
import typing as t

from .errors import TaskFailed
from .errors import TaskTimeout

if t.TYPE_CHECKING:
    from .client import Client

#: The statuses after which a task never changes.
FINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

#: Longest single long poll asked for, in seconds (servers cut it to STATUS_WAIT_MAX).
LONG_POLL = 25.0

#: Pauses between two long polls a server answered early (its STATUS_WAIT_MAX is
#: lower than asked, or 0): from the first to the last, doubling.
PAUSE_FIRST, PAUSE_LAST = 0.1, 2.0


class Task:
    """A task a :class:`~kernel.client.Client` started (or was given the id of).

    ``status``, ``progress`` and ``result`` read ``/status/<id>`` again until the
    task is final; ``wait`` long-polls it (``?wait=``), never polling in a loop.
    """

    def __init__(self, client: Client, task_id: str, status_url: str | None = None,
                 body: dict[str, t.Any] | None = None) -> None:
        self.client = client
        #: The task id.
        self.id = task_id
        #: Where its status is read.
        self.status_url = status_url or f"/status/{task_id}"
        self._body: dict[str, t.Any] = body or {"status": "PENDING"}

    def __repr__(self) -> str:
        return f"<Task {self.id[:16]}... {self._body.get('status')}>"

    @property
    def done(self) -> bool:
        """Whether the last status seen is final (no request)."""
        return self._body.get("status") in FINAL

    def refresh(self, wait: float | None = None) -> dict[str, t.Any]:
        """The status body, read again unless final; ``wait``: long-poll that long."""
        if not self.done:
            self._body = self.client.task_status(self.status_url, wait)
        return self._body

    @property
    def status(self) -> str:
        """``PENDING``, ``STARTED``, ``PROGRESS`` (or another custom state),
        ``SUCCESS``, ``FAILURE`` or ``REVOKED``."""
        return str(self.refresh()["status"])

    @property
    def progress(self) -> dict[str, t.Any] | None:
        """The last progress report (``current``, ``total``, ``percent``, ``message``),
        while it is the task's state; ``None`` otherwise."""
        state = self.refresh().get("state")
        return state if isinstance(state, dict) else None

    @property
    def result(self) -> t.Any:
        """What the method returned.

        :raises TaskFailed: when it failed or was cancelled.
        :raises RuntimeError: when it has not finished (see :meth:`wait`).
        """
        body = self.refresh()
        if body["status"] == "SUCCESS":
            return body.get("data")
        if body["status"] in FINAL:
            raise TaskFailed(self.id, body)
        raise RuntimeError(f"task {self.id} is {body['status']}, not finished: wait() for it")

    def wait(self, timeout: float = 60.0) -> t.Any:
        """Wait until the task is final, at most ``timeout`` seconds, and return
        :attr:`result`.

        :raises TaskFailed: when it failed or was cancelled.
        :raises TaskTimeout: when it is not final in time.
        """
        deadline = time.monotonic() + timeout
        pause = PAUSE_FIRST
        while not self.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TaskTimeout(self.id, timeout, self._body)
            asked = min(remaining, LONG_POLL)
            began = time.monotonic()
            self.refresh(wait=asked)
            if not self.done and time.monotonic() - began < asked / 2:
                # Answered early: this server waits less than asked.
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(2 * pause, PAUSE_LAST)
        return self.result

    def cancel(self) -> None:
        """Cancel the task (``DELETE /status/<id>``): it never starts if still queued,
        and stops at its next progress report if running.

        :raises CallError: 409 when it had already finished.
        """
        self._body = self.client.cancel_task(self.status_url)
