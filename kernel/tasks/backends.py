"""Celery's result backends, with a cancellation kept in the task's own result.

``DELETE /status/<id>`` stores Celery's ``REVOKED`` state in the task's result
key, so ``/status`` reads that one key. A worker may still be running the task
and write a state after it: every write here is conditional, and never lands
on a ``REVOKED`` (nor on a ``SUCCESS``, which Celery itself checks, but
between a read and a write of its own):

- on Redis (:class:`PublishingRedisBackend`), each write is one Lua script that
  reads the current state and writes (and announces) only when it may;
- on the embedded store (:class:`FileResultBackend`, Celery's ``file://``
  backend), each write takes an exclusive lock on the results folder, reads,
  and writes a new file under a temporary name renamed over the old one, so a
  reader never meets half a result.

Both also cancel (:meth:`GuardedBackend.cancel_task`: ``REVOKED`` unless the
task has finished) and start a task (:meth:`GuardedBackend.start_task`: Celery's
``STARTED`` unless cancelled) in the same atomic way. Result backends of any
other kind keep the cancellation in a record of its own
(:mod:`kernel.tasks.store`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import typing as t
from dataclasses import dataclass

from celery import states
from celery.backends.filesystem import FilesystemBackend
from celery.backends.redis import RedisBackend
from celery.exceptions import TaskRevokedError

from ..web.requestid import checked_request_id
from .events import FINAL_STATES

#: States a write never replaces: a cancellation, and a result (as Celery's
#: own ``_store_result`` means to, without its race).
KEPT_STATES = (states.REVOKED, states.SUCCESS)

#: The key of a task's stored meta that holds the id of the request that started it.
REQUEST_ID_KEY = "request_id"

#: Why a cancelled task's result says it was revoked (``TaskRevokedError``).
CANCELLED = "cancelled"

# Shared by the scripts below: the state stored under a key (nil when it holds
# no task meta), and a write with the results' expiry and its announcement.
_LUA_HELPERS = """
local function status_of(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local ok, meta = pcall(cjson.decode, raw)
  if ok and type(meta) == 'table' and type(meta['status']) == 'string' then
    return meta['status']
  end
  return nil
end
local function store(key, value, expires, announce)
  if tonumber(expires) > 0 then
    redis.call('SET', key, value, 'EX', expires)
  else
    redis.call('SET', key, value)
  end
  if announce then redis.call('PUBLISH', key, value) end
end
"""

#: Every write of the Redis backend. KEYS: the key; ARGV: the value, its expiry
#: in seconds (0: none). Returns 1 when written (and announced, as Celery does).
GUARDED_SET_SCRIPT = _LUA_HELPERS + """
local status = status_of(KEYS[1])
if status == 'REVOKED' or status == 'SUCCESS' then
  return 0
end
store(KEYS[1], ARGV[1], ARGV[2], true)
return 1
"""

#: :meth:`GuardedBackend.cancel_task` on Redis. KEYS: the result key; ARGV: the
#: REVOKED meta (a JSON object), its expiry. Returns the final state found (then
#: nothing is written), or false once ``REVOKED`` is stored and announced, with
#: the request id the task's stored state had (checked as the edge checks it).
CANCEL_SCRIPT = _LUA_HELPERS + """
local status = status_of(KEYS[1])
if status == 'SUCCESS' or status == 'FAILURE' or status == 'REVOKED' then
  return status
end
local value = ARGV[1]
local ok, current = pcall(cjson.decode, redis.call('GET', KEYS[1]) or 'null')
local kept = ok and type(current) == 'table' and current['request_id']
if type(kept) == 'string' and #kept <= 128 and string.match(kept, '^[%w%._%-]+$')
    and not string.find(value, '"request_id"', 1, true) then
  value = string.sub(value, 1, -2) .. ', "request_id": "' .. kept .. '"}'
end
store(KEYS[1], value, ARGV[2], true)
return false
"""

# A listing (:class:`Listing`): a hash of fields per item and a sorted set of the
# items by score, cut to its size (the hashes of the items cut are deleted with
# them: only the set finds them), both expiring. ``first``: the index in ARGV of
# the listing's arguments: the item, its score, the size, the expiry in seconds
# (0: none), the hashes' prefix, the number of fields, then the fields as name,
# value pairs.
_LUA_LISTING = """
local function list_item(index, hash, first)
  local item, score = ARGV[first], ARGV[first + 1]
  local cut = -tonumber(ARGV[first + 2]) - 1
  local prefix, expires = ARGV[first + 4], tonumber(ARGV[first + 3])
  local fields = first + 6
  redis.call('HSET', hash, unpack(ARGV, fields, fields + 2 * tonumber(ARGV[first + 5]) - 1))
  redis.call('ZADD', index, score, item)
  for _, old in ipairs(redis.call('ZRANGE', index, 0, cut)) do
    redis.call('DEL', prefix .. old)
  end
  redis.call('ZREMRANGEBYRANK', index, 0, cut)
  if expires > 0 then
    redis.call('EXPIRE', hash, expires)
    redis.call('EXPIRE', index, expires)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', tonumber(score) - expires)
  end
end
"""

#: A :class:`Listing` written alone. KEYS: the sorted set, the item's hash; ARGV:
#: the listing's arguments (see ``_LUA_LISTING``).
LISTING_SCRIPT = _LUA_LISTING + """
list_item(KEYS[1], KEYS[2], 1)
"""

#: :meth:`GuardedBackend.start_task` on Redis. KEYS: the result key, a
#: cancellation record of the kind kept beside it, and with a :class:`Listing`
#: its sorted set and the task's hash; ARGV: the STARTED meta, the REVOKED meta,
#: their expiry, then the listing's arguments and the name of its field emptied
#: when the task was cancelled. Returns 1 when the task was cancelled (a record
#: found beside the result is then folded into it), else 0 once STARTED is
#: stored (never over a SUCCESS of an earlier delivery). STARTED is not
#: announced: nobody waits for a task to start, only for it to end. The listing
#: is written either way; an error of its own (a key of another type) costs the
#: listing, never the start.
START_SCRIPT = _LUA_HELPERS + _LUA_LISTING + """
local function start()
  local status = status_of(KEYS[1])
  if status == 'REVOKED' then
    return 1
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    if status ~= 'SUCCESS' and status ~= 'FAILURE' then
      store(KEYS[1], ARGV[2], ARGV[3], true)
    end
    return 1
  end
  if status ~= 'SUCCESS' then
    store(KEYS[1], ARGV[1], ARGV[3], false)
  end
  return 0
end
local cancelled = start()
if #KEYS > 2 then
  pcall(function()
    list_item(KEYS[3], KEYS[4], 4)
    if cancelled == 1 then
      redis.call('HSET', KEYS[4], ARGV[#ARGV], '')
    end
  end)
end
return cancelled
"""


@dataclass(frozen=True)
class Listing:
    """An item of a bounded listing in Redis written with a task's start, in the
    same script (:meth:`PublishingRedisBackend.start_task`): a hash of
    ``fields`` at ``prefix + item``, its place in the sorted set ``index`` by
    ``score``, the set cut to its ``size`` newest, both expiring in ``expires``
    seconds (0: never). ``emptied_if_cancelled`` names the field set to the
    empty string when the task turns out cancelled."""

    index: str
    prefix: str
    item: str
    score: float
    size: int
    expires: int
    fields: dict[str, t.Any]
    emptied_if_cancelled: str

    def keys(self) -> list[str]:
        """The listing's keys, as the scripts take them."""
        return [self.index, self.prefix + self.item]

    def args(self) -> list[t.Any]:
        """The listing's arguments, as the scripts take them (``None`` fields empty)."""
        pairs = [part for name, value in self.fields.items()
                 for part in (name, "" if value is None else str(value))]
        return [self.item, repr(self.score), self.size, int(self.expires), self.prefix,
                len(self.fields), *pairs]


class GuardedBackend:
    """What the result backends of this module add to Celery's (see module doc)."""

    def cancel_task(self, task_id: str) -> str | None:
        """Store ``REVOKED`` as ``task_id``'s result unless it has finished;
        return the final state found (``SUCCESS``, ``FAILURE``, ``REVOKED``),
        or ``None`` once stored."""
        raise NotImplementedError

    def start_task(self, task_id: str, hostname: str | None, beside: bytes,
                   request_id: str | None = None) -> bool:
        """Store ``STARTED`` as ``task_id``'s result, with the ``request_id`` of
        the request that started it, unless it was cancelled, and return whether
        it was: ``REVOKED`` stored, or a record at the key ``beside`` (a
        cancellation kept beside the result, which is then folded into it)."""
        raise NotImplementedError

    def _meta(self, task_id: str, result: t.Any, state: str) -> dict[str, t.Any]:
        backend = t.cast(t.Any, self)
        meta = t.cast(dict[str, t.Any], backend._get_result_meta(
            result=result, state=state, traceback=None, request=None))
        meta["task_id"] = task_id
        return meta

    def _revoked(self, task_id: str) -> dict[str, t.Any]:
        # As Celery's own mark_as_revoked stores it: AsyncResult.get() raises
        # TaskRevokedError, Flower shows REVOKED.
        backend = t.cast(t.Any, self)
        error = backend.encode_result(TaskRevokedError(CANCELLED), states.REVOKED)
        return self._meta(task_id, error, states.REVOKED)

    def _started(self, task_id: str, hostname: str | None,
                 request_id: str | None) -> dict[str, t.Any]:
        meta = self._meta(task_id, {"pid": os.getpid(), "hostname": hostname}, states.STARTED)
        if request_id is not None:
            meta[REQUEST_ID_KEY] = request_id
        return meta


class PublishingRedisBackend(GuardedBackend, RedisBackend):  # type: ignore[misc]
    """Celery's Redis result backend, with conditional writes, minus the
    subscription made at send time.

    Celery subscribes the sending process to the result channel of every task
    it sends and never unsubscribes; the web process never waits on a result
    (``/status`` reads the stored one), so that subscription would only leak.
    """

    def on_task_call(self, producer: t.Any, task_id: str) -> None:
        """Do not subscribe to the task's result channel."""

    def _script(self, name: str, source: str) -> t.Any:
        # Registered once per backend (Celery makes one per thread); redis-py
        # sends EVALSHA, and the source once after a SCRIPT FLUSH.
        script = self.__dict__.get(name)
        if script is None:
            script = self.__dict__[name] = self.client.register_script(source)
        return script

    def _set(self, key: bytes | str, value: str | bytes, expires: int | None = None) -> None:
        """Celery's write of a state (SET and PUBLISH), unless the key holds a
        ``REVOKED`` or ``SUCCESS`` state: one script, one round trip."""
        if expires is None:
            expires = self.expires
        self._script("kernkoa_set", GUARDED_SET_SCRIPT)(
            keys=[key], args=[value, int(expires or 0)])

    def cancel_task(self, task_id: str) -> str | None:
        """See :meth:`GuardedBackend.cancel_task`: one script, one round trip."""
        found = self._script("kernkoa_cancel", CANCEL_SCRIPT)(
            keys=[self.get_key_for_task(task_id)],
            args=[self.encode(self._revoked(task_id)), int(self.expires or 0)])
        return found.decode() if isinstance(found, bytes) else found

    def start_task(self, task_id: str, hostname: str | None, beside: bytes,
                   request_id: str | None = None, listing: Listing | None = None) -> bool:
        """See :meth:`GuardedBackend.start_task`: one script, one round trip
        (Celery's own STARTED write reads, then writes and announces: two), the
        ``listing`` written in it too."""
        keys: list[t.Any] = [self.get_key_for_task(task_id), beside]
        args: list[t.Any] = [self.encode(self._started(task_id, hostname, request_id)),
                             self.encode(self._revoked(task_id)), int(self.expires or 0)]
        if listing is not None:
            keys += listing.keys()
            args += [*listing.args(), listing.emptied_if_cancelled]
        return bool(self._script("kernkoa_start", START_SCRIPT)(keys=keys, args=args))


def _status(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    status = meta.get("status") if isinstance(meta, dict) else None
    return status if isinstance(status, str) else None


def _request_id(raw: bytes | None) -> str | None:
    """The request id a stored state holds, when it is a sane one."""
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        return None
    return checked_request_id(meta.get(REQUEST_ID_KEY)) if isinstance(meta, dict) else None


class FileResultBackend(GuardedBackend, FilesystemBackend):  # type: ignore[misc]
    """Celery's ``file://`` result backend with whole-file, conditional writes.

    Every write holds an exclusive ``flock`` on :data:`LOCK_NAME` in the results
    folder (shared by every process on the machine) from its read to its
    rename; reads take no lock, since a file is only ever replaced whole.
    """

    #: The lock file of the results folder (not a result: Celery's pruning
    #: only touches names with its own prefixes).
    LOCK_NAME = b".kernkoa-lock"

    @contextlib.contextmanager
    def _locked(self) -> t.Iterator[None]:
        with open(self._filename(self.LOCK_NAME), "ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _replace(self, key: bytes, value: bytes | str) -> None:
        path = self._filename(key)
        draft = path + b".%d.tmp" % os.getpid()
        with open(draft, "wb") as out:
            out.write(value.encode() if isinstance(value, str) else value)
        os.replace(draft, path)

    @staticmethod
    def _key(key: bytes | str) -> bytes:
        return key.encode() if isinstance(key, str) else key

    def set(self, key: bytes | str, value: bytes | str) -> None:
        """Write ``value`` whole, unless ``key`` holds a ``REVOKED`` or ``SUCCESS`` state."""
        with self._locked():
            if _status(self.get(self._key(key))) not in KEPT_STATES:
                self._replace(self._key(key), value)

    def cancel_task(self, task_id: str) -> str | None:
        """See :meth:`GuardedBackend.cancel_task`."""
        key = self._key(self.get_key_for_task(task_id))
        with self._locked():
            raw = self.get(key)
            found = _status(raw)
            if found in FINAL_STATES:
                return found
            revoked = self._revoked(task_id)
            kept = _request_id(raw)
            if kept is not None:
                revoked.setdefault(REQUEST_ID_KEY, kept)
            self._replace(key, self.encode(revoked))
        return None

    def start_task(self, task_id: str, hostname: str | None, beside: bytes,
                   request_id: str | None = None) -> bool:
        """See :meth:`GuardedBackend.start_task`."""
        key = self._key(self.get_key_for_task(task_id))
        with self._locked():
            found = _status(self.get(key))
            if found == states.REVOKED:
                return True
            if self.get(beside) is not None:
                if found not in FINAL_STATES:
                    self._replace(key, self.encode(self._revoked(task_id)))
                return True
            if found != states.SUCCESS:
                self._replace(key, self.encode(self._started(task_id, hostname, request_id)))
        return False
