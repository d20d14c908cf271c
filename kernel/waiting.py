"""The long poll of ``GET /status/<id>?wait=<seconds>``.

A client that wants a task's result as soon as it is there asks once with
``?wait=``: the answer comes when the task reaches a final state (SUCCESS,
FAILURE, REVOKED) or when the wait is over, whichever is first, and is the
status body of that moment (so a timeout answers ``PENDING`` or the latest
progress, never an error). Polling over HTTP every few milliseconds costs a
request per poll and still answers late by half a period on average.

- On Redis the web process subscribes, for the length of the wait only, to the
  channel on which Celery's result backend announces each state it stores, and
  reads the task's record again when a final state is announced. KernKoa's own
  cancellation record announces nothing, so the record is also read every
  :data:`RECHECK` seconds. Pub/sub connections are kept between waits
  (:class:`Subscribers`), subscribed to nothing in between.
- On any other result store (the embedded file store) the record is read every
  :data:`POLL` seconds.

A waiting request holds a server worker (a whole uWSGI process) for as long as
it waits, so the wait is capped by the ``STATUS_WAIT_MAX`` setting, which must
stay below uWSGI's ``harakiri``.
"""

from __future__ import annotations

import math
import threading
import time
import typing as t
import weakref

from celery import Celery
from celery.backends.redis import RedisBackend
from redis.exceptions import ConnectionError as RedisConnectionError

from .errors import ParameterError
from .events import FINAL_STATES
from .jobs import celery_and_breaker
from .jobstore import JobStore
from .jobstore import TaskRecord

#: Seconds between two reads of the record on Redis, where a stored state
#: wakes the wait at once and only a cancellation goes unannounced.
RECHECK = 0.25

#: Seconds between two reads of the record on other result stores.
POLL = 0.01

_making = threading.Lock()


def wait_seconds(raw: str, limit: float) -> float:
    """The ``wait`` query field as seconds, capped at ``limit``.

    :raises ParameterError: (422) when it is not a finite number of seconds
        of at least 0.
    """
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ParameterError([{"name": "wait", "source": "query",
                               "message": "expected a number of seconds, 0 or more"}])
    return min(seconds, max(limit, 0.0))


def is_settled(record: TaskRecord) -> bool:
    """Whether waiting longer could not change what ``/status`` answers for ``record``."""
    if record.revoked:
        return True
    if record.meta is None:
        return record.issued is None  # never issued, or expired
    return record.meta.get("status") in FINAL_STATES


def wait_for_record(celery: Celery, task_id: str, timeout: float,
                    clock: t.Callable[[], float] = time.monotonic) -> TaskRecord:
    """``task_id``'s record once it is settled, or after ``timeout`` seconds."""
    store = JobStore(celery)
    deadline = clock() + timeout
    if isinstance(celery.backend, RedisBackend):
        return _wait_on_redis(celery.backend, store, task_id, deadline, clock)
    record = store.read(task_id)
    while not is_settled(record) and (remaining := deadline - clock()) > 0:
        time.sleep(min(remaining, POLL))
        record = store.read(task_id)
    return record


class Subscribers:
    """The idle pub/sub connections of one result backend, shared by every thread.

    Kept between waits: subscribing on a new connection costs a connect and
    redis-py's handshake, more than the rest of a wait. Each wait takes one
    (or opens one), unsubscribes when it ends and gives it back, so an idle
    connection listens to nothing; there are never more than the most waits
    that ran at once. They are closed with the backend.
    """

    def __init__(self, client: t.Any) -> None:
        self._client = client
        self._idle: list[t.Any] = []

    def take(self) -> tuple[t.Any, bool]:
        """An idle connection, or a new one; and whether it was kept from before."""
        try:
            return self._idle.pop(), True
        except IndexError:  # list.pop and append are atomic: no lock needed
            return self._client.pubsub(), False

    def give_back(self, pubsub: t.Any) -> None:
        """Keep ``pubsub`` for the next wait."""
        self._idle.append(pubsub)

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()


def subscribers_of(backend: RedisBackend) -> Subscribers:
    """The :class:`Subscribers` of ``backend``, made on first use."""
    found = backend.__dict__.get("kernkoa_subscribers")
    if found is None:
        with _making:
            found = backend.__dict__.get("kernkoa_subscribers")
            if found is None:
                found = backend.__dict__["kernkoa_subscribers"] = Subscribers(backend.client)
                weakref.finalize(backend, found.close)
    return t.cast(Subscribers, found)


def _wait_on_redis(backend: RedisBackend, store: JobStore, task_id: str, deadline: float,
                   clock: t.Callable[[], float]) -> TaskRecord:
    subscribers = subscribers_of(backend)
    while True:
        pubsub, kept = subscribers.take()
        try:
            record = _wait_subscribed(backend, pubsub, store, task_id, deadline, clock)
        except BaseException as error:
            pubsub.close()  # in an unknown state
            # A kept connection may have died since its last wait (the server
            # restarted, an idle timeout): try the next, or a new one.
            if kept and isinstance(error, RedisConnectionError):
                continue
            raise
        subscribers.give_back(pubsub)
        return record


def _wait_subscribed(backend: RedisBackend, pubsub: t.Any, store: JobStore, task_id: str,
                     deadline: float, clock: t.Callable[[], float]) -> TaskRecord:
    channel = backend.get_key_for_task(task_id)
    pubsub.subscribe(channel)
    # Read the record only once the subscription stands, so a state
    # stored in between is either in the record or announced to us. What
    # else arrives is left over from an earlier wait on this connection.
    while (remaining := deadline - clock()) > 0:
        message = pubsub.get_message(timeout=remaining)
        if _is(message, "subscribe", channel):
            break
    record = store.read(task_id)
    recheck = clock() + RECHECK
    while not is_settled(record) and (remaining := deadline - clock()) > 0:
        message = pubsub.get_message(timeout=min(remaining, max(recheck - clock(), 0.0)))
        final = _is(message, "message", channel) and _announces_final(backend, message)
        if final or clock() >= recheck:
            record = store.read(task_id)
            recheck = clock() + RECHECK
    pubsub.unsubscribe(channel)  # its confirmation is skipped by the next wait
    return record


def _is(message: dict[str, t.Any] | None, kind: str, channel: bytes) -> bool:
    return message is not None and message["type"] == kind and message["channel"] == channel


def _announces_final(backend: RedisBackend, message: dict[str, t.Any]) -> bool:
    # A STARTED or progress announcement cannot settle the task: no read for it.
    try:
        meta = backend.decode(message["data"])
    except Exception:  # not Celery's: read the record to be sure
        return True
    return not isinstance(meta, dict) or meta.get("status") in FINAL_STATES


def wait_for_task(task_id: str, timeout: float) -> TaskRecord:
    """:func:`wait_for_record` with the current app's Celery app and circuit breaker.

    :raises BrokerUnavailable: when the result store is unreachable.
    """
    celery, breaker = celery_and_breaker()
    return t.cast(TaskRecord, breaker.call(lambda: wait_for_record(celery, task_id, timeout)))
