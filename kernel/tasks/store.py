"""KernKoa's own records about tasks, kept in the Celery result backend.

Celery reads an id it never heard of as ``PENDING``. The kernel's ids are
signed (:mod:`kernel.tasks.ids`): an id that verifies was issued, and says by
which route, so its record is Celery's meta and the cancellation record only.
Ids of the old form (UUIDs, from a kernel before signed ids) had an *issued*
marker written before publishing, and read as never issued without one: their
marker is still read, until they expire. A cancellation is recorded the same way, so a task reads as
``REVOKED`` from then on whatever its worker does later. Both live beside
Celery's own result keys (never inside them: a worker may be writing those)
and, on Redis, expire with the results.
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
from .ids import describe_task_id
from .ids import is_signed_form

ISSUED_PREFIX = b"kernkoa-task-"
REVOKED_PREFIX = b"kernkoa-revoked-"

#: The key of a task's stored meta that holds the id of the request that started it.
REQUEST_ID_KEY = "request_id"

#: :meth:`JobStore.start` on Redis. KEYS: the cancellation record, Celery's
#: result key; ARGV: the STARTED meta (JSON), its expiry in seconds (0: none).
#: Returns 1, and stores nothing, when the task was cancelled.
START_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 1
end
local ok, current = pcall(cjson.decode, redis.call('GET', KEYS[2]) or 'null')
if ok and not (type(current) == 'table' and current['status'] == 'SUCCESS') then
  if tonumber(ARGV[2]) > 0 then
    redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
  else
    redis.call('SET', KEYS[2], ARGV[1])
  end
end
return 0
"""


@dataclass(frozen=True)
class TaskRecord:
    """What the backend holds about one task id."""

    #: Where the task came from: what a signed id says, or the marker of an
    #: old-form id (``None``: never issued or expired).
    issued: dict[str, t.Any] | None
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

    def mark_revoked(self, task_id: str) -> None:
        """Record that ``task_id`` was cancelled."""
        self._set(REVOKED_PREFIX + task_id.encode(), {"revoked": True})

    def start(self, task_id: str, hostname: str | None, request_id: str | None = None) -> bool:
        """Store Celery's STARTED state of ``task_id`` (the meta its
        ``task_track_started`` would store, and like it never over a SUCCESS
        of an earlier delivery, with the ``request_id`` of the request that
        started it); return whether the task was cancelled, in which case
        nothing is stored.

        On Redis one round trip does both, without announcing the state on the
        task's channel: nobody waits for a task to start, only for it to end.
        Celery's own write would read the old state first, then announce the
        new one, for two round trips and a wake-up of every waiter.
        """
        result = {"pid": os.getpid(), "hostname": hostname}
        if not isinstance(self.backend, RedisBackend):
            if self.is_revoked(task_id):
                return True
            self.backend.store_result(task_id, result, states.STARTED)
            return False
        meta = {"status": states.STARTED, "result": result, "traceback": None,
                "children": [], "date_done": None, "task_id": task_id}
        if request_id is not None:
            meta[REQUEST_ID_KEY] = request_id
        # A worker waits for a store that is away (None: retry until it is back).
        policy = {"max_retries": 0 if self.fail_fast else None}
        return t.cast(bool, self.backend.ensure(self._redis_start, (task_id, meta), **policy))

    def _redis_start(self, task_id: str, meta: dict[str, t.Any]) -> bool:
        backend = t.cast(RedisBackend, self.backend)
        script = backend.__dict__.get("kernkoa_start_script")
        if script is None:
            script = backend.__dict__["kernkoa_start_script"] = \
                backend.client.register_script(START_SCRIPT)
        keys = [REVOKED_PREFIX + task_id.encode(), backend.get_key_for_task(task_id)]
        return bool(script(keys=keys, args=[backend.encode(meta), int(backend.expires or 0)]))

    def is_revoked(self, task_id: str) -> bool:
        """Whether ``task_id`` was cancelled."""
        return self.backend.get(REVOKED_PREFIX + task_id.encode()) is not None

    def read(self, task_id: str) -> TaskRecord:
        """The origin, the cancellation and Celery's meta of ``task_id``, in one read.

        A signed id was verified at the edge (``/status``): its origin is what it
        says, and only the cancellation and the meta are read.
        """
        key = task_id.encode()
        if is_signed_form(task_id):
            signed = describe_task_id(task_id)
            revoked, meta = list(self.backend.mget(
                [REVOKED_PREFIX + key, self.backend.get_key_for_task(task_id)]))
            return TaskRecord(
                issued=None if signed is None else signed.as_issued(),
                revoked=revoked is not None,
                meta=self.backend.decode(meta) if meta else None,
            )
        keys = [ISSUED_PREFIX + key, REVOKED_PREFIX + key, self.backend.get_key_for_task(task_id)]
        issued, revoked, meta = list(self.backend.mget(keys))
        return TaskRecord(
            issued=json.loads(issued) if issued else None,
            revoked=revoked is not None,
            # Decoded without rebuilding exceptions: the status only needs
            # their type name and message.
            meta=self.backend.decode(meta) if meta else None,
        )
