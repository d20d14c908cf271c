"""The process's Prometheus metrics, counted across processes (``METRICS``).

``prometheus_client`` in multiprocess mode: every process writes its values
into files of its own under one folder (``VAR/metrics/web`` for the web
server, ``VAR/metrics/worker-<port>`` for a worker), and a scrape adds up the
files of every process that wrote there, live or gone. So each uWSGI process
and each prefork child is counted once, and a counter keeps the requests of a
process that was recycled.

The folder is emptied once per start of the server, never by a forked child:
:func:`enable` is told what identifies the start (the uWSGI master's pid, the
pid of ``kernkoa serve`` or of the worker) and empties the folder only when
that differs from the start it last saw, under a lock. A process that died
without saying so (SIGKILL, harakiri) still holds requests "in flight": each
scrape drops the live gauges of pids that no longer exist.

The mode is chosen by ``prometheus_client`` when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``: :func:`enable` sets it, then imports the
library. Metrics are process-wide, as the library's files are: the first
:func:`enable` of a process picks the folder, later ones get the same
:class:`Metrics`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sys
import threading
import typing as t
from pathlib import Path

from .errors import MetricsError
from .metrics_batch import RequestTally

if t.TYPE_CHECKING:
    from prometheus_client import Counter
    from prometheus_client import Gauge
    from prometheus_client import Histogram
    from prometheus_client.registry import Collector
    from prometheus_client.registry import CollectorRegistry

#: The variable ``prometheus_client`` reads its folder from.
FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: The route label of every URL the catalog did not resolve.
UNRESOLVED = "<unresolved>"

#: The method label of any HTTP method outside these (a client may send any word).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The ``method`` label of each known method: one dictionary lookup per request.
METHOD_LABELS = {method: method for method in KNOWN_METHODS}
OTHER_METHOD = "other"

#: Buckets of the request histogram, in seconds (prometheus_client's default).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0)
#: Buckets of the task histogram, in seconds: tasks run for minutes.
TASK_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

#: The file naming the start that last emptied a folder, and its lock (not ``*.db``).
START_FILE = "started"
LOCK_FILE = "lock"


class Metrics:
    """The metric families of this process, created by :func:`enable`."""

    def __init__(self, folder: Path) -> None:
        from prometheus_client import Counter
        from prometheus_client import Histogram

        #: Where this process writes its values.
        self.folder = folder
        self.http_requests: Counter = Counter(
            "kernkoa_http_requests_total", "HTTP requests answered, by route template.",
            ["route", "method", "status"], registry=None)
        self.http_duration: Histogram = Histogram(
            "kernkoa_http_request_duration_seconds", "Time to answer a request, by route.",
            ["route"], buckets=HTTP_BUCKETS, registry=None)
        self.controller_reloads: Counter = Counter(
            "kernkoa_controller_reloads_total",
            "Catalog files run again because they changed, by file under the catalog.",
            ["file"], registry=None)
        self.controller_load_failures: Counter = Counter(
            "kernkoa_controller_load_failures_total",
            "Catalog files that failed to load, by file under the catalog.",
            ["file"], registry=None)
        self.tasks_sent: Counter = Counter(
            "kernkoa_tasks_sent_total", "_celery calls sent to the broker, by route.",
            ["route"], registry=None)
        self.tasks_finished: Counter = Counter(
            "kernkoa_tasks_finished_total", "_celery calls ended on a worker, by route and state.",
            ["route", "state"], registry=None)
        self.task_duration: Histogram = Histogram(
            "kernkoa_task_duration_seconds", "Time a _celery call ran on a worker, by route.",
            ["route"], buckets=TASK_BUCKETS, registry=None)
        self._tally: RequestTally | None = None

    @functools.cached_property
    def http_in_flight(self) -> Gauge:
        """Requests being answered now: made on first use, so that only the web
        server's processes report one (a gauge without labels has a value at once)."""
        from prometheus_client import Gauge

        return Gauge("kernkoa_http_requests_in_flight", "Requests being answered now.",
                     registry=None, multiprocess_mode="livesum")

    def request_tally(self, interval: float) -> RequestTally:
        """This process's :class:`RequestTally` of the HTTP families, flushed every
        ``interval`` seconds; made by the first call, as the families are."""
        if self._tally is None:
            self._tally = RequestTally(self.http_requests, self.http_duration,
                                       self.http_in_flight, interval, method_label)
        return self._tally

    def flush(self) -> None:
        """Write this process's noted requests now (before a scrape)."""
        if self._tally is not None:
            self._tally.flush()

    def controller_loaded(self, file: str, reloaded: bool, failed: bool) -> None:
        """Count one load of a catalog file (a listener of the catalog's loader)."""
        if reloaded:
            self.controller_reloads.labels(file).inc()
        if failed:
            self.controller_load_failures.labels(file).inc()

    def registry(self, *extra: Collector) -> CollectorRegistry:
        """A registry reading every process's files here, then ``extra`` collectors."""
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(ProcessFilesCollector(self.folder))
        for collector in extra:
            registry.register(collector)
        return registry


class ProcessFilesCollector:
    """``prometheus_client``'s multiprocess collector, dropping the live gauges of
    processes that are gone first (``mark_process_dead``)."""

    def __init__(self, folder: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.folder = folder
        self._files = MultiProcessCollector(None, str(folder))

    def collect(self) -> t.Iterable[t.Any]:
        """The merged values of every process that wrote into the folder."""
        mark_dead_processes(self.folder)
        return self._files.collect()  # type: ignore[no-any-return]


def mark_dead_processes(folder: Path) -> list[int]:
    """Drop the live-gauge files of pids that no longer run; return those pids."""
    from prometheus_client.multiprocess import mark_process_dead

    dead = []
    for path in folder.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            mark_process_dead(int(pid), str(folder))
            dead.append(int(pid))
    return dead


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process now holds the pid
    return True


def empty_on_new_start(folder: Path, start: str) -> bool:
    """Empty ``folder`` of metric files unless ``start`` already did; return whether it did.

    Every process of one server start passes the same ``start``; the first one
    to get here empties the folder, the others find its mark and leave the
    files the first already writes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mark = folder / START_FILE
        with contextlib.suppress(FileNotFoundError):
            if mark.read_text() == start:
                return False
        for path in folder.glob("*.db"):
            path.unlink(missing_ok=True)
        mark.write_text(start)
        return True


_active: Metrics | None = None
_lock = threading.Lock()


def enable(folder: Path, start: str | None = None) -> Metrics:
    """Turn metrics on in this process, writing into ``folder``; the first call wins.

    :param start: what identifies this start of the server; the folder is
        emptied when it differs from the last start's (:func:`empty_on_new_start`).
        ``None``: never empty it here (the server's start empties it).
    :raises MetricsError: when ``prometheus_client`` was imported before, in
        single-process mode: its values would never reach the files.
    """
    global _active
    with _lock:
        if _active is not None:
            return _active
        if start is not None:
            empty_on_new_start(folder, start)
        folder.mkdir(parents=True, exist_ok=True)
        if "prometheus_client" not in sys.modules:
            os.environ[FOLDER_VARIABLE] = str(folder)
        from prometheus_client import values

        if not getattr(values.ValueClass, "_multiprocess", False):
            raise MetricsError(
                f"prometheus_client was imported before METRICS was enabled and without "
                f"{FOLDER_VARIABLE}: its values would stay in one process")
        _active = Metrics(Path(os.environ[FOLDER_VARIABLE]))
        return _active


def active() -> Metrics | None:
    """This process's :class:`Metrics`, or ``None`` while metrics are off."""
    return _active


def method_label(method: str) -> str:
    """The ``method`` label: the method, or ``other`` for a word no server knows."""
    return METHOD_LABELS.get(method, OTHER_METHOD)
