"""Requests counted in the process's memory, written to the metric files in batches.

In multiprocess mode every value ``prometheus_client`` writes takes the
library's lock, asks the system for the pid (to notice a fork) and writes the
process's memory-mapped file. A request counted the plain way makes five such
writes (in flight up and down, its counter, its histogram's sum and bucket):
16-25 % of a controller GET. Here a request only notes itself in the set of
requests in flight and appends its answer to a queue (``set`` and ``deque``
operations are atomic, so no lock either); a daemon thread of the process adds
the answers up every ``interval`` seconds and writes each changed value once.

What Prometheus reads is exact but late by at most ``interval`` (plus the time
of one flush): nothing is dropped, and nothing waits for a next request, an
idle process is flushed by its thread. The in-flight gauge is the number the
last flush saw. The process serving a scrape flushes first, so its own counts
are current. At exit (``atexit``: a graceful stop, a uWSGI worker's reload)
the rest is flushed; a process killed outright loses at most its last
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
import collections
import logging
import math
import os
import threading
import time
import typing as t

if t.TYPE_CHECKING:
    from prometheus_client import Counter
    from prometheus_client import Gauge
    from prometheus_client import Histogram

log = logging.getLogger(__name__)

#: One answered request: route, method and status labels, seconds taken.
Answer = tuple[str, str, str, float]


class RequestTally:
    """The requests of this process, noted per request and written in batches.

    :param requests: the counter by ``route, method, status``.
    :param durations: the histogram by ``route``.
    :param in_flight: the gauge of requests being answered (``livesum``).
    :param interval: the most seconds between two flushes; ``0``: flush at once.
    """

    def __init__(self, requests: Counter, durations: Histogram, in_flight: Gauge,
                 interval: float) -> None:
        self.requests = requests
        self.durations = durations
        self.in_flight = in_flight
        # Anything but a finite positive number (0, nan, inf): write at once.
        self.interval = interval if 0 < interval < math.inf else 0.0
        # The histogram's upper bounds, +Inf last, as its buckets are ordered.
        self._bounds: list[float] = list(durations._upper_bounds)
        self._counters: dict[tuple[str, str, str], t.Any] = {}
        self._timers: dict[str, t.Any] = {}
        self._forget()
        os.register_at_fork(after_in_child=self._forget)
        atexit.register(self.flush)

    def _forget(self) -> None:
        """Start empty: in a new tally, or in a forked child (the parent writes its own)."""
        self._answers: collections.deque[Answer] = collections.deque()
        self._running: set[int] = set()
        self._written_in_flight = 0
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def started(self, request: int) -> None:
        """Note ``request`` (any number unique while it runs) as in flight."""
        self._running.add(request)
        if self._flusher is None:
            self._start_flusher()

    def finished(self, request: int, route: str, method: str, status: str,
                 seconds: float) -> None:
        """Note the answer to ``request``, no longer in flight."""
        self._answers.append((route, method, status, seconds))
        self._running.discard(request)
        if not self.interval:
            self.flush()

    def _start_flusher(self) -> None:
        """Start this process's flusher, on its first request; with ``interval = 0``
        there is none, and every request flushes (its start too)."""
        if not self.interval:
            self.flush()
            return
        with self._start_lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_every_interval,
                                                 name="kernkoa-metrics", daemon=True)
                self._flusher.start()

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
            answers = self._answers
            counts: dict[tuple[str, str, str], int] = {}
            buckets: dict[str, list[int]] = {}
            sums: dict[str, float] = {}
            # Only this drains the deque, under the lock; requests append meanwhile.
            for _ in range(len(answers)):
                route, method, status, seconds = answers.popleft()
                key = (route, method, status)
                counts[key] = counts.get(key, 0) + 1
                found = buckets.get(route)
                if found is None:
                    found = buckets[route] = [0] * len(self._bounds)
                found[bisect.bisect_left(self._bounds, seconds)] += 1
                sums[route] = sums.get(route, 0.0) + seconds
            for key, count in counts.items():
                self._counter(key).inc(count)
            for route, counted in buckets.items():
                self._write_timings(route, counted, sums[route])
            in_flight = len(self._running)
            if in_flight != self._written_in_flight:
                self.in_flight.set(in_flight)
                self._written_in_flight = in_flight

    def _counter(self, key: tuple[str, str, str]) -> t.Any:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(*key)
        return counter

    def _write_timings(self, route: str, buckets: list[int], seconds: float) -> None:
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self.durations.labels(route)
        # A histogram has no public way to add many observations at once; its
        # values are what ``observe`` writes, once per bucket instead of once per
        # request (tests/core/test_metrics_batch.py holds the two equal).
        timer._sum.inc(seconds)
        for index, count in enumerate(buckets):
            if count:
                timer._buckets[index].inc(count)
