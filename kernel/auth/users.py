"""The users file of the ``basic_auth`` add-on, written by ``kernkoa user add``.

A JSON file (``USERS_FILE``, default ``VAR/users.json``, mode 0600)::

    {"users": {"alice": {"hash": "scrypt:32768:8:1$<salt>$<hex>", "scopes": ["reports"]}}}

Passwords are stored as Werkzeug's salted scrypt hashes
(:func:`werkzeug.security.generate_password_hash`), checked with
:func:`~werkzeug.security.check_password_hash`, which compares in constant
time (``hmac.compare_digest``). An unknown user name is checked against a
dummy hash of the same cost, so the answer takes as long as for a known one.

Every hash runs in one of the process's few hash slots, and a verified
password is remembered for a minute (:mod:`kernel.auth.hashing`).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import typing as t
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from ..core.errors import UsersError
from ..core.files import Signature
from ..core.files import file_signature
from ..core.files import write_private
from ..core.settings import Settings
from .hashing import VerifiedPasswords
from .hashing import hash_slot

#: What a user name may look like (no ":", which ends the name in Basic auth).
#: Possessive, as every pattern applied to client bytes: it cannot backtrack.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}+")

#: Shortest password ``kernkoa user add`` accepts.
MIN_PASSWORD_LENGTH = 8

#: Longest password checked; longer ones are refused before hashing.
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True)
class User:
    """One user of the file."""

    name: str
    scopes: frozenset[str]


def users_file(settings: Settings) -> Path:
    """The users file the settings name (``USERS_FILE``, else ``VAR/users.json``)."""
    configured = settings.USERS_FILE
    if configured:
        return Path(settings.path) / configured
    return settings.VAR / "users.json"


_dummy_hash: str | None = None
_dummy_lock = threading.Lock()


def _dummy() -> str:
    """A hash of a random password, made once per process, for unknown users
    (called in a hash slot: making it costs a hash too)."""
    global _dummy_hash
    with _dummy_lock:
        if _dummy_hash is None:
            _dummy_hash = generate_password_hash(secrets.token_hex(16))
        return _dummy_hash


class UserStore:
    """The users file, re-read when it changes on disk (``kernkoa user add`` while
    the server runs takes effect on the next request).

    :param path: the JSON file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: Signature | None = None
        self._users: dict[str, dict[str, t.Any]] = {}
        self.verified = VerifiedPasswords()

    def users(self) -> dict[str, dict[str, t.Any]]:
        """Every user's record, by name; empty when the file does not exist."""
        try:
            stamp = file_signature(self.path)
        except FileNotFoundError:
            return {}
        with self._lock:
            if stamp != self._stamp:
                self._users = self._read()
                self._stamp = stamp
            return self._users

    def _read(self) -> dict[str, dict[str, t.Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UsersError(f"the users file {self.path} cannot be read: {error}") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise UsersError(f"the users file {self.path} has no \"users\" object")
        return {name: record for name, record in users.items()
                if isinstance(record, dict) and isinstance(record.get("hash"), str)}

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else ``None``; as slow either
        way, unless the same password was verified against the same stored
        hash lately.

        :raises PasswordChecksBusy: when no hash slot frees up in time.
        """
        if len(password) > MAX_PASSWORD_LENGTH or not USERNAME.fullmatch(name or ""):
            # Refused before hashing: no CPU for megabyte passwords, and no
            # user can have such a name, so there is no existence to hide.
            return None
        record = self.users().get(name)
        if record is None:
            with hash_slot():
                check_password_hash(_dummy(), password)
            return None
        stored = record["hash"]
        if not self.verified.remembers(name, stored, password):
            with hash_slot():
                matches = check_password_hash(stored, password)
            if not matches:
                return None
            self.verified.remember(name, stored, password)
        scopes = record.get("scopes")
        return User(name, frozenset(s for s in scopes if isinstance(s, str))
                    if isinstance(scopes, list) else frozenset())

    def add(self, name: str, password: str, scopes: t.Iterable[str] = (),
            replace: bool = False) -> None:
        """Add user ``name`` (or replace them with ``replace``), hashing ``password``.

        :raises UsersError: for a bad name, a short password, or an existing
            user without ``replace``.
        """
        if not USERNAME.fullmatch(name):
            raise UsersError(f"{name!r} is not a valid user name (letters, digits, '._@+-', "
                             "starting with a letter or digit, 64 at most)")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UsersError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise UsersError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
        users = dict(self.users())
        if name in users and not replace:
            raise UsersError(f"user {name!r} exists already (use --replace to change it)")
        with hash_slot():
            stored = generate_password_hash(password)
        users[name] = {"hash": stored, "scopes": sorted(set(scopes))}
        self._write(users)

    def remove(self, name: str) -> None:
        """Remove user ``name``.

        :raises UsersError: when there is no such user.
        """
        users = dict(self.users())
        if users.pop(name, None) is None:
            raise UsersError(f"there is no user {name!r}")
        self._write(users)

    def _write(self, users: dict[str, dict[str, t.Any]]) -> None:
        write_private(self.path, json.dumps({"users": users}, indent=2, sort_keys=True))
