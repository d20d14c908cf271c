"""Keeping the task worker of ``kernkoa serve`` running: restarted when it exits.

Production workers are supervised by what is made for it (systemd units, or
uWSGI's master under ``setup.sh --no-systemd``); the development server has
neither, so it watches its one child itself: a worker that exits, whatever
the cause, is started again after ``restart_delay`` seconds, doubled (up to
``MAX_DELAY``) while it keeps exiting within ``STEADY`` seconds of its start,
so a worker that cannot start does not spin. The tasks it held come back
through :mod:`kernel.tasks.leases`.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import typing as t

log = logging.getLogger("kernkoa.worker")

#: Longest pause between two restarts, in seconds.
MAX_DELAY = 30.0

#: Seconds a worker must have run for its next restart to come after the first delay again.
STEADY = 10.0


class WorkerSupervisor:
    """Runs ``start()``'s process and starts it again whenever it exits, until :meth:`stop`.

    :param start: starts the worker process.
    :param stop: stops a worker process (and waits for it).
    """

    def __init__(self, start: t.Callable[[], subprocess.Popen[bytes]],
                 stop: t.Callable[[subprocess.Popen[bytes]], None],
                 restart_delay: float = 1.0) -> None:
        self._start = start
        self._stop = stop
        self.restart_delay = restart_delay
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="kernkoa-worker-supervisor")

    def start(self) -> None:
        """Start the worker and watch it."""
        with self._lock:
            self.process = self._start()
        self._thread.start()

    def _watch(self) -> None:
        delay = self.restart_delay
        while True:
            process = self.process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            steady = time.monotonic() - started >= STEADY
            delay = self.restart_delay if steady or not self.restarts \
                else min(delay * 2, MAX_DELAY)
            log.error("the task worker (pid %d) exited with %s; starting another in %.1f s",
                      process.pid, code, delay)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = self._start()
                self.restarts += 1

    def stop(self) -> None:
        """Stop watching, then stop the worker."""
        self._stopping.set()
        with self._lock:
            if self.process is not None:
                self._stop(self.process)
        if self._thread.is_alive():
            self._thread.join(5)
