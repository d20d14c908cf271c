"""Running Celery workers and beat: ``kernkoa worker``, ``kernkoa beat``, and the
ones beside ``kernkoa serve``."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import typing as t

from ..app import default_app
from ..core.settings import Settings
from ..tasks.beat import run_beat
from ..tasks.celeryapp import embedded_root
from ..tasks.celeryapp import get_celery
from ..tasks.celeryapp import is_embedded
from ..tasks.claims import embedded_claims
from ..web.state import state_of

log = logging.getLogger("kernkoa.worker")

#: Linux ``prctl`` option: the signal a child gets when its parent dies.
_PR_SET_PDEATHSIG = 1

#: Seconds a stopping embedded worker gets before it is killed.
STOP_GRACE = 5.0


def _given(extra: t.Sequence[str], *options: str) -> bool:
    return any(arg.startswith(options) for arg in extra)


def node_name() -> str:
    """This worker's Celery node name: ``kernkoa-<pid>@<host>``.

    Celery's default, ``celery@<host>``, is the same for every worker of a
    host: two of them collide (remote control replies, monitoring, and the
    records of :mod:`kernel.tasks.leases`).
    """
    return f"kernkoa-{os.getpid()}@{socket.gethostname()}"


def worker_argv(settings: Settings, extra: t.Sequence[str]) -> list[str]:
    """Celery's ``worker`` command line: KernKoa's defaults, then ``extra``.

    Gossip and mingle are off: KernKoa keeps cancellations in the result store
    and liveness in :mod:`kernel.tasks.leases`, and Celery's gossip step fails on
    every reconnection to Redis.
    """
    argv = ["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    if settings.WORKER_CONCURRENCY and not _given(extra, "-c", "--concurrency"):
        argv.append(f"--concurrency={settings.WORKER_CONCURRENCY}")
    if not _given(extra, "-n", "--hostname"):
        argv.append(f"--hostname={node_name()}")
    return [*argv, *extra]


def prune_results(settings: Settings) -> int:
    """Delete embedded result files older than ``RESULT_EXPIRES``; return how many.

    Celery's file backend never expires them by itself (only ``celery beat``
    would); Redis expires its keys natively.
    """
    folder = embedded_root(settings) / "results"
    cutoff = time.time() - settings.RESULT_EXPIRES
    pruned = 0
    for entry in os.scandir(folder) if folder.is_dir() else ():
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                pruned += 1
        except FileNotFoundError:
            pass  # another worker pruned it first
    return pruned


def run_worker(extra: t.Sequence[str]) -> int:
    """Run a Celery worker of ``kernkoa.app`` in this process (``kernkoa worker``)."""
    app = default_app()
    settings = state_of(app).settings
    if is_embedded(settings):
        log.info("embedded broker in %s; pruned %d expired result file(s) "
                 "and %d expired idempotency key(s)", embedded_root(settings),
                 prune_results(settings), embedded_claims(settings).prune())
    get_celery(app).worker_main(worker_argv(settings, extra))
    return 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # The worker gets SIGQUIT (a cold shutdown) if the server dies, even by SIGKILL.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGQUIT))
    except (OSError, AttributeError):
        pass


def _start_child(command: str) -> subprocess.Popen[bytes]:
    """Start ``kernkoa <command>`` as a child of this process, in its process group."""
    argv = [sys.executable, "-c",
            f"import sys; from kernel.cli.main import main; sys.exit(main([{command!r}]))"]
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    process = subprocess.Popen(argv, preexec_fn=preexec)
    log.info("started kernkoa %s, pid %d", command, process.pid)
    return process


def start_embedded_worker() -> subprocess.Popen[bytes]:
    """Start ``kernkoa worker`` as a child of this process, in its process group."""
    return _start_child("worker")


def start_embedded_beat() -> subprocess.Popen[bytes]:
    """Start ``kernkoa beat`` as a child of this process, in its process group."""
    return _start_child("beat")


def run_beat_here(logfile: str | None = None) -> int:
    """Run Celery beat on the catalog's schedules in this process (``kernkoa beat``)."""
    run_beat(get_celery(default_app()), logfile)
    return 0


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Stop a worker started by :func:`start_embedded_worker` (cold shutdown)."""
    _stop_child(process, signal.SIGQUIT)


def stop_beat(process: subprocess.Popen[bytes]) -> None:
    """Stop a beat started by :func:`start_embedded_beat` (it releases its lock)."""
    _stop_child(process, signal.SIGTERM)


def _stop_child(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_GRACE)
