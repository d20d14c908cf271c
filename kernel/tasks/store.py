"""KernKoa's own records about tasks, kept in the Celery result backend.

Celery reads an id it never heard of as ``PENDING``. The kernel's ids are
signed (:mod:`kernel.tasks.ids`): an id that verifies was issued, and says by
which route, so ``/status`` reads one key of it: Celery's result key, one ``GET``.
A cancellation is Celery's ``REVOKED`` state stored in that key, and the
result backends of :mod:`kernel.tasks.backends` never let a worker's later
write replace it, so a task reads as ``REVOKED`` from then on whatever its
worker does (or as its result, if it finished first).

Ids of the old form (UUIDs, from a kernel before signed ids) had an *issued*
marker written before publishing, and read as never issued without one; their
cancellation was a record of its own beside the result key (a worker may be
writing that key, and Celery's ``SET`` would overwrite it). Both records are
still read and written for those ids, until they expire. So are they on a
result backend of another kind than Redis or the embedded file store, which
has no conditional write. On Redis they expire with the results.

A cancellation record for a *signed* id, as the kernel before this one wrote
it, is not read by ``/status`` (that would be a second key on every read for
a case that lasts one upgrade): the worker honours it, before the task starts
and at each progress report, and folds it into the result key then.
"""

from __future__ import annotations

import json
import os
import typing as t
from dataclasses import dataclass

from celery import Celery
from celery import states
from celery.backends.redis import RedisBackend

from ..catalog.access import AccessRule
from .backends import GuardedBackend
from .backends import Listing
from .backends import PublishingRedisBackend
from .ids import describe_task_id
from .ids import is_signed_form

ISSUED_PREFIX = b"kernkoa-task-"
REVOKED_PREFIX = b"kernkoa-revoked-"


@dataclass(frozen=True)
class TaskRecord:
    """What the backend holds about one task id."""

    #: Where the task came from: what a signed id says, or the marker of an
    #: old-form id (``None``: never issued or expired). Read-only for a signed id.
    issued: t.Mapping[str, t.Any] | None
    #: Whether the task was cancelled.
    revoked: bool
    #: Celery's raw result meta (``status``, ``result``), undecoded exceptions.
    meta: dict[str, t.Any] | None


class JobStore:
    """Reads and writes the task records of one Celery app.

    :param celery: the Celery app; its result backend stores the records.
    :param fail_fast: do not retry a lost Redis connection (the web side,
        which must answer 503 quickly); the worker side may retry.
    """

    def __init__(self, celery: Celery, fail_fast: bool = True) -> None:
        self.backend = celery.backend
        self.fail_fast = fail_fast

    def _set(self, key: bytes, value: dict[str, t.Any]) -> None:
        data = json.dumps(value)
        if isinstance(self.backend, RedisBackend):
            policy = {"max_retries": 0} if self.fail_fast else {}
            # Same retry policy as RedisBackend.set, but one plain SET: its
            # MULTI/SET/PUBLISH/EXEC announces the value on the key's channel,
            # which only Celery's result keys have listeners for, never ours.
            self.backend.ensure(self._redis_set, (key, data), **policy)
        else:
            self.backend.set(key, data)

    def _redis_set(self, key: bytes, data: str) -> None:
        # Expires with the results, as RedisBackend.set would (result_expires).
        client = t.cast(RedisBackend, self.backend).client
        client.set(key, data, ex=self.backend.expires or None)

    def mark_issued(self, task_id: str, route: str, created: float, access: AccessRule) -> None:
        """Record that the old-form ``task_id`` was issued for ``route`` (as kernels
        did before signed ids; kept for tests of those ids).

        ``access`` is the route's rule at that moment: ``/status/<id>`` falls
        back on it when the route no longer resolves (records written before
        it was kept have none, and refuse then).
        """
        self._set(ISSUED_PREFIX + task_id.encode(),
                  {"route": route, "created": created, "access": access.as_record()})

    def _guarded(self) -> GuardedBackend | None:
        return self.backend if isinstance(self.backend, GuardedBackend) else None

    def _call(self, func: t.Callable[..., t.Any], *args: t.Any) -> t.Any:
        if isinstance(self.backend, RedisBackend):
            # A worker waits for a store that is away (None: retry until it is back).
            policy = {"max_retries": 0 if self.fail_fast else None}
            return self.backend.ensure(func, args, **policy)
        return func(*args)

    def mark_revoked(self, task_id: str) -> str | None:
        """Cancel ``task_id``: it reads as ``REVOKED`` from now on, unless it has
        finished, in which case nothing changes and its final state
        (``SUCCESS``, ``FAILURE``) is returned.

        A signed id's cancellation is ``REVOKED`` stored in its result key, in
        one atomic step with the check; an old-form id's is a record of its own.
        """
        guarded = self._guarded()
        if guarded is not None and is_signed_form(task_id):
            found = self._call(guarded.cancel_task, task_id)
            return None if found == states.REVOKED else t.cast("str | None", found)
        self._set(REVOKED_PREFIX + task_id.encode(), {"revoked": True})
        return None

    def fold_cancellation(self, task_id: str) -> None:
        """Store ``REVOKED`` in the result key of ``task_id``, which its worker
        found cancelled by a record beside it (an old-form id, or a kernel
        before this one): ``/status`` of a signed id reads the result key only.
        """
        guarded = self._guarded()
        if guarded is not None:
            self._call(guarded.cancel_task, task_id)

    @property
    def writes_listings(self) -> bool:
        """Whether :meth:`start` can write a :class:`~kernel.tasks.backends.Listing`
        in the same step (the Redis result backend)."""
        return isinstance(self.backend, PublishingRedisBackend)

    def start(self, task_id: str, hostname: str | None, request_id: str | None = None,
              listing: Listing | None = None) -> bool:
        """Store Celery's STARTED state of ``task_id`` (the meta its
        ``task_track_started`` would store, and like it never over a SUCCESS
        of an earlier delivery, with the ``request_id`` of the request that
        started it); return whether the task was cancelled, in which case
        nothing but that cancellation is stored.

        On the result backends of :mod:`kernel.tasks.backends` one atomic step
        does both (on Redis, one round trip), without announcing the state on
        the task's channel: nobody waits for a task to start, only for it to end.
        A ``listing`` (only where :attr:`writes_listings`) is written in that
        same step, cancelled or not.
        """
        if listing is not None:
            if not isinstance(self.backend, PublishingRedisBackend):
                raise TypeError("this result backend writes no listing with a start")
            redis_backend = self.backend
            return bool(self._call(lambda: redis_backend.start_task(
                task_id, hostname, REVOKED_PREFIX + task_id.encode(), request_id, listing)))
        guarded = self._guarded()
        if guarded is not None:
            return bool(self._call(guarded.start_task, task_id, hostname,
                                   REVOKED_PREFIX + task_id.encode(), request_id))
        if self.is_revoked(task_id):
            return True
        self.backend.store_result(task_id, {"pid": os.getpid(), "hostname": hostname},
                                  states.STARTED)
        return False

    def is_revoked(self, task_id: str) -> bool:
        """Whether ``task_id`` was cancelled (the worker's check: both places
        a cancellation may be kept, in one read)."""
        record, meta = list(self.backend.mget(
            [REVOKED_PREFIX + task_id.encode(), self.backend.get_key_for_task(task_id)]))
        return record is not None or _status(self.backend.decode(meta) if meta else None) \
            == states.REVOKED

    def read(self, task_id: str) -> TaskRecord:
        """The origin, the cancellation and Celery's meta of ``task_id``, in one read.

        A signed id was verified at the edge (``/status``): its origin is what it
        says, and only Celery's result key is read (one ``GET``), or on a result
        backend without conditional writes, that key and the cancellation record.
        """
        key = task_id.encode()
        if is_signed_form(task_id):
            result_key = self.backend.get_key_for_task(task_id)
            if self._guarded() is not None:
                raw = self.backend.get(result_key)
                return _signed_record(task_id, self.backend.decode(raw) if raw else None)
            revoked, raw = list(self.backend.mget([REVOKED_PREFIX + key, result_key]))
            return TaskRecord(issued=_issued_by(task_id), revoked=revoked is not None,
                              meta=self.backend.decode(raw) if raw else None)
        keys = [ISSUED_PREFIX + key, REVOKED_PREFIX + key, self.backend.get_key_for_task(task_id)]
        issued, revoked, meta = list(self.backend.mget(keys))
        return TaskRecord(
            issued=json.loads(issued) if issued else None,
            revoked=revoked is not None,
            # Decoded without rebuilding exceptions: the status only needs
            # their type name and message.
            meta=self.backend.decode(meta) if meta else None,
        )

    def announced(self, task_id: str, meta: t.Any) -> TaskRecord | None:
        """``task_id``'s record as ``meta``, a state announced on its result's
        channel, says it; ``None`` where only a :meth:`read` can tell.

        The Redis backend of conditional writes announces the value it stores,
        in the same atomic step, so for a signed id (whose origin the id itself
        says) its announcement is the record of that moment: no read is needed.
        """
        if self._guarded() is None or not isinstance(meta, dict) or not is_signed_form(task_id):
            return None
        return _signed_record(task_id, meta)


def _issued_by(task_id: str) -> t.Mapping[str, t.Any] | None:
    signed = describe_task_id(task_id)
    return None if signed is None else signed.issued


def _signed_record(task_id: str, meta: dict[str, t.Any] | None) -> TaskRecord:
    # On a backend of conditional writes a cancellation is the stored state itself.
    return TaskRecord(issued=_issued_by(task_id), revoked=_status(meta) == states.REVOKED,
                      meta=meta)


def _status(meta: t.Any) -> t.Any:
    return meta.get("status") if isinstance(meta, dict) else None
