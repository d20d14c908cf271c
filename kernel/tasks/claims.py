"""Where idempotency claims live (:mod:`kernel.tasks.idempotency`), both atomic:

- on Redis (the result store), ``SET kernkoa-idem-<hash> <claim> NX EX``, confirmed
  and released by scripts that act only while the key holds the claim they name;
- on the embedded store, a claim file linked into ``VAR/celery/idempotency/``
  (``link`` fails when the name exists, and the file is whole before it has a
  name). An expired or unreadable file is removed under a lock, after reading it
  again, so two triggers never both replace it.

A claim is provisional for :data:`PENDING_SECONDS`, then confirmed for as long
as the task's results once its task is sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import typing as t
import uuid
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path

from celery.backends.redis import RedisBackend

from ..core.errors import IdempotencyUnsupported
from ..core.settings import Settings
from .celeryapp import KernKoaCelery
from .celeryapp import embedded_root
from .celeryapp import is_embedded

log = logging.getLogger("kernkoa.tasks")

#: Seconds a claim lives before its task is sent: far above the few bounded
#: calls of a publish, short enough that a trigger that died between its claim
#: and its publish holds its key up briefly.
PENDING_SECONDS = 30

#: Prefix of a claim's key on Redis.
REDIS_PREFIX = "kernkoa-idem-"

#: Deletes KEYS[1] only while it holds ARGV[1] (the claim being released).
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: Replaces KEYS[1] by ARGV[2] only while it holds ARGV[1] (the claim being
#: confirmed), expiring after ARGV[3] seconds (0: never).
CONFIRM_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return 1
"""


@dataclass(frozen=True)
class Claim:
    """What a key is claimed with: the task it starts, the fields it started with,
    and whether the task was sent (a claim is provisional until then)."""

    task_id: str
    fingerprint: str
    sent: bool = False

    def dumps(self) -> str:
        """The claim as stored."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, data: str | bytes) -> Claim:
        """A stored claim (one stored before claims were confirmed counts as sent).

        :raises ValueError: when ``data`` is not a claim.
        """
        try:
            record = json.loads(data)
            claim = cls(task_id=record["task_id"], fingerprint=record["fingerprint"],
                        sent=record.get("sent", True))
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a claim: {error!r}") from error
        if not all(isinstance(v, str) for v in (claim.task_id, claim.fingerprint)):
            raise ValueError("not a claim")
        return claim

    def confirmed(self) -> Claim:
        """This claim, its task sent."""
        return Claim(task_id=self.task_id, fingerprint=self.fingerprint, sent=True)


class ClaimStore(t.Protocol):
    """Where claims live; every method is atomic."""

    def claim(self, name: str, claim: Claim) -> Claim | None:
        """Claim ``name`` for ``claim``, provisionally (for :data:`PENDING_SECONDS`):
        ``None`` when it is ours now, else the claim that holds it."""

    def confirm(self, name: str, claim: Claim) -> bool:
        """Mark ``claim``'s task sent, holding ``name`` as long as the results, if
        ``claim`` still holds it; whether it did."""

    def release(self, name: str, claim: Claim) -> None:
        """Give up ``name`` if ``claim`` still holds it."""


def pending_seconds(expires: int) -> int:
    """How long a provisional claim lives, when confirmed ones live ``expires`` seconds."""
    return min(PENDING_SECONDS, expires) if expires else PENDING_SECONDS


class RedisClaims:
    """Claims as Redis keys that expire (``SET NX EX``)."""

    def __init__(self, client: t.Any, expires: int) -> None:
        self.client = client
        self.expires = expires

    def claim(self, name: str, claim: Claim) -> Claim | None:
        """See :meth:`ClaimStore.claim`."""
        key = REDIS_PREFIX + name
        while True:
            if self.client.set(key, claim.dumps(), nx=True,
                               ex=pending_seconds(self.expires)):
                return None
            held = self.client.get(key)
            if held is None:
                continue  # it expired between the two calls: claim it again
            try:
                return Claim.loads(held)
            except ValueError:
                # It names no task (written by hand, or by a stranger): as good
                # as expired. Removed only if it is still that value.
                log.warning("idempotency claim %s unreadable: replaced", name)
                self.client.eval(RELEASE_SCRIPT, 1, key, held)

    def confirm(self, name: str, claim: Claim) -> bool:
        """See :meth:`ClaimStore.confirm`."""
        return bool(self.client.eval(CONFIRM_SCRIPT, 1, REDIS_PREFIX + name, claim.dumps(),
                                     claim.confirmed().dumps(), self.expires))

    def release(self, name: str, claim: Claim) -> None:
        """See :meth:`ClaimStore.release`."""
        self.client.eval(RELEASE_SCRIPT, 1, REDIS_PREFIX + name, claim.dumps())


class FileClaims:
    """Claims as files in ``folder``, created by ``link`` (fails when the name exists)."""

    def __init__(self, folder: Path, expires: int) -> None:
        self.folder = folder
        self.expires = expires

    def claim(self, name: str, claim: Claim) -> Claim | None:
        """See :meth:`ClaimStore.claim`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        draft = self._draft(name, claim, min(PENDING_SECONDS, self.expires))
        try:
            while True:
                try:
                    os.link(draft, path)
                    return None
                except FileExistsError:
                    pass
                held = self._read(path)
                if held is None:
                    continue  # released or removed in between: claim it again
                if held["expires"] > time.time():
                    return Claim(task_id=held["task_id"], fingerprint=held["fingerprint"],
                                 sent=held.get("sent", True))
                self._remove_if(path, held.__eq__)
        finally:
            draft.unlink(missing_ok=True)

    def confirm(self, name: str, claim: Claim) -> bool:
        """See :meth:`ClaimStore.confirm`."""
        path = self.folder / name
        draft = self._draft(name, claim.confirmed(), self.expires)
        try:
            with self._locked():
                found = self._read(path)
                if found is None or found.get("task_id") != claim.task_id:
                    return False
                draft.replace(path)  # whole, for readers that take no lock
                return True
        finally:
            draft.unlink(missing_ok=True)

    def release(self, name: str, claim: Claim) -> None:
        """See :meth:`ClaimStore.release`."""
        self._remove_if(self.folder / name,
                        lambda found: found.get("task_id") == claim.task_id)

    def _draft(self, name: str, claim: Claim, lives: float) -> Path:
        """A whole claim file, not yet under its name."""
        draft = self.folder / f".{name}.{uuid.uuid4().hex}.tmp"
        draft.write_text(json.dumps({**asdict(claim), "expires": time.time() + lives},
                                    sort_keys=True))
        return draft

    @staticmethod
    def _read(path: Path) -> dict[str, t.Any] | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            Claim.loads(data)
            found = t.cast(dict[str, t.Any], json.loads(data))
            float(found["expires"])
        except (ValueError, KeyError, TypeError):
            # Not a whole claim (a crash lost its content, a stray file): it names
            # no task, so it is as good as expired, and is replaced.
            log.warning("idempotency claim %s unreadable: replaced", path.name)
            return {"expires": 0.0}
        return found

    def _remove_if(self, path: Path, holds: t.Callable[[dict[str, t.Any]], bool]) -> bool:
        # Read again under the lock: between our read and the removal another
        # trigger may have removed the old claim and linked its own.
        with self._locked():
            found = self._read(path)
            if found is None or not holds(found):
                return False
            path.unlink()
            return True

    @contextlib.contextmanager
    def _locked(self) -> t.Iterator[None]:
        with open(self.folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def prune(self) -> int:
        """Remove expired claims; return how many."""
        removed = 0
        now = time.time()
        for path in self.folder.glob("[0-9a-f]*") if self.folder.is_dir() else ():
            with contextlib.suppress(ValueError, KeyError):  # not a claim: left alone
                removed += self._remove_if(path, lambda found: found["expires"] <= now)
        return removed


def embedded_claims(settings: Settings) -> FileClaims:
    """The claims of the embedded store, under ``VAR/celery/idempotency/``."""
    return FileClaims(embedded_root(settings) / "idempotency", settings.RESULT_EXPIRES)


def claim_store(celery: KernKoaCelery) -> ClaimStore:
    """The claims of ``celery``'s result store.

    :raises IdempotencyUnsupported: when that store is neither Redis nor embedded.
    """
    settings = celery.kernkoa_settings
    backend = celery.backend
    if isinstance(backend, RedisBackend):
        return RedisClaims(backend.client, settings.RESULT_EXPIRES)
    if is_embedded(settings):
        return embedded_claims(settings)
    raise IdempotencyUnsupported(detail=f"result backend {type(backend).__name__}")
