"""What ``kernkoa beat`` keeps between ticks and shows to the web: the runs of each
schedule, and the lock that lets one beat fire per deployment.

- :class:`RunRecord`: per route, the last run (time and task id), the next one,
  how many runs ``overlap=False`` skipped, and why a schedule cannot run. The
  beat holding the lock writes them; ``/_kernkoa/endpoints``, the docs page and
  ``kernkoa routes`` read them. On Redis one hash beside the results; on the
  embedded broker one JSON file, replaced whole, under ``VAR/celery/beat/``.
- The lock: on Redis redis-py's :class:`~redis.lock.Lock` (a key with a lease,
  renewed every tick; a beat that dies lets another take over after
  ``BEAT_LEASE``); on the embedded broker an ``flock`` on a file, which the
  kernel drops when its holder dies.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import typing as t
from dataclasses import asdict
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path

from celery.backends.redis import RedisBackend
from flask import Flask
from redis.exceptions import LockError
from redis.exceptions import RedisError

from ..core.settings import Settings
from .celeryapp import KernKoaCelery
from .celeryapp import embedded_root
from .celeryapp import get_celery

log = logging.getLogger("kernkoa.beat")

#: The Redis hash of the run records, field per route.
RUNS_KEY = "kernkoa-beat-runs"

#: The Redis key of the beat lock.
LOCK_KEY = "kernkoa-beat-lock"


@dataclass
class RunRecord:
    """The runs of one schedule (times are Unix timestamps)."""

    last_run_at: float | None = None
    next_run_at: float | None = None
    #: The id of the last run's task (``/status/<id>``).
    last_task_id: str | None = None
    #: Runs skipped because the previous one was still going (``overlap=False``).
    skipped: int = 0
    #: Why the schedule cannot run (a bad cron field, required fields), else ``None``.
    error: str | None = None

    @classmethod
    def from_stored(cls, found: t.Any) -> RunRecord:
        """A stored record, decoded from JSON (unknown keys ignored).

        :raises ValueError: when it is not a record (a file emptied by a crash,
            edited by hand).
        """
        if not isinstance(found, dict):
            raise ValueError(f"not a run record: {found!r:.80}")
        values = {k: found[k] for k in cls.__dataclass_fields__ if k in found}
        for name, value in values.items():
            if not isinstance(value, _STORED_TYPES[name]) or isinstance(value, bool):
                raise ValueError(f"not a run record: {name}={value!r:.80}")
        return cls(**values)


#: The JSON types of a stored record's fields.
_STORED_TYPES: dict[str, tuple[type, ...]] = {
    "last_run_at": (int, float, type(None)), "next_run_at": (int, float, type(None)),
    "last_task_id": (str, type(None)), "skipped": (int,), "error": (str, type(None)),
}


def readable(stored: t.Iterable[tuple[str, t.Any]]) -> dict[str, RunRecord]:
    """The records among ``stored`` (route, decoded JSON) that read as records; the
    others are logged and left out, as if never written (the beat writes them again)."""
    records = {}
    for route, found in stored:
        try:
            records[route] = RunRecord.from_stored(found)
        except ValueError as error:
            log.warning("beat: run record of %s unreadable, ignored: %s", route, error)
    return records


class RunStore(t.Protocol):
    """Where the run records live."""

    def read(self) -> dict[str, RunRecord]:
        """Every record, by route."""

    def write(self, records: dict[str, RunRecord]) -> None:
        """Replace every record."""


class RedisRuns:
    """Run records in one Redis hash."""

    def __init__(self, client: t.Any) -> None:
        self.client = client

    def read(self) -> dict[str, RunRecord]:
        """See :meth:`RunStore.read`."""
        return readable((_text(k), _json(v)) for k, v in self.client.hgetall(RUNS_KEY).items())

    def write(self, records: dict[str, RunRecord]) -> None:
        """See :meth:`RunStore.write`."""
        with self.client.pipeline() as pipe:  # MULTI/EXEC: readers see all or nothing
            pipe.delete(RUNS_KEY)
            if records:
                pipe.hset(RUNS_KEY, mapping={k: json.dumps(asdict(v)) for k, v in records.items()})
            pipe.execute()


class FileRuns:
    """Run records in one JSON file, replaced whole (a reader never sees half of it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, RunRecord]:
        """See :meth:`RunStore.read`."""
        try:
            found = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as error:
            found = error
        if not isinstance(found, dict):
            log.warning("beat: run records %s unreadable, ignored: %.80r", self.path, found)
            return {}
        return readable(found.items())

    def write(self, records: dict[str, RunRecord]) -> None:
        """See :meth:`RunStore.write`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        draft = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        draft.write_text(json.dumps({k: asdict(v) for k, v in records.items()}))
        draft.replace(self.path)


class BeatLock(t.Protocol):
    """The one lock of a deployment's beats."""

    def hold(self) -> bool:
        """Take or renew the lock; whether this beat holds it now."""

    def release(self) -> None:
        """Give the lock up (on the way out)."""


class RedisBeatLock:
    """redis-py's lock with a lease of ``lease`` seconds, renewed by :meth:`hold`."""

    def __init__(self, client: t.Any, lease: float) -> None:
        self.lock = client.lock(LOCK_KEY, timeout=lease, blocking=False, thread_local=False)
        self.held = False

    def hold(self) -> bool:
        """See :meth:`BeatLock.hold`."""
        try:
            if self.held:
                self.lock.reacquire()  # raises when another beat took it meanwhile
            else:
                self.held = bool(self.lock.acquire(blocking=False))
        except LockError:
            log.warning("beat: lost the lock to another beat")
            self.held = False
        except RedisError as error:
            # Not firing while Redis is away; but the lease may well still be
            # ours when it answers again: forgetting it would leave the lock to
            # nobody, every beat included, until it expires.
            log.error("beat: Redis unreachable, not firing: %r", error)
            return False
        return self.held

    def release(self) -> None:
        """See :meth:`BeatLock.release`."""
        if self.held:
            try:
                self.lock.release()
            except (LockError, RedisError):
                pass
            self.held = False


class FileBeatLock:
    """An exclusive ``flock`` on ``path``, held until released or the process ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: t.IO[str] | None = None

    def hold(self) -> bool:
        """See :meth:`BeatLock.hold`."""
        if self.handle is not None:
            if self._names_our_file():
                return True
            # Removed under us (VAR cleaned while the beat runs): the next beat
            # would lock a new file and fire beside us. Contend for that one.
            log.warning("beat: lock file %s removed or replaced; taking it again", self.path)
            self.release()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self.handle = handle
        return True

    def release(self) -> None:
        """See :meth:`BeatLock.release`."""
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None

    def _names_our_file(self) -> bool:
        assert self.handle is not None
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self.handle.fileno())
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json(value: str | bytes) -> t.Any:
    try:
        return json.loads(value)
    except ValueError:
        return value  # refused as a record by readable(), with the rest


def beat_folder(settings: Settings) -> Path:
    """The embedded beat's folder: its lock and its run records."""
    return embedded_root(settings) / "beat"


def run_store(celery: KernKoaCelery) -> RunStore:
    """The run records of ``celery``'s result store (Redis, or files)."""
    backend = celery.backend
    if isinstance(backend, RedisBackend):
        return RedisRuns(backend.client)
    return FileRuns(beat_folder(celery.kernkoa_settings) / "runs.json")


def beat_lock(celery: KernKoaCelery) -> BeatLock:
    """The beat lock of ``celery``'s deployment (Redis, or a file)."""
    backend = celery.backend
    if isinstance(backend, RedisBackend):
        return RedisBeatLock(backend.client, celery.kernkoa_settings.BEAT_LEASE)
    return FileBeatLock(beat_folder(celery.kernkoa_settings) / "lock")


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


def schedule_runs(flask_app: Flask) -> dict[str, dict[str, t.Any]]:
    """The run records of ``flask_app``'s schedules as JSON, by route: ``last_run``
    and ``next_run`` (ISO 8601, UTC), ``last_task_id``, ``skipped``, ``error``.

    Empty when no beat has written any yet, or when the store cannot be read
    (logged: a listing does not fail for it).
    """
    try:
        records = run_store(get_celery(flask_app)).read()
    except (RedisError, OSError, ValueError) as error:
        log.warning("schedule runs unreadable: %r", error)
        return {}
    return {route: {"last_run": _iso(r.last_run_at), "next_run": _iso(r.next_run_at),
                    "last_task_id": r.last_task_id, "skipped": r.skipped, "error": r.error}
            for route, r in records.items()}
