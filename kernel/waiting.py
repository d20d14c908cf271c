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
  :data:`RECHECK` seconds. Each thread keeps its pub/sub connection between
  waits, subscribed to nothing in between.
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


def _subscribers(backend: RedisBackend) -> threading.local:
    """Each thread's pub/sub connection of ``backend`` (attribute ``pubsub``).

    Kept between waits: opening one costs a connect and a handshake of several
    round trips, more than the rest of a wait. Each wait unsubscribes from its
    channel when it ends, so the connection listens to nothing in between.
    """
    return t.cast(threading.local,
                  backend.__dict__.setdefault("kernkoa_subscribers", threading.local()))


def _wait_on_redis(backend: RedisBackend, store: JobStore, task_id: str, deadline: float,
                   clock: t.Callable[[], float]) -> TaskRecord:
    local = _subscribers(backend)
    while True:
        kept = getattr(local, "pubsub", None)
        pubsub = local.pubsub = kept or backend.client.pubsub()
        try:
            return _wait_subscribed(backend, pubsub, store, task_id, deadline, clock)
        except BaseException as error:
            local.pubsub = None  # in an unknown state: the next wait opens a new one
            pubsub.close()
            # A kept connection may have died since the last wait (the server
            # restarted, an idle timeout): one more try, on a new connection.
            if kept is None or not isinstance(error, RedisConnectionError):
                raise


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
