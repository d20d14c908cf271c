"""The recent tasks: a bounded index of the last ``RECENT_TASKS`` tasks, for the
tasks page (:mod:`kernel.pages.tasks`).

Each task has a small record beside Celery's result: its route, who triggered
it and under which request id, when it was triggered, started and finished.
Its live state and progress are Celery's own meta, read with the record.

The trigger writes nothing for it: who triggered the task and when travel in
the message's :data:`TRIGGER_HEADER`, so a trigger stays the one publish of
issue 19. The worker writes the record when it takes the task, and its end.
On Redis the record, its place in the index and the cut are written by the
script that stores the task's STARTED state, and its end by the one that
stores its result (:mod:`kernel.tasks.run`): neither is a round trip of its
own. A task therefore shows once a worker has taken it, a cancelled one too;
the tasks still waiting in a queue are counted there, not listed.

- **Redis**: a hash ``kernkoa-recent-<id>`` per task and a sorted set
  ``kernkoa-recent`` of the ids by trigger time, cut to ``RECENT_TASKS`` at
  each start; both expire with the results (``RESULT_EXPIRES``).
- **Embedded**: one JSON file per task under ``VAR/celery/recent/``, written
  whole; every ``RECENT_TASKS // 10`` starts of a process (each start for a small
  index), the oldest beyond ``RECENT_TASKS`` and those older than
  ``RESULT_EXPIRES`` are deleted: the folder holds about ``1.1 * RECENT_TASKS``
  files, and a start costs, averaged, the listing of about ten of them.
- Other result stores keep no index: the page lists no tasks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import typing as t
from pathlib import Path

from celery import Celery
from celery.backends.filesystem import FilesystemBackend
from celery.backends.redis import RedisBackend
from flask import has_request_context

from ..auth.layer import current_identity
from ..core.files import write_private
from .backends import Listing
from .body import status_body
from .ids import describe_task_id
from .luascripts import LISTING_SCRIPT
from .store import REVOKED_PREFIX
from .store import TaskRecord

log = logging.getLogger("kernkoa.tasks")

#: The sorted set of recent task ids, scored by trigger time (Redis).
RECENT_KEY = "kernkoa-recent"

#: ``RECENT_PREFIX + id``: the hash of one recent task (Redis).
RECENT_PREFIX = "kernkoa-recent-"

#: The message header that carries who triggered a task and when (:func:`trigger_details`).
TRIGGER_HEADER = "kernkoa_trigger"

#: Seconds after which a draft file in the index folder is taken as left by a killed writer.
DRAFT_AGE = 60.0

#: What a task id may look like to name a file.
_FILE_SAFE = re.compile(r"[A-Za-z0-9_.\-]{1,200}+")


#: Longest identity name a record keeps.
_IDENTITY_MAX = 200


def trigger_details() -> dict[str, t.Any]:
    """The :data:`TRIGGER_HEADER` of the task being sent: when, and who triggers it
    (the identity's name, empty when anonymous or outside a request). The request
    id travels in the request's snapshot (:mod:`kernel.tasks.enqueue`)."""
    identity = current_identity() if has_request_context() else None
    return {"created": time.time(), "identity": identity.name if identity is not None else ""}


def started_record(header: t.Any, route: str, started: float | None, worker: str | None,
                   request_id: str | None) -> dict[str, t.Any]:
    """The record a worker writes when it takes a task, from its message's
    :data:`TRIGGER_HEADER` (anything but what :func:`trigger_details` writes is
    dropped: a message from an older kernel has none, and shows no identity) and
    the triggering request's id (checked already)."""
    header = header if isinstance(header, dict) else {}
    created = _number(header.get("created"))
    if created is None or not math.isfinite(created):
        created = time.time()  # an infinite score would cut the whole index as expired
    return {"route": route, "created": created,
            "identity": str(header.get("identity") or "")[:_IDENTITY_MAX],
            "request_id": request_id or "", "started": started, "finished": None,
            "worker": worker or ""}


class RecentIndex(t.Protocol):
    """Where the records of the recent tasks are kept."""

    def started(self, task_id: str, record: dict[str, t.Any]) -> None:
        """Write the record of a task a worker takes (:func:`started_record`), and cut
        the index to its size."""

    def changed(self, task_id: str, fields: dict[str, t.Any]) -> None:
        """Update the record of ``task_id`` with ``fields`` (when it finished)."""

    def latest(self, limit: int) -> list[dict[str, t.Any]]:
        """The records of the ``limit`` most recent tasks, newest first (``id`` included)."""

    def record(self, task_id: str) -> dict[str, t.Any] | None:
        """The record of ``task_id`` (``None``: not, or no longer, in the index)."""


class RedisRecent:
    """The index in the Redis result store."""

    def __init__(self, backend: RedisBackend, size: int, expires: int) -> None:
        self.backend = backend
        self.size = size
        self.expires = expires

    def listing(self, task_id: str, record: dict[str, t.Any]) -> Listing:
        """The record of a task a worker takes, as the result backend writes it
        with the task's STARTED state (:mod:`kernel.tasks.run`): its hash, its
        place in the index, the cut; ``started`` emptied if it was cancelled."""
        return Listing(index=RECENT_KEY, prefix=RECENT_PREFIX, item=task_id,
                       score=record["created"], size=self.size, expires=int(self.expires or 0),
                       fields=record, emptied_if_cancelled="started")

    def started(self, task_id: str, record: dict[str, t.Any]) -> None:
        """One command (:data:`~kernel.tasks.luascripts.LISTING_SCRIPT`): the record,
        its place in the index, the cut (the worker's retries wait for Redis)."""
        script = self.backend.__dict__.get("kernkoa_recent_script")
        if script is None:
            script = self.backend.__dict__["kernkoa_recent_script"] = \
                self.backend.client.register_script(LISTING_SCRIPT)
        listing = self.listing(task_id, record)
        self.backend.ensure(lambda: script(keys=listing.keys(), args=listing.args()), ())

    def changed(self, task_id: str, fields: dict[str, t.Any]) -> None:
        """Set ``fields`` on the record (the worker's retries wait for Redis)."""
        def write() -> None:
            pipe = self.backend.client.pipeline(transaction=False)
            pipe.hset(RECENT_PREFIX + task_id,
                      mapping={k: "" if v is None else str(v) for k, v in fields.items()})
            if self.expires:
                pipe.expire(RECENT_PREFIX + task_id, self.expires)
            pipe.execute()

        self.backend.ensure(write, ())

    def record(self, task_id: str) -> dict[str, t.Any] | None:
        """The hash of ``task_id``."""
        raw = self.backend.client.hgetall(RECENT_PREFIX + task_id)
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    def latest(self, limit: int) -> list[dict[str, t.Any]]:
        """The newest ``limit`` records (two round trips)."""
        client = self.backend.client
        ids = [raw.decode() for raw in client.zrevrange(RECENT_KEY, 0, limit - 1)]
        pipe = client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(RECENT_PREFIX + task_id)
        found = pipe.execute() if ids else []
        records = []
        for task_id, raw in zip(ids, found, strict=True):
            if raw:
                record = {k.decode(): v.decode() for k, v in raw.items()}
                records.append({"id": task_id, **record})
        return records


class FileRecent:
    """The index as files, for the embedded broker (see the module doc)."""

    def __init__(self, folder: Path, size: int, expires: int) -> None:
        self.folder = folder
        self.size = size
        self.expires = expires

    def _path(self, task_id: str) -> Path | None:
        return self.folder / f"{task_id}.json" if _FILE_SAFE.fullmatch(task_id) else None

    def _read(self, path: Path) -> dict[str, t.Any] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # deleted meanwhile, or not one of ours
        return record if isinstance(record, dict) else None

    def started(self, task_id: str, record: dict[str, t.Any]) -> None:
        """Write the record; every :attr:`prune_every` writes, delete the oldest beyond
        the size and the expired."""
        path = self._path(task_id)
        if path is None:
            return
        write_private(path, json.dumps(record))
        writes = _WRITES[self.folder] = _WRITES.get(self.folder, 0) + 1
        if writes >= self.prune_every:
            _WRITES[self.folder] = 0
            self._prune()

    @property
    def prune_every(self) -> int:
        """Writes between two prunings: a tenth of the size (a listing of the folder
        costs its whole size, so about ten entries a write)."""
        return max(1, self.size // 10)

    def _scan(self) -> list[os.DirEntry[str]]:
        try:
            return list(os.scandir(self.folder))
        except FileNotFoundError:
            return []

    def _entries(self, scanned: list[os.DirEntry[str]] | None = None) -> list[os.DirEntry[str]]:
        entries = [e for e in (self._scan() if scanned is None else scanned)
                   if e.name.endswith(".json") and not e.name.startswith(".")]
        return sorted(entries, key=_mtime, reverse=True)

    def _prune(self) -> None:
        scanned = self._scan()
        now = time.time()
        cutoff = now - self.expires if self.expires else None
        # Drafts of write_private (".<name>.<pid>") a writer killed mid-write left behind.
        doomed = [e for e in scanned if e.name.startswith(".") and _mtime(e) < now - DRAFT_AGE]
        for number, entry in enumerate(self._entries(scanned)):
            if number >= self.size or (cutoff is not None and _mtime(entry) < cutoff):
                doomed.append(entry)
        for entry in doomed:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass  # another process pruned it first

    def changed(self, task_id: str, fields: dict[str, t.Any]) -> None:
        """Rewrite the record with ``fields`` (only the worker of the task writes then)."""
        path = self._path(task_id)
        record = self._read(path) if path is not None else None
        if path is None or record is None:
            return  # pruned already: the index keeps no record of it
        record.update(fields)
        write_private(path, json.dumps(record))

    def record(self, task_id: str) -> dict[str, t.Any] | None:
        """The file of ``task_id``, read."""
        path = self._path(task_id)
        return self._read(path) if path is not None else None

    def latest(self, limit: int) -> list[dict[str, t.Any]]:
        """The newest ``limit`` records, by their triggering order."""
        records = []
        for entry in self._entries():
            record = self._read(Path(entry.path))
            if record is not None:
                records.append({**record, "id": entry.name[:-len(".json")]})
        records.sort(key=lambda r: _number(r.get("created")) or 0.0, reverse=True)
        return records[:limit]


#: Writes of this process into each index folder since its last pruning.
_WRITES: dict[Path, int] = {}


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _number(value: t.Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def recent_index(celery: Celery) -> RecentIndex | None:
    """The recent-tasks index of ``celery``'s result store (``None``: not kept)."""
    settings = celery.kernkoa_settings
    size, expires = settings.RECENT_TASKS, settings.RESULT_EXPIRES
    if size <= 0:
        return None
    backend = celery.backend
    if isinstance(backend, RedisBackend):
        return RedisRecent(backend, size, expires)
    if isinstance(backend, FilesystemBackend):
        return FileRecent(Path(os.fsdecode(backend.path)).parent / "recent", size, expires)
    return None


def note_started(celery: Celery, task_id: str, record: dict[str, t.Any]) -> None:
    """The worker's side, when it takes a task: write its record (:func:`started_record`);
    a store that is away costs the record, never the task."""
    try:
        index = recent_index(celery)
        if index is not None:
            index.started(task_id, record)
    except Exception as error:
        log.warning("task %s: cannot write its recent-tasks record: %r", task_id, error)


def note_change(celery: Celery, task_id: str, **fields: t.Any) -> None:
    """The worker's side: update the record; a store that is away costs the record,
    never the task."""
    try:
        index = recent_index(celery)
        if index is not None:
            index.changed(task_id, fields)
    except Exception as error:
        log.warning("task %s: cannot update its recent-tasks record: %r", task_id, error)


def task_timing(celery: Celery, task_id: str) -> dict[str, t.Any]:
    """The route of ``task_id`` and when it was triggered, started and finished, as
    far as the index knows (``None`` each where it does not)."""
    index = recent_index(celery)
    record = (index.record(task_id) if index is not None else None) or {}
    route = record.get("route")
    return {"route": route if isinstance(route, str) else None,
            **{name: _number(record.get(name)) for name in ("created", "started", "finished")}}


def recent_tasks(celery: Celery, limit: int) -> list[dict[str, t.Any]]:
    """The recent tasks with their live status, newest first (see :func:`describe`)."""
    index = recent_index(celery)
    records = index.latest(limit) if index is not None else []
    if not records:
        return []
    backend = celery.backend
    keys = []
    for record in records:
        keys += [REVOKED_PREFIX + record["id"].encode(), backend.get_key_for_task(record["id"])]
    values = list(backend.mget(keys))
    now = time.time()
    # Issued: the index holds it (a queued task has no meta yet, and is PENDING).
    return [describe(record, TaskRecord(issued=record, revoked=revoked is not None,
                                        meta=backend.decode(meta) if meta else None), now)
            for record, revoked, meta in zip(records, values[::2], values[1::2], strict=True)]


def describe(record: dict[str, t.Any], stored: TaskRecord, now: float) -> dict[str, t.Any]:
    """One row of the tasks page: the record and its live status.

    ``state`` is the status ``/status/<id>`` answers; ``progress`` the meta of a ``PROGRESS`` state;
    ``duration`` runs until the task finishes.
    """
    route = record.get("route")
    if not route or not isinstance(route, str):  # a file written by hand is no route
        signed = describe_task_id(record["id"])
        route = signed.route if signed is not None else ""
    body = status_body(stored)
    started, finished = _number(record.get("started")), _number(record.get("finished"))
    progress = body.get("state") if body["status"] == "PROGRESS" else None
    return {
        "id": record["id"],
        "route": route,
        "state": body["status"],
        "progress": progress if isinstance(progress, dict) else None,
        "created": _number(record.get("created")),
        "started": started,
        "finished": finished,
        "duration": None if started is None else round(max(0.0, (finished or now) - started), 3),
        "request_id": str(body.get("request_id") or record.get("request_id") or ""),
        "identity": str(record.get("identity") or ""),
        "worker": str(record.get("worker") or ""),
    }
