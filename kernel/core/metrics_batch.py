"""Requests counted in the process's memory, written to the metric files in batches.

In multiprocess mode every value ``prometheus_client`` writes takes the
library's lock, asks the system for the pid (to notice a fork) and writes the
process's memory-mapped file. A request counted the plain way makes five such
writes (in flight up and down, its counter, its histogram's sum and bucket):
16-25 % of a controller GET. Here a request adds itself to the set of requests
in flight and takes itself out (``set`` operations are atomic), then adds its
answer to plain dictionaries under a lock of this tally; a daemon thread of the
process takes the dictionaries every ``interval`` seconds and writes each
changed value once.

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

if t.TYPE_CHECKING:
    from prometheus_client import Counter
    from prometheus_client import Gauge
    from prometheus_client import Histogram

log = logging.getLogger(__name__)

#: The labels a request is counted under: route, method, status.
Labels = tuple[str, str, str]


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
        self._counters: dict[Labels, t.Any] = {}
        self._timers: dict[str, t.Any] = {}
        #: Numbers naming the requests in flight (unique while they run); a
        #: request adds and discards its own (``set`` operations are atomic).
        self.running: set[int] = set()
        self._forget()
        os.register_at_fork(after_in_child=self._forget)
        atexit.register(self.flush)

    def _forget(self) -> None:
        """Start empty: in a new tally, or in a forked child (the parent writes its own)."""
        # Requests noted since the last flush, by labels; by route: the sum of
        # their seconds, then their count in each bucket.
        self._counts: dict[Labels, int] = {}
        self._timings: dict[str, list[float]] = {}
        self._noting = threading.Lock()
        self.running.clear()  # in place: the middleware holds this set
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

    def note(self, route: str, method: str, status: str, seconds: float) -> None:
        """Note one answered request (its caller took it out of :attr:`running`)."""
        key = (route, method, status)
        bucket = bisect.bisect_left(self._bounds, seconds) + 1
        with self._noting:
            counts = self._counts
            counts[key] = counts.get(key, 0) + 1
            timing = self._timings.get(route)
            if timing is None:
                timing = self._timings[route] = [0.0] * (len(self._bounds) + 1)
            timing[0] += seconds
            timing[bucket] += 1
        if not self.interval:
            self.flush()

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
            with self._noting:
                counts, timings = self._counts, self._timings
                self._counts, self._timings = {}, {}
            for key, count in counts.items():
                self._counter(key).inc(count)
            for route, timing in timings.items():
                self._write_timings(route, timing)
            in_flight = len(self.running)
            if in_flight != self._written_in_flight:
                self.in_flight.set(in_flight)
                self._written_in_flight = in_flight

    def _counter(self, key: Labels) -> t.Any:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(*key)
        return counter

    def _write_timings(self, route: str, timing: list[float]) -> None:
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self.durations.labels(route)
        # A histogram has no public way to add many observations at once; its
        # values are what ``observe`` writes, once per bucket instead of once per
        # request (tests/core/test_metrics_batch.py holds the two equal).
        timer._sum.inc(timing[0])
        for index, count in enumerate(timing[1:]):
            if count:
                timer._buckets[index].inc(count)
