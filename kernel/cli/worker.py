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
from ..core.errors import MetricsError
from ..core.metrics import enable
from ..core.settings import Settings
from ..tasks.beat import run_beat
from ..tasks.celeryapp import embedded_root
from ..tasks.celeryapp import get_celery
from ..tasks.celeryapp import is_embedded
from ..tasks.claims import embedded_claims
from ..tasks.metrics import serve_metrics
from ..tasks.metrics import watch_worker
from ..tasks.metrics import worker_folder
from ..web.metrics import watch_loader
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


def metrics_options(extra: t.Sequence[str], settings: Settings
                    ) -> tuple[str, int | None, list[str]]:
    """Take ``--metrics-port N`` and ``--metrics-host H`` (or ``=``-joined) out of
    the worker's arguments: the host, the port (``None``: no metrics), the rest.
    Either defaults to its setting (``WORKER_METRICS_PORT``, ``WORKER_METRICS_HOST``).

    :raises MetricsError: for a value that is missing or no port.
    """
    found = {"--metrics-host": settings.WORKER_METRICS_HOST,
             "--metrics-port": str(settings.WORKER_METRICS_PORT or "")}
    rest: list[str] = []
    args = iter(extra)
    for arg in args:
        name, joined, value = arg.partition("=")
        if name not in found:
            rest.append(arg)
            continue
        value = value if joined else next(args, "")
        if not value or value.startswith("-"):
            raise MetricsError(f"{name} needs a value")
        found[name] = value
    port = found["--metrics-port"]
    if not port:
        return found["--metrics-host"], None, rest
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsError(f"--metrics-port: {port!r} is not a port number")
    return found["--metrics-host"], int(port), rest


def run_worker(extra: t.Sequence[str]) -> int:
    """Run a Celery worker of ``kernkoa.app`` in this process (``kernkoa worker``).

    With ``--metrics-port`` it counts the tasks it runs, every pool process
    included, and serves them there; the folder of its counts is emptied first.
    """
    try:
        given = Settings.load()
        host, port, extra = metrics_options(extra, given)
        metrics = None
        if port is not None:
            # Before the app: it must not pick the web server's folder.
            metrics = enable(worker_folder(given, port), start=f"worker-{os.getpid()}")
            serve_metrics(metrics, host, port)
    except MetricsError as error:
        print(f"kernkoa worker: {error}", file=sys.stderr)
        return 2
    # The port decides what a worker counts; METRICS is the web server's (its
    # app here must not count into the web server's folder).
    os.environ["KERNKOA_METRICS"] = "false"
    app = default_app()
    settings = state_of(app).settings
    if metrics is not None:
        watch_loader(state_of(app).catalog.loader, metrics)
        watch_worker(app, metrics)
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
