"""The long poll of ``GET /status/<id>?wait=<seconds>``.

A client that wants a task's result as soon as it is there asks once with
``?wait=``: the answer comes when the task reaches a final state (SUCCESS,
FAILURE, REVOKED) or when the wait is over, whichever is first, and is the
status body of that moment (so a timeout answers ``PENDING`` or the latest
progress, never an error). Polling over HTTP every few milliseconds costs a
request per poll and still answers late by half a period on average.

- On Redis the web process subscribes, for the length of the wait only, to the
  channel on which Celery's result backend announces each state it stores, and
  reads the task's record again when a final state is announced. A
  cancellation is announced too (it is Celery's ``REVOKED`` state, stored by
  :mod:`kernel.tasks.backends`), except that of an old-form id, a record of its
  own that announces nothing: the record is also read every :data:`RECHECK`
  seconds. Pub/sub connections are kept between waits
  (:class:`Subscribers`), subscribed to nothing in between.
- On any other result store (the embedded file store) the record is read every
  :data:`POLL` seconds.

A trigger sent with ``Prefer: wait=<seconds>`` (RFC 7240) waits the same
way: it answers 200 with the task's status body when the task is done by then,
else the usual 202.

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
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError

from ..core.errors import ParameterError
from ..web.state import state_of
from .enqueue import celery_and_breaker
from .events import FINAL_STATES
from .store import JobStore
from .store import TaskRecord

#: Seconds between two reads of the record on Redis, where a stored state
#: wakes the wait at once and only an old-form id's cancellation goes unannounced.
RECHECK = 0.25

#: Seconds between two reads of the record on other result stores.
POLL = 0.01

#: Largest wait a ``Prefer`` header is read as (2**31 seconds, as HTTP caches
#: read an overlong delta-seconds value).
DELTA_SECONDS_MAX = 2**31

_making = threading.Lock()


def wait_seconds(raw: str) -> float:
    """The ``wait`` query field as seconds.

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
    return seconds


def preferred_wait(prefer: t.Iterable[str]) -> int | None:
    """The ``wait`` preference of ``Prefer`` headers (RFC 7240), in seconds.

    ``Prefer: respond-async, wait=10`` asks the server to answer within 10
    seconds, with the result if it has one by then. The first ``wait`` counts;
    one that is not whole seconds is ignored, as RFC 7240 lets a server ignore
    any preference. A number too long to read is taken as :data:`DELTA_SECONDS_MAX`,
    as HTTP caching reads such delta-seconds (RFC 9111, section 1.2.2): it asks
    for a long wait, which ``STATUS_WAIT_MAX`` then cuts.
    """
    for header in prefer:
        for preference in header.split(","):
            name, _, value = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() == "wait":
                value = value.strip().strip('"')
                if not (value.isascii() and value.isdigit()):
                    return None
                digits = value.lstrip("0")
                if len(digits) > len(str(DELTA_SECONDS_MAX)):
                    return DELTA_SECONDS_MAX  # never parsed: int() of 5,000 digits raises
                return min(int(digits or "0"), DELTA_SECONDS_MAX)
    return None


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
        return _wait_on_redis(celery, store, task_id, deadline, clock)
    record = store.read(task_id)
    while not is_settled(record) and (remaining := deadline - clock()) > 0:
        time.sleep(min(remaining, POLL))
        record = store.read(task_id)
    return record


class Subscribers:
    """The idle pub/sub connections to one Celery app's result store.

    Kept between waits: subscribing on a new connection costs a connect and
    redis-py's handshake, more than the rest of a wait. Each wait takes one
    (or opens one), unsubscribes when it ends and gives it back, so an idle
    connection listens to nothing; there are never more than the most waits
    that ran at once. They belong to the Celery app, not to its result
    backend, which Celery makes anew for each thread, and are closed with it.
    """

    def __init__(self) -> None:
        self._idle: list[t.Any] = []

    def take(self, client: t.Any) -> tuple[t.Any, bool]:
        """An idle connection, or a new one of ``client``; and whether it was kept."""
        try:
            return self._idle.pop(), True
        except IndexError:  # list.pop and append are atomic: no lock needed
            return client.pubsub(), False

    def give_back(self, pubsub: t.Any) -> None:
        """Keep ``pubsub`` for the next wait."""
        self._idle.append(pubsub)

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()


def subscribers_of(celery: Celery) -> Subscribers:
    """The :class:`Subscribers` of ``celery``, made on first use."""
    found = celery.__dict__.get("kernkoa_subscribers")
    if found is None:
        with _making:
            found = celery.__dict__.get("kernkoa_subscribers")
            if found is None:
                found = celery.__dict__["kernkoa_subscribers"] = Subscribers()
                weakref.finalize(celery, found.close)
    return t.cast(Subscribers, found)


def _wait_on_redis(celery: Celery, store: JobStore, task_id: str, deadline: float,
                   clock: t.Callable[[], float]) -> TaskRecord:
    backend = t.cast(RedisBackend, celery.backend)
    channel = backend.get_key_for_task(task_id)
    subscribers = subscribers_of(celery)
    while True:
        pubsub, kept = subscribers.take(backend.client)
        try:
            confirmed = _subscribe(pubsub, channel, deadline, clock)
            break
        except BaseException as error:
            pubsub.close()
            # A kept connection may have died since its last wait (the server
            # restarted, an idle timeout): the next one, or a new one.
            if not (kept and isinstance(error, RedisConnectionError)):
                raise
    try:
        record = _wait_subscribed(backend, pubsub, store, task_id, channel, deadline, clock)
        pubsub.unsubscribe(channel)  # its confirmation is skipped by the next wait
    except BaseException:
        pubsub.close()  # in an unknown state
        raise
    if confirmed:
        subscribers.give_back(pubsub)
    else:
        # Its own confirmation is still on the way, and the next wait on the
        # same task would take it for the confirmation of its own subscription.
        pubsub.close()
    return record


def _subscribe(pubsub: t.Any, channel: bytes, deadline: float,
               clock: t.Callable[[], float]) -> bool:
    """Subscribe to ``channel``; whether Redis confirmed it before ``deadline``.

    What else arrives first is left over from an earlier wait on this connection.
    """
    pubsub.subscribe(channel)
    while (remaining := deadline - clock()) > 0:
        if _is(pubsub.get_message(timeout=remaining), "subscribe", channel):
            return True
    return False


def _wait_subscribed(backend: RedisBackend, pubsub: t.Any, store: JobStore, task_id: str,
                     channel: bytes, deadline: float,
                     clock: t.Callable[[], float]) -> TaskRecord:
    # Read only once the subscription stands, so a state stored in between is
    # either in the record or announced to us.
    record = store.read(task_id)
    recheck = clock() + RECHECK
    while not is_settled(record) and (remaining := deadline - clock()) > 0:
        message = pubsub.get_message(timeout=min(remaining, max(recheck - clock(), 0.0)))
        final = _final_announced(backend, message, channel)
        if final is not None:
            # The announcement says the record itself, else the record is read.
            record = store.announced(task_id, final) or store.read(task_id)
            recheck = clock() + RECHECK
        elif clock() >= recheck:
            record = store.read(task_id)
            recheck = clock() + RECHECK
    # The wait is over: what is true now, a cancellation of the last moment included.
    return record if is_settled(record) else store.read(task_id)


def _is(message: dict[str, t.Any] | None, kind: str, channel: bytes) -> bool:
    return message is not None and message["type"] == kind and message["channel"] == channel


def _final_announced(backend: RedisBackend, message: dict[str, t.Any] | None,
                     channel: bytes) -> t.Any:
    """The final state ``message`` announces on ``channel`` (``True`` when it
    cannot be read, so the record is read to be sure); ``None`` for anything
    else: no message, another channel, a ``STARTED`` or progress announcement,
    which cannot settle the task and cost no read."""
    if not _is(message, "message", channel):
        return None
    try:
        meta = backend.decode(t.cast(dict[str, t.Any], message)["data"])
    except Exception:  # not Celery's: read the record to be sure
        return True
    if not isinstance(meta, dict):
        return True
    return meta if meta.get("status") in FINAL_STATES else None


def wait_for_task(task_id: str, timeout: float) -> TaskRecord:
    """:func:`wait_for_record` with the current app's Celery app and circuit breaker.

    :raises BrokerUnavailable: when the result store is unreachable.
    """
    celery, breaker = celery_and_breaker()
    return t.cast(TaskRecord, breaker.call(lambda: wait_for_record(celery, task_id, timeout)))


def disconnect_result_store(flask_app: Flask) -> None:
    """Close the result store's connections of ``flask_app``'s Celery app (the
    calling thread's, and the long poll's idle ones), if that app was made; the
    next use opens new ones.

    A server process keeps its app until it exits; this is for a process that
    builds and drops apps (tests, embedding), so no socket is left to the
    garbage collector. The broker's connections live in kombu's own pools.
    """
    celery = state_of(flask_app).celery
    if celery is None or not isinstance(celery.backend, RedisBackend):
        return
    subscribers_of(celery).close()
    # Celery gives each thread its own backend: this is the calling thread's.
    celery.backend.client.connection_pool.disconnect()
