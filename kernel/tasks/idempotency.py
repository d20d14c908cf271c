"""Idempotent triggers: a ``_celery`` trigger carrying ``Idempotency-Key`` starts
its work once.

The key is claimed atomically, together with the id of the task it will start
and a fingerprint of the request's fields, before anything is published:

- on Redis (the result store), ``SET kernkoa-idem-<hash> <claim> NX EX RESULT_EXPIRES``;
- on the embedded store, a claim file linked into ``VAR/celery/idempotency/``
  (``link`` fails when the name exists, and the file is whole before it has a
  name). An expired file is removed under a lock, after reading it again, so
  two triggers never both replace it.

``<hash>`` covers the caller (the identity the auth layer established, or
anonymous), the method's route (its URL without the path segments that are
arguments: those are fields) and the key. Whoever loses the claim, a retry or a
concurrent duplicate, answers with the winner's task id; other fields under the
same key are a 422.

A claim is provisional until its task is sent: it lives :data:`PENDING_SECONDS`,
and only the publish's success confirms it for as long as the task's results
(``RESULT_EXPIRES``), so a replay always names a task that was sent and that
``/status`` still knows. A duplicate that finds a provisional claim waits for it
(the publish takes milliseconds); a claim still provisional after
:data:`SENT_WAIT` belongs to a trigger that failed or died, and the duplicate is
a 409 until it lapses. A claim whose publish fails is released (and if the store
is away by then too, it lapses by itself), so the client's retry starts the work.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import typing as t
import uuid
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path

from celery.backends.redis import RedisBackend
from flask import Request
from werkzeug.datastructures import MultiDict

from ..auth.layer import current_identity
from ..catalog.exposure import Endpoint
from ..core.errors import IdempotencyKeyInFlight
from ..core.errors import IdempotencyKeyReused
from ..core.errors import IdempotencyUnsupported
from ..core.errors import InvalidIdempotencyKey
from ..core.settings import Settings
from ..web.state import current_state
from .celeryapp import KernKoaCelery
from .celeryapp import embedded_root
from .celeryapp import is_embedded
from .enqueue import CONNECTION_ERRORS
from .enqueue import body_fields
from .enqueue import celery_and_breaker
from .enqueue import enqueue
from .enqueue import issue_task_id

log = logging.getLogger("kernkoa.tasks")

#: Longest key, in characters: a UUID is 36, and room is left for a client's prefix.
MAX_KEY_LENGTH = 255

#: Visible ASCII but quotes and backslashes, so a key reads the same bare or as the
#: draft's structured-field string (``"..."``).
_KEY = re.compile(rf'[!#-\[\]-~]{{1,{MAX_KEY_LENGTH}}}')

#: Seconds a claim lives before its task is sent: far above the few bounded
#: calls of a publish, short enough that a trigger that died between its claim
#: and its publish holds its key up briefly.
PENDING_SECONDS = 30

#: Seconds a duplicate waits for the trigger holding its key to send the task.
SENT_WAIT = 5.0

#: Seconds between two looks of a waiting duplicate at the claim.
SENT_POLL = 0.01

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


def parse_key(raw: str) -> str:
    """The key of an ``Idempotency-Key`` header value, bare or quoted.

    :raises InvalidIdempotencyKey: when it is empty, too long or has a
        character a key may not (400).
    """
    key = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if not _KEY.fullmatch(key):
        raise InvalidIdempotencyKey()
    return key


def fingerprint(req: Request, path_args: t.Sequence[str] = ()) -> str:
    """A digest of the fields ``req`` hands the method: method, path segments
    after the method's name (``path_args``), query and body.

    Fields are compared as the method receives them, not as bytes: the order of
    names in a query string or a form, a JSON object's key order and
    percent-escapes make no difference; the order of one name's repeated
    values does (they reach the method as a list). A form and a JSON body of
    the same names are different fields (text against typed values).
    """
    body = body_fields(req)
    if "form" in body:
        body = {"form": _grouped(MultiDict(body["form"]))}
    fields = [req.method, list(path_args), _grouped(req.args), body]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _grouped(fields: MultiDict[str, t.Any]) -> list[tuple[str, list[t.Any]]]:
    """Each name with its values in their order, names sorted."""
    return sorted(fields.lists())


def claim_name(caller: str, route: str, key: str) -> str:
    """The store's name of one claim: a digest of who, where and which key."""
    return hashlib.sha256("\0".join((caller, route, key)).encode()).hexdigest()


def current_caller() -> str:
    """Who is calling, as the auth layer established it (``""``: anonymous)."""
    identity = current_identity()
    return "" if identity is None else f"{identity.scheme.lower()}:{identity.name}"


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


def start_once(endpoint: Endpoint, route: str, args: list[t.Any], kwargs: dict[str, t.Any],
               req: Request, raw_key: str) -> tuple[str, bool]:
    """Start ``route``'s task for the key ``raw_key``, unless it started one already.

    Returns the task id, and whether it is the id of an earlier trigger (a replay).

    :raises InvalidIdempotencyKey: a malformed key (400).
    :raises IdempotencyKeyReused: the key started a task with other fields (422).
    :raises BrokerUnavailable: the store or the broker is away (503).
    """
    key = parse_key(raw_key)
    celery, breaker = celery_and_breaker()
    claims = claim_store(celery)
    # /report/Report/build_celery/2024 is build_celery's route with a field in it.
    target = current_state().catalog.router.resolve(route)
    name = claim_name(current_caller(), target.route, key)
    mine = Claim(task_id=issue_task_id(endpoint, route),
                 fingerprint=fingerprint(req, target.args))
    deadline = time.monotonic() + SENT_WAIT
    while (held := t.cast("Claim | None",
                          breaker.call(lambda: claims.claim(name, mine)))) is not None:
        if held.fingerprint != mine.fingerprint:
            raise IdempotencyKeyReused()
        if held.sent:
            return held.task_id, True
        # Its trigger is sending it: answer once it is sent (or claim the key,
        # should that trigger fail and release it).
        if time.monotonic() >= deadline:
            raise IdempotencyKeyInFlight(
                retry_after=pending_seconds(celery.kernkoa_settings.RESULT_EXPIRES))
        time.sleep(SENT_POLL)
    try:
        enqueue(endpoint, route, args, kwargs, task_id=mine.task_id)
    except BaseException:
        # Not sent: the key is free again for the client's retry (if the store
        # is away, the provisional claim lapses by itself).
        try:
            claims.release(name, mine)
        except CONNECTION_ERRORS as error:
            log.error("idempotency key of %s not released after a failed publish "
                      "(free again in %d s): %r", route, PENDING_SECONDS, error)
        raise
    try:
        if not claims.confirm(name, mine):
            log.warning("idempotency key of %s lapsed before its task %s was sent",
                        route, mine.task_id)
    except CONNECTION_ERRORS as error:
        # Sent all the same: the answer is the task's id. The key holds only
        # PENDING_SECONDS then, so only a retry later than that starts again.
        log.error("idempotency key of %s not confirmed after task %s was sent: %r",
                  route, mine.task_id, error)
    return mine.task_id, False
