"""Requests counted in the process's memory, written to the metric files in batches.

In multiprocess mode every value ``prometheus_client`` writes takes the
library's lock, asks the system for the pid (to notice a fork) and writes the
process's memory-mapped file. A request counted the plain way makes five such
writes (in flight up and down, its counter, its histogram's sum and bucket):
16-25 % of a controller GET. Here a request only appends two notes to a list
of the process (``list.append`` is atomic): one when it starts, one with its
answer when it ends. A daemon thread of the process takes the list every
``interval`` seconds, counts its notes by label and writes each changed value
once; the in-flight gauge is the requests started minus those answered.

What Prometheus reads is exact but late by at most ``interval`` (plus the time
of one flush): nothing is dropped, and nothing waits for a next request, an
idle process is flushed by its thread. The in-flight gauge is the number the
last flush saw. The process serving a scrape flushes first, so its own counts
are current. At exit (``atexit``: a uWSGI worker's graceful reload, the end
of ``kernkoa serve``) the rest is flushed; a process killed outright, or a
uWSGI worker stopped with its whole server, loses at most its last
``interval`` of counts, as it would lose the request it was serving.

A forked child starts empty (``os.register_at_fork``): what the parent noted
is the parent's to write. uWSGI forks its workers without Python's fork hooks,
which is safe only because the master serves no request before it forks: the
tally it built, if any, is still empty and has no thread.

``interval = 0`` writes every request at once, as the plain way does: for a
process whose threads cannot run between requests (uWSGI without
``enable-threads``).
"""

from __future__ import annotations

import atexit
import bisect
import logging
import math
import os
import threading
import time
import typing as t
from collections import Counter
from itertools import repeat
from operator import itemgetter

if t.TYPE_CHECKING:
    from prometheus_client import Counter as CounterMetric
    from prometheus_client import Gauge
    from prometheus_client import Histogram

log = logging.getLogger(__name__)

#: The labels a request is counted under: route, method, status.
Labels = tuple[str, str, str]
#: What a request notes when it is answered: its route label, its method as
#: sent, its status line, its seconds (method and status become labels when
#: written, in the flushing thread).
Answer = tuple[str, str | None, str, float]

#: What a request notes when it starts.
STARTED = None

_ROUTE_METHOD_STATUS = itemgetter(0, 1, 2)
_ROUTE = itemgetter(0)
_SECONDS = itemgetter(3)


class RequestTally:
    """The requests of this process, noted per request and written in batches.

    :param requests: the counter by ``route, method, status``.
    :param durations: the histogram by ``route``.
    :param in_flight: the gauge of requests being answered (``livesum``).
    :param interval: the most seconds between two flushes; ``0``: flush at once.
    :param method_label: the ``method`` label of a method as a client sent it.
    """

    def __init__(self, requests: CounterMetric, durations: Histogram, in_flight: Gauge,
                 interval: float, method_label: t.Callable[[str], str]) -> None:
        self.requests = requests
        self.durations = durations
        self.in_flight = in_flight
        self.method_label = method_label
        # Anything but a finite positive number (0, nan, inf): write at once.
        self.interval = interval if 0 < interval < math.inf else 0.0
        # The histogram's upper bounds, +Inf last, as its buckets are ordered.
        self._bounds: list[float] = list(durations._upper_bounds)
        self._counters: dict[Labels, t.Any] = {}
        self._timers: dict[str, t.Any] = {}
        self._notes: list[Answer | None] = []
        #: Notes :data:`STARTED` when a request starts, its :data:`Answer` when it
        #: ends: one ``list.append``, atomic, with no lock (the list is never
        #: replaced, so this stays the process's).
        self.note = self._notes.append
        self._forget()
        os.register_at_fork(after_in_child=self._forget)
        atexit.register(self.flush)

    def _forget(self) -> None:
        """Start empty: in a new tally, or in a forked child (the parent writes its own)."""
        self._notes.clear()  # in place: the middleware holds its append
        # Requests started minus requests answered, up to the last flush.
        self._in_flight = 0
        self._written_in_flight = 0
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        #: Whether this process's thread flushes (else the next request starts it).
        self.flushing = False

    def start_flushing(self) -> None:
        """Start this process's flushing thread (on its first request: a forked
        child starts its own); with ``interval = 0`` there is none, and every
        request flushes instead."""
        if not self.interval:
            self.flush()
            return
        with self._start_lock:
            if not self.flushing:
                thread = threading.Thread(target=self._flush_every_interval,
                                          name="kernkoa-metrics", daemon=True)
                thread.start()
                self.flushing = True

    def _flush_every_interval(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # a full disk must not stop the next flushes
                log.exception("could not write the request metrics")

    def flush(self) -> None:
        """Write what was noted since the last flush: one write per changed value."""
        with self._flush_lock:
            notes = self._notes
            taken = notes[:]
            # Requests append at the end meanwhile: only the copied notes go
            # (both steps are atomic, as the appends are).
            del notes[:len(taken)]
            answers: list[Answer] = list(filter(None, taken))
            self._in_flight += len(taken) - 2 * len(answers)
            if answers:
                self._write_counts(answers)
                self._write_timings(answers)
            if self._in_flight != self._written_in_flight:
                self.in_flight.set(self._in_flight)
                self._written_in_flight = self._in_flight

    def _write_counts(self, answers: list[Answer]) -> None:
        # Counted by what the requests sent (in C), then by label: few keys.
        counts: dict[Labels, int] = {}
        for (route, method, status), count in Counter(
                map(_ROUTE_METHOD_STATUS, answers)).items():
            key = (route, self.method_label(method or ""), status[:3])
            counts[key] = counts.get(key, 0) + count
        for key, count in counts.items():
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = self.requests.labels(*key)
            counter.inc(count)

    def _write_timings(self, answers: list[Answer]) -> None:
        routes = list(map(_ROUTE, answers))
        seconds = list(map(_SECONDS, answers))
        sums: dict[str, float] = {}
        for route, spent in zip(routes, seconds, strict=True):
            sums[route] = sums.get(route, 0.0) + spent
        # A histogram has no public way to add many observations at once; its
        # values are what ``observe`` writes, once per bucket instead of once per
        # request (tests/core/test_metrics_batch.py holds the two equal).
        for route, spent in sums.items():
            self._timer(route)._sum.inc(spent)
        buckets = Counter(zip(routes, map(bisect.bisect_left, repeat(self._bounds), seconds),
                              strict=True))
        for (route, bucket), count in buckets.items():
            self._timer(route)._buckets[bucket].inc(count)

    def _timer(self, route: str) -> t.Any:
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self.durations.labels(route)
        return timer
