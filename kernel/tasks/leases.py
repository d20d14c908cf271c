"""Who holds which task: worker heartbeats, task leases, and the requeue of
the tasks of a worker that is gone.

A Redis broker keeps every message a worker took and has not acknowledged in
kombu's *unacked* table, and gives it to another worker only after
``VISIBILITY_TIMEOUT``, which must stay above the hard time limit (a task
still running is never started twice): two hours by default. A worker killed
outright would strand its tasks for that long. Instead, every
``WORKER_HEARTBEAT`` seconds each worker

- renews a *lease* of ``WORKER_LEASE`` seconds on every message it holds
  (received and not yet acknowledged: running, waiting for a pool process, or
  waiting for its countdown), and its own worker record (queues, pid), which
  ``/_kernkoa/health`` reads;
- sweeps: a message delivered more than ``WORKER_LEASE`` seconds ago whose
  lease has run out belongs to a worker that died or froze; it goes back to
  the front of its queue, unless its task already finished (its result or
  cancellation is stored: the worker died between storing and acknowledging),
  in which case it is dropped.

So a dead worker's tasks are requeued within ``WORKER_LEASE +
WORKER_HEARTBEAT`` seconds (40 s by default) of its last heartbeat, by any
worker alive by then (a supervised worker restarted in its place included).
A frozen worker that comes back finds its tasks run elsewhere too: delivery
is at least once, never at most once.

The embedded broker (files under ``VAR/celery/``) does the same with files:
see :mod:`kernel.tasks.filebroker`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import typing as t
from dataclasses import asdict
from dataclasses import dataclass

from celery import Celery
from celery import bootsteps
from celery import states
from celery.worker import state as worker_state

from .priorities import level_keys
from .priorities import move_back
from .ratelimit import HELD
from .store import JobStore

log = logging.getLogger("kernkoa.worker")

#: A lease on one delivered message: ``LEASE_PREFIX + delivery tag`` -> node name.
LEASE_PREFIX = "kernkoa-lease-"

#: A worker's record: ``WORKER_PREFIX + node name`` -> :class:`WorkerRecord` JSON.
WORKER_PREFIX = "kernkoa-worker-"

#: The set of node names that wrote a record (dead ones are dropped by sweeps).
WORKERS_KEY = "kernkoa-workers"

#: Most unacknowledged messages one sweep looks at.
SWEEP_BATCH = 1000

#: ``HOLDER_PREFIX + holder name`` exists while that process's heartbeat is current.
HOLDER_PREFIX = "kernkoa-holder-"

#: The set of the in-flight lists of every holder (see :mod:`kernel.tasks.redisbroker`).
INFLIGHT_KEY = "kernkoa-inflight"

#: ``INFLIGHT_PREFIX + holder + SEP + queue``: the list a message taken from
#: ``queue`` waits in until it is recorded as unacknowledged.
INFLIGHT_PREFIX = "kernkoa-inflight|"
SEP = "|"


def inflight_key(holder: str, queue: str) -> str:
    """The in-flight list of ``holder`` for messages taken from ``queue``."""
    return f"{INFLIGHT_PREFIX}{holder}{SEP}{queue}"


def parse_inflight_key(key: str) -> tuple[str, str]:
    """The holder and the queue of an in-flight list."""
    holder, queue = key[len(INFLIGHT_PREFIX):].split(SEP, 1)
    return holder, queue


@dataclass(frozen=True)
class WorkerRecord:
    """What a worker says about itself at each heartbeat."""

    #: Celery node name (``kernkoa-<pid>@<host>`` unless ``-n`` names it).
    name: str
    #: The queues it consumes.
    queues: list[str]
    pid: int
    #: Messages it holds (running or waiting in it).
    held: int
    #: Wall-clock time of the heartbeat.
    beat: float


def holder_name() -> str:
    """The name under which this process holds messages it took from a broker."""
    return f"{socket.gethostname()}-{os.getpid()}"


def finished(celery: Celery, task_id: str | None) -> bool:
    """Whether the result store says ``task_id`` is done (or cancelled)."""
    if not task_id:
        return False
    record = JobStore(celery).read(task_id)
    status = (record.meta or {}).get("status")
    return record.revoked or status in states.READY_STATES


class RedisLeases:
    """Leases, worker records and sweeps on a Redis broker (see module doc)."""

    def __init__(self, celery: Celery, lease: float) -> None:
        self.celery = celery
        self.lease = lease

    def beat(self, record: WorkerRecord, held: t.Iterable[str]) -> None:
        """Renew the leases of ``held`` and the worker's record."""
        millis = max(1, round(self.lease * 1000))
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            with channel.conn_or_acquire() as client:
                pipe = client.pipeline(transaction=False)
                for tag in held:
                    pipe.set(LEASE_PREFIX + tag, record.name, px=millis)
                pipe.set(HOLDER_PREFIX + holder_name(), record.name, px=millis)
                pipe.set(WORKER_PREFIX + record.name, json.dumps(asdict(record)), px=millis)
                pipe.sadd(WORKERS_KEY, record.name)
                pipe.execute()

    def sweep(self) -> list[str]:
        """Requeue the messages whose lease ran out; return their task ids."""
        requeued: list[str] = []
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            qos = channel.qos
            with channel.conn_or_acquire() as client:
                cutoff = time.time() - self.lease
                tags = [tag.decode() if isinstance(tag, bytes) else tag for tag in
                        client.zrangebyscore(qos.unacked_index_key, "-inf", cutoff,
                                             start=0, num=SWEEP_BATCH)]
                leased = client.mget([LEASE_PREFIX + tag for tag in tags]) if tags else []
                for tag, holder in zip(tags, leased, strict=True):
                    if holder is None:
                        task_id = self._requeue(client, qos, tag)
                        if task_id:
                            requeued.append(task_id)
                self._empty_dead_inflight(client)
                self._forget_dead_workers(client)
        return requeued

    @staticmethod
    def _empty_dead_inflight(client: t.Any) -> None:
        keys = sorted(key.decode() for key in client.smembers(INFLIGHT_KEY))
        holders = [parse_inflight_key(key) for key in keys]
        alive = client.mget([HOLDER_PREFIX + holder for holder, _ in holders]) if keys else []
        for key, (holder, queue), beat in zip(keys, holders, alive, strict=True):
            if beat is None:
                moved = move_back(client, key, queue)
                client.srem(INFLIGHT_KEY, key)
                if moved:
                    log.warning("%d message(s) taken from %s by %s, which is gone before "
                                "reading them: requeued", moved, queue, holder)

    def _requeue(self, client: t.Any, qos: t.Any, tag: str) -> str | None:
        raw = client.hget(qos.unacked_key, tag)
        if raw is None:
            return None  # acknowledged or requeued by another sweep meanwhile
        message = json.loads(raw)[0]
        task_id = message.get("headers", {}).get("id")
        if finished(self.celery, task_id):
            client.pipeline().zrem(qos.unacked_index_key, tag).hdel(qos.unacked_key, tag).execute()
            log.info("task %s: finished, its worker gone before acknowledging; dropped", task_id)
            return None
        # kombu's own restore: atomic against another sweep or a late ack.
        qos.restore_by_tag(tag, client=client)
        log.warning("task %s: its worker stopped renewing its lease; requeued", task_id)
        return t.cast(str, task_id)

    @staticmethod
    def _forget_dead_workers(client: t.Any) -> None:
        names = sorted(name.decode() for name in client.smembers(WORKERS_KEY))
        if names:
            records = client.mget([WORKER_PREFIX + name for name in names])
            gone = [name for name, record in zip(names, records, strict=True) if record is None]
            if gone:
                client.srem(WORKERS_KEY, *gone)

    def workers(self) -> list[WorkerRecord]:
        """The records of the workers whose heartbeat is current."""
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            with channel.conn_or_acquire() as client:
                names = sorted(name.decode() for name in client.smembers(WORKERS_KEY))
                found = client.mget([WORKER_PREFIX + name for name in names]) if names else []
        return [WorkerRecord(**json.loads(raw)) for raw in found if raw is not None]

    def waiting(self, queue: str) -> Waiting:
        """How many tasks wait in ``queue``, every priority level summed, and since
        when the oldest does.

        kombu pushes on the left and takes from the right: the oldest of a level
        is its rightmost; its id (or, for an old-form id, its issued marker) tells
        when it was triggered. One round trip, and one store read per level that
        holds messages.
        """
        keys = level_keys(queue)
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            with channel.conn_or_acquire() as client:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.llen(key).lindex(key, -1)
                replies = pipe.execute()
        triggered = [self._triggered(raw) for raw in replies[1::2] if raw is not None]
        known = [since for since in triggered if since is not None]
        return Waiting(sum(int(count) for count in replies[0::2]),
                       min(known) if known else None)

    def _triggered(self, raw: bytes) -> float | None:
        task_id = json.loads(raw).get("headers", {}).get("id")
        issued = JobStore(self.celery).read(task_id).issued if task_id else None
        return t.cast("float | None", issued["created"]) if issued else None


@dataclass(frozen=True)
class Waiting:
    """The tasks waiting in one queue."""

    #: How many (None: the broker does not tell).
    count: int | None
    #: Wall-clock time the oldest of them was triggered (None: none, or unknown).
    oldest: float | None


class Leases(t.Protocol):
    """Where a worker renews its leases and sweeps for dead workers' tasks."""

    def beat(self, record: WorkerRecord, held: t.Iterable[str]) -> None:
        """Renew the leases of ``held`` and the worker's record."""

    def sweep(self) -> list[str]:
        """Requeue the tasks of workers that are gone; return their ids."""

    def workers(self) -> list[WorkerRecord]:
        """The records of the workers whose heartbeat is current."""

    def waiting(self, queue: str) -> Waiting:
        """How many tasks wait in ``queue``, and since when the oldest does."""


class PingedWorkers:
    """Workers found by Celery's remote control, for brokers without leases
    (RabbitMQ): the ones that answer within ``timeout`` seconds."""

    def __init__(self, celery: Celery, timeout: float) -> None:
        self.celery = celery
        self.timeout = timeout

    def workers(self) -> list[WorkerRecord]:
        """The workers that answered, with the queues they consume."""
        answers = self.celery.control.inspect(timeout=self.timeout).active_queues() or {}
        return [WorkerRecord(name=name, queues=sorted(q["name"] for q in queues), pid=0,
                             held=0, beat=time.time()) for name, queues in answers.items()]

    def waiting(self, queue: str) -> Waiting:
        """Unknown: remote control does not tell."""
        return Waiting(None, None)


def held_tags() -> set[str]:
    """Delivery tags of the messages this worker holds and has not acknowledged
    (held for a rate limit included)."""
    requests = [*worker_state.reserved_requests, *worker_state.scheduled_requests]
    return {request.message.delivery_tag for request in requests
            if not request.acknowledged} | HELD


class LeaseStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: a heartbeat every ``WORKER_HEARTBEAT`` seconds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: t.Any, **kwargs: t.Any) -> None:
        self.entry: t.Any = None
        super().__init__(c, **kwargs)

    def start(self, c: t.Any) -> None:
        """Beat and sweep now, then every ``WORKER_HEARTBEAT`` seconds."""
        settings = c.app.kernkoa_settings  # a KernKoaCelery
        self.beat(c)
        self.entry = c.timer.call_repeatedly(settings.WORKER_HEARTBEAT, self.beat, (c,))

    def stop(self, c: t.Any) -> None:
        """Stop beating (the leases then run out unless the messages are acknowledged)."""
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    shutdown = stop

    @staticmethod
    def beat(c: t.Any) -> None:
        """One heartbeat: renew, then sweep; a broker that is away is tried next time."""
        leases: Leases = c.app.leases
        consumer = c.task_consumer
        queues = sorted(q.name for q in consumer.queues) if consumer is not None else []
        held = held_tags()
        record = WorkerRecord(name=c.hostname, queues=queues, pid=os.getpid(),
                              held=len(held), beat=time.time())
        try:
            leases.beat(record, held)
            leases.sweep()
        except Exception as error:  # the next beat tries again
            log.warning("worker heartbeat failed: %r", error)
