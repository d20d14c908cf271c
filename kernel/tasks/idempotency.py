"""Idempotent triggers: a ``_celery`` trigger carrying ``Idempotency-Key`` starts
its work once.

The key is claimed atomically, together with the id of the task it will start
and a fingerprint of the request's fields, before anything is published, in the
result store (:mod:`kernel.tasks.claims`: a Redis key, or a file of the
embedded store).

The claim's name is a hash of the caller (the identity the auth layer established, or
anonymous), the method's route (its URL without the path segments that are
arguments: those are fields) and the key. Whoever loses the claim, a retry or a
concurrent duplicate, answers with the winner's task id; other fields under the
same key are a 422.

A claim is provisional until its task is sent (it lives
:data:`~kernel.tasks.claims.PENDING_SECONDS`), and only the publish's success
confirms it for as long as the task's results
(``RESULT_EXPIRES``), so a replay always names a task that was sent and that
``/status`` still knows. A duplicate that finds a provisional claim waits for it
(the publish takes milliseconds); a claim still provisional after
:data:`SENT_WAIT` belongs to a trigger that failed or died, and the duplicate is
a 409 until it lapses. A claim whose publish fails is released (and if the store
is away by then too, it lapses by itself), so the client's retry starts the work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import typing as t

from flask import Request
from werkzeug.datastructures import MultiDict

from ..auth.layer import current_identity
from ..catalog.exposure import Endpoint
from ..core.errors import IdempotencyKeyInFlight
from ..core.errors import IdempotencyKeyReused
from ..core.errors import InvalidIdempotencyKey
from ..web.state import current_state
from .claims import PENDING_SECONDS
from .claims import Claim
from .claims import claim_store
from .claims import pending_seconds
from .enqueue import CONNECTION_ERRORS
from .enqueue import body_fields
from .enqueue import celery_and_breaker
from .enqueue import enqueue
from .enqueue import issue_task_id

log = logging.getLogger("kernkoa.tasks")

#: Longest key, in characters: a UUID is 36, and room is left for a client's prefix.
MAX_KEY_LENGTH = 255

#: Visible ASCII but quotes and backslashes, so a key reads the same bare or as the
#: draft's structured-field string (``"..."``); at most :data:`MAX_KEY_LENGTH`
#: characters (a literal, so the linear-scan test reads the pattern itself).
_KEY = re.compile(r'[!#-\[\]-~]{1,255}+')

#: Seconds a duplicate waits for the trigger holding its key to send the task.
SENT_WAIT = 5.0

#: Seconds between two looks of a waiting duplicate at the claim.
SENT_POLL = 0.01

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
