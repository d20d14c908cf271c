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
import dataclasses
import fcntl
import json
import os
import typing as t
from dataclasses import dataclass

from celery import states
from celery.backends.filesystem import FilesystemBackend
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from celery.exceptions import TaskRevokedError

from ..web.requestid import checked_request_id
from .events import FINAL_STATES
from .luascripts import CANCEL_SCRIPT
from .luascripts import GUARDED_SET_SCRIPT
from .luascripts import NOTE_SCRIPT
from .luascripts import START_SCRIPT

#: States a write never replaces: a cancellation, and a result (as Celery's
#: own ``_store_result`` means to, without its race).
KEPT_STATES = (states.REVOKED, states.SUCCESS)

#: The key of a task's stored meta that holds the id of the request that started it.
REQUEST_ID_KEY = "request_id"

#: What the start script answers when a cancellation record beside the result
#: must be folded into it.
FOLD_BESIDE = 2

#: Where a Redis backend keeps the note waiting for a task's result (its own attribute).
_WAITING_NOTE = "kernkoa_waiting_note"

#: Why a cancelled task's result says it was revoked (``TaskRevokedError``).
CANCELLED = "cancelled"


def _as_bytes(key: bytes | str) -> bytes:
    """A store key as bytes (Celery passes both kinds)."""
    return key.encode() if isinstance(key, str) else key


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


@dataclass(frozen=True)
class Note:
    """Fields set on the hash ``hash`` if it exists (a record of the task's),
    which then expires in ``expires`` seconds (0: keeps its expiry), written
    with the task's next stored state (:meth:`PublishingRedisBackend.note_with_result`)."""

    hash: str
    fields: dict[str, t.Any]
    expires: int
    #: The result key it waits for (set by ``note_with_result``).
    result_key: bytes | str = b""

    def args(self) -> list[t.Any]:
        """The note's arguments, as the scripts take them (``None`` fields empty)."""
        pairs = [part for name, value in self.fields.items()
                 for part in (name, "" if value is None else str(value))]
        return [int(self.expires), len(self.fields), *pairs]


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

    def _store_result(self, task_id: str, result: t.Any, state: str, traceback: t.Any = None,
                      request: t.Any = None, **kwargs: t.Any) -> t.Any:
        """Celery's store of a task's state, without the read of the stored state
        Celery makes first to keep a ``SUCCESS``: every write here keeps it
        itself, in the same atomic step (a round trip less per stored state)."""
        backend = t.cast(t.Any, self)
        meta = backend._get_result_meta(result=result, state=state, traceback=traceback,
                                        request=request)
        meta["task_id"] = task_id.decode() if isinstance(task_id, bytes) else task_id
        try:
            backend._set_with_state(backend.get_key_for_task(task_id), backend.encode(meta),
                                    state)
        except BackendStoreError as error:  # said with the task's id and state, as Celery does
            raise BackendStoreError(str(error), state=state, task_id=task_id) from error
        return result

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
        ``REVOKED`` or ``SUCCESS`` state: one script, one round trip, which also
        writes the note waiting for this key (:meth:`note_with_result`)."""
        if expires is None:
            expires = self.expires
        keys: list[t.Any] = [key]
        args: list[t.Any] = [value, int(expires or 0)]
        note = self.__dict__.get(_WAITING_NOTE)
        if note is not None and _as_bytes(note.result_key) == _as_bytes(key):
            keys.append(note.hash)
            args += note.args()
        self._script("kernkoa_set", GUARDED_SET_SCRIPT)(keys=keys, args=args)
        if note is not None and self.__dict__.get(_WAITING_NOTE) is note and keys[1:]:
            del self.__dict__[_WAITING_NOTE]

    def note_with_result(self, task_id: str, note: Note) -> None:
        """Write ``note`` with the next state stored for ``task_id`` (its result,
        stored once the task's function returns), in the same script, or alone
        by :meth:`flush_note` if nothing is stored (an ignored task). One note
        waits at a time per backend (Celery's are per thread): an older one is
        written first."""
        self.flush_note()
        self.__dict__[_WAITING_NOTE] = dataclasses.replace(
            note, result_key=self.get_key_for_task(task_id))

    def flush_note(self, task_id: str | None = None) -> None:
        """Write the note still waiting (for ``task_id``: only if it is that
        task's) alone: one script, one round trip."""
        note = self.__dict__.get(_WAITING_NOTE)
        if note is None or (task_id is not None and _as_bytes(note.result_key)
                            != _as_bytes(self.get_key_for_task(task_id))):
            return
        script = self._script("kernkoa_note", NOTE_SCRIPT)
        self.ensure(lambda: script(keys=[note.hash], args=note.args()), ())
        self.__dict__.pop(_WAITING_NOTE, None)

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
                             int(self.expires or 0)]
        if listing is not None:
            keys += listing.keys()
            args += [*listing.args(), listing.emptied_if_cancelled]
        found = self._script("kernkoa_start", START_SCRIPT)(keys=keys, args=args)
        if found == FOLD_BESIDE:
            self.cancel_task(task_id)  # REVOKED, unless it has finished meanwhile
        return bool(found)


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

    def set(self, key: bytes | str, value: bytes | str) -> None:
        """Write ``value`` whole, unless ``key`` holds a ``REVOKED`` or ``SUCCESS`` state."""
        with self._locked():
            if _status(self.get(_as_bytes(key))) not in KEPT_STATES:
                self._replace(_as_bytes(key), value)

    def cancel_task(self, task_id: str) -> str | None:
        """See :meth:`GuardedBackend.cancel_task`."""
        key = _as_bytes(self.get_key_for_task(task_id))
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
        key = _as_bytes(self.get_key_for_task(task_id))
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
