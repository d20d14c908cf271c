"""A real task worker for one test: ``kernkoa worker`` on the test's project and VAR,
started and stopped by the kit (``@pytest.mark.kernkoa(tasks="worker")``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

#: Seconds a worker may take to start (a loaded machine), and to stop.
START_TIMEOUT, STOP_GRACE = 60.0, 10.0

#: What a Celery worker logs once it consumes.
READY_LINE = b" ready."


def as_variable(value: t.Any) -> str:
    """A setting's value as its ``KERNKOA_*`` variable spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


class EmbeddedWorker:
    """``kernkoa worker`` in its own process group, its output in ``log``.

    :param settings: the settings of the test's app; they reach the worker as
        ``KERNKOA_*`` variables, so it runs the same catalog on the same broker.
    """

    def __init__(self, settings: t.Mapping[str, t.Any], log: Path) -> None:
        self.log = log
        env = {**os.environ, **{f"KERNKOA_{name}": as_variable(value)
                                for name, value in settings.items()}}
        env.setdefault("KERNKOA_WORKER_CONCURRENCY", "1")
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-c",
                 "import sys; from kernel.cli.main import main; sys.exit(main(['worker']))"],
                env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the worker consumes.

        :raises RuntimeError: when it exits or is not ready in time (with its log).
        """
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the test's task worker did not start:\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it (warm shutdown), then kill whatever is left of its group."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(STOP_GRACE)
