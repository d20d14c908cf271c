"""Signed task ids: the id itself says which route started the task, under which
rule, and when, and proves it with a MAC.

An id is three base64url parts joined by dots, as itsdangerous's
``TimestampSigner`` writes them::

    <payload>.<issue time>.<MAC>

- the payload: 8 random bytes (two tasks of one route in one second never share
  an id), one byte of the route's :class:`AccessRule` flags, the route without
  its leading ``/``, and the rule's scopes after a NUL, separated by spaces;
- the issue time: whole seconds, 4 bytes (6 characters);
- the MAC: HMAC-SHA256 cut to 16 bytes (22 characters), under a key derived
  from the app's secret key with a salt of its own (``kernkoa.task-id``), so a
  session cookie's signature never passes for an id, nor the other way round.

So an id is ``30 + ceil(4 × n / 3)`` characters, where ``n`` is ``len(route) + 8``,
plus ``1 + len(scopes)`` when the rule names scopes: 84 for
``/shop/report/Report/build_celery``. ``/status/<id>`` needs no
store read to refuse an id it did not sign (a 404), to find the task's route and
its recorded rule (the auth layer), or to refuse an id older than the results
live (``RESULT_EXPIRES``). Every node that shares the secret key reads the ids of
the others; the Celery task id *is* this id, so Flower and ``celery inspect``
show the same one.

Ids of the old form (a UUID, with an *issued* marker in the result store) are
told apart by having no dot; :mod:`kernel.tasks.store` still reads their marker.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import time
import types
import typing as t
from dataclasses import dataclass

from itsdangerous import BadSignature
from itsdangerous import TimestampSigner
from itsdangerous.signer import HMACAlgorithm

from ..catalog.access import AccessRule
from ..catalog.access import TaskOrigin

#: The salt of the key ids are signed with (derived from the secret key).
SALT = b"kernkoa.task-id"
#: Bytes of randomness in an id.
NONCE_BYTES = 8
#: Bytes of HMAC-SHA256 kept as the MAC (128 bits).
MAC_BYTES = 16
#: Seconds an id may seem to come from the future (nodes' clocks differ a little).
CLOCK_SKEW = 300

_PUBLIC, _REQUIRED, _DENIED = 1, 2, 4


class _ShortHMAC(HMACAlgorithm):
    """HMAC-SHA256 cut to :data:`MAC_BYTES` (itsdangerous compares it in constant time)."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        """The first :data:`MAC_BYTES` of the HMAC of ``value``."""
        return super().get_signature(key, value)[:MAC_BYTES]


@dataclass(frozen=True)
class SignedId:
    """What a verified id says."""

    #: The catalog route that started the task (with its leading ``/``).
    route: str
    #: That route's rule when the task was enqueued.
    access: AccessRule
    #: When the task was enqueued (seconds since the epoch, whole).
    created: float

    @functools.cached_property
    def origin(self) -> TaskOrigin:
        """Where the task came from, for the access rule of its views (made once
        per id: verified ids are cached, and every ``/status`` asks)."""
        return TaskOrigin(route=self.route, recorded=self.access)

    @functools.cached_property
    def issued(self) -> t.Mapping[str, t.Any]:
        """The id as the *issued* marker of old-form ids reads (made once per id,
        read-only: the cached id is shared by the requests that name it)."""
        return types.MappingProxyType({"route": self.route, "created": self.created,
                                       "access": self.access.as_record()})

    def as_issued(self) -> dict[str, t.Any]:
        """The id as the *issued* marker of old-form ids reads (a new dict)."""
        return dict(self.issued)


def is_signed_form(task_id: str) -> bool:
    """Whether ``task_id`` has the form of a signed id (old-form ids are UUIDs, without dots)."""
    return "." in task_id


def _derive(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, SALT, hashlib.sha256).digest()


@functools.lru_cache(maxsize=8)
def _signer(secrets: tuple[str | bytes, ...]) -> TimestampSigner:
    # The key is derived once here, not on every sign and verify as
    # itsdangerous's own derivations would; the newest secret signs, every one
    # verifies (Flask's SECRET_KEY_FALLBACKS, for a key rotation).
    return TimestampSigner([_derive(s) for s in secrets], salt=SALT, sep=".",
                           key_derivation="none", algorithm=_ShortHMAC(hashlib.sha256))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload(route: str, access: AccessRule) -> bytes:
    flags = ((_PUBLIC if access.public else 0) | (_REQUIRED if access.required else 0)
             | (_DENIED if access.denied else 0))
    data = os.urandom(NONCE_BYTES) + bytes([flags]) + route.lstrip("/").encode()
    if access.scopes:
        data += b"\0" + " ".join(sorted(access.scopes)).encode()
    return data


def new_task_id(secrets: tuple[str | bytes, ...], route: str, access: AccessRule) -> str:
    """A new id for a task of ``route`` whose rule is ``access``, signed with the
    last of ``secrets``."""
    return _signer(secrets).sign(_b64(_payload(route, access))).decode("ascii")


def _decode(payload: str, stamp: str) -> SignedId | None:
    try:
        data = _unb64(payload)
        created = float(int.from_bytes(_unb64(stamp), "big"))
    except (binascii.Error, ValueError):
        return None
    if len(data) <= NONCE_BYTES:
        return None
    flags = data[NONCE_BYTES]
    route, _, scopes = data[NONCE_BYTES + 1:].partition(b"\0")
    try:
        text = route.decode()
        scope_names = frozenset(scopes.decode().split()) if scopes else frozenset[str]()
    except UnicodeDecodeError:
        return None
    access = AccessRule(public=bool(flags & _PUBLIC), required=bool(flags & _REQUIRED),
                        scopes=scope_names, denied=bool(flags & _DENIED))
    return SignedId(route="/" + text, access=access, created=created)


@functools.lru_cache(maxsize=1024)
def _verified(secrets: tuple[str | bytes, ...], task_id: str) -> SignedId | None:
    # Cached: the auth layer and the view both ask, once each per request.
    try:
        _signer(secrets).unsign(task_id)
    except BadSignature:
        return None
    return describe_task_id(task_id)


def verify_task_id(secrets: tuple[str | bytes, ...], task_id: str,
                   max_age: float | None) -> SignedId | None:
    """What ``task_id`` says, or ``None`` when no key of ``secrets`` signed it or it
    is older than ``max_age`` seconds (``None`` or 0: ids never expire).

    Reads no store: a forged, truncated, foreign or expired id costs one HMAC.
    """
    if not is_signed_form(task_id) or len(task_id) > 2048:
        return None
    found = _verified(secrets, task_id)
    if found is None:
        return None
    age = time.time() - found.created
    if (max_age and age > max_age) or age < -CLOCK_SKEW:
        return None
    return found


@functools.lru_cache(maxsize=1024)
def describe_task_id(task_id: str) -> SignedId | None:
    """What a signed id says, *without* checking its MAC or age, for the parts that
    only ever see ids already verified at the edge (the result store, the lease
    keeper's queue report); ``None`` when it does not have the form.

    Cached: ``/status`` verifies the id at the edge, then the store describes it.
    """
    parts = task_id.split(".")
    if len(parts) != 3:
        return None
    return _decode(parts[0], parts[1])
