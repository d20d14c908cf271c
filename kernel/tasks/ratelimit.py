"""Rate limits per route, on the worker: ``@task_options(rate_limit="10/s")``.

Celery limits the rate of a task *name*, and every ``_celery`` method runs as
the one task ``kernkoa.run``. So the generic task's worker strategy (Celery's
own, :func:`celery.worker.strategy.default`) is wrapped: a message whose
``kernkoa_rate_limit`` header (set by :mod:`kernel.tasks.enqueue` from the
route's options) names a limit goes through a token bucket of its route
(kombu's :class:`~kombu.utils.limits.TokenBucket`, as Celery's own limits)
before Celery's strategy sees it; other messages go straight on.

A held message works as Celery's ETA tasks do: it raises the consumer's
prefetch by one while it waits, so the worker keeps taking other routes'
messages instead of idling behind a full bucket (up to
:attr:`RouteLimiter.most_raised` held messages: beyond, a held message takes a
place in the prefetch, as Celery's own rate limits do, so that a backlog of a
slow route stays in the broker instead of in one worker's memory), and it keeps its lease
(:func:`kernel.tasks.leases.held_tags` renews :data:`HELD` too), so no sweep
gives it to another worker while it waits. It is unacknowledged all along: a
worker that stops hands it back like any other message.

The limit is per worker (its process group), like Celery's: N workers start
up to N times the rate.
"""

from __future__ import annotations

import math
import typing as t
from collections import deque

from celery.utils.time import rate
from celery.worker.strategy import default
from kombu.utils import limits

#: The message header that carries a route's rate limit.
RATE_LIMIT_HEADER = "kernkoa_rate_limit"

#: Delivery tags of the messages this worker holds for a rate limit.
HELD: set[str] = set()

#: kombu's token bucket (untyped): ``can_consume(n)``, ``expected_time(n)``, ``fill_rate``.
TokenBucket = t.cast(t.Callable[..., t.Any], limits.TokenBucket)

#: A message as the consumer hands it to a strategy.
Delivery = tuple[t.Any, t.Any, t.Any, t.Any, t.Any]


def tasks_per_second(limit: t.Any) -> float:
    """The rate of a ``rate_limit`` in Celery's form (``"10/s"``, ``"5/m"``, ``"100/h"``,
    or a number per second).

    :raises ValueError: unless it is such a limit, above zero and finite (a bool, bytes,
        ``"nan/s"`` or ``"inf/s"`` are no rate: a token bucket filled at NaN never
        schedules its next release).
    """
    if isinstance(limit, bool) or not isinstance(limit, (str, int, float)):
        raise ValueError(f"not a rate limit: {limit!r}")
    try:
        per_second = float(rate(limit))
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"not a rate limit: {limit!r}") from None
    if not (math.isfinite(per_second) and per_second > 0):
        raise ValueError(f"not a rate limit: {limit!r}")
    return per_second


class RouteLimiter:
    """The token buckets of one consumer, one per rate-limited route.

    :param handle: Celery's strategy for the generic task.
    :param consumer: the worker's consumer (its timer and prefetch).
    """

    #: Most held messages that raise the prefetch at once. Without a bound, a worker
    #: takes a slow route's whole backlog (1,000 queued ``1/m`` tasks: 999 messages
    #: held by one worker, none left for the others), and a backlog larger than its
    #: memory kills it, then the next worker that takes it back.
    most_raised = 1000

    def __init__(self, handle: t.Callable[..., t.Any], consumer: t.Any) -> None:
        self.handle = handle
        self.consumer = consumer
        self.buckets: dict[str, t.Any] = {}
        self.waiting: dict[str, deque[tuple[Delivery, bool]]] = {}
        #: How many held messages raise the prefetch now.
        self.raised = 0

    def bucket(self, route: str, limit: str) -> t.Any:
        """The bucket of ``route``, refilled at ``limit`` (the latest one a message said)."""
        per_second = tasks_per_second(limit)
        bucket = self.buckets.get(route)
        if bucket is None:
            bucket = self.buckets[route] = TokenBucket(per_second, capacity=1)
            self.waiting[route] = deque()
        else:
            bucket.fill_rate = per_second
        return bucket

    def __call__(self, message: t.Any, body: t.Any, ack: t.Any, reject: t.Any,
                 callbacks: t.Any, **kwargs: t.Any) -> t.Any:
        """Pass the message on now, or hold it until its route's bucket has a token."""
        headers = message.headers or {}
        limit, route = headers.get(RATE_LIMIT_HEADER), headers.get("shadow")
        try:
            bucket = self.bucket(route, limit) if limit and isinstance(route, str) else None
        except ValueError:
            bucket = None  # a malformed header limits nothing
        if bucket is None or not isinstance(route, str):
            return self.handle(message, body, ack, reject, callbacks, **kwargs)
        waiting = self.waiting[route]
        if not waiting and bucket.can_consume(1):
            return self.handle(message, body, ack, reject, callbacks, **kwargs)
        raises = self.raised < self.most_raised
        waiting.append(((message, body, ack, reject, callbacks), raises))
        HELD.add(message.delivery_tag)
        if raises:
            self.raised += 1
            self.consumer.qos.increment_eventually()
        if len(waiting) == 1:
            self._later(route, bucket)
        return None

    def _later(self, route: str, bucket: t.Any) -> None:
        self.consumer.timer.call_after(bucket.expected_time(1), self.release, (route,))

    def release(self, route: str) -> None:
        """Pass on the held messages of ``route`` its bucket has tokens for."""
        bucket, waiting = self.buckets[route], self.waiting[route]
        while waiting:
            if not bucket.can_consume(1):
                self._later(route, bucket)
                return
            (message, body, ack, reject, callbacks), raised = waiting.popleft()
            HELD.discard(message.delivery_tag)
            if raised:
                self.raised -= 1
                self.consumer.qos.decrement_eventually()
            self.handle(message, body, ack, reject, callbacks)


def route_strategy(task: t.Any, app: t.Any, consumer: t.Any,
                   **kwargs: t.Any) -> t.Callable[..., t.Any]:
    """The worker strategy of the generic task (its ``Strategy``): Celery's, limited per
    route unless Celery's ``worker_disable_rate_limits`` turns rate limits off."""
    handle: t.Callable[..., t.Any] = default(task, app, consumer, **kwargs)
    if consumer.disable_rate_limits:
        return handle
    return RouteLimiter(handle, consumer)
