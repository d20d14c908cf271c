"""Shared pieces of the auth tests: a controller tree with access rules, tokens and
Basic credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import typing as t
from pathlib import Path

import jwt

#: The password of ``alice``, the user of the ``users`` fixture.
PASSWORD = "correct horse battery"

#: A good shared key (64 hex characters).
KEY = "3f1c9a7e5b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e"

CONTROLLERS = """
from flask import g
from kernkoa import *


class Open:
    def index(self):
        who = g.identity.name if g.identity else None
        return {"open": True, "who": who}


@requires("reports")
class Reports:
    def index(self):
        return {"reports": True, "who": g.identity.name, "scopes": sorted(g.identity.scopes)}

    @public
    def summary(self):
        return {"summary": True}

    @requires("admin")
    def purge(self):
        return {"purged": True}

    def build_celery(self, task):
        return "built"


@public
class Pub:
    def index(self):
        return {"public": True}

    @requires()
    def private(self):
        return {"private": True}


class Jobs:
    @public
    def open_celery(self, task):
        return "open"

    def default_celery(self, task):
        return "default"
"""


def token(key: str = KEY, algorithm: str = "HS256", **claims: t.Any) -> str:
    """A signed JWT; ``exp`` one hour ahead unless given (``exp=None`` drops it)."""
    claims.setdefault("exp", int(time.time()) + 3600)
    if claims["exp"] is None:
        del claims["exp"]
    return jwt.encode(claims, key, algorithm=algorithm)


def b64(data: bytes) -> str:
    """Base64url without padding, as in JWTs."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, t.Any], claims: dict[str, t.Any], secret: bytes | None) -> str:
    """A hand-made JWT: signed with HMAC-SHA256 over ``secret``, or unsigned when ``None``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(),
                                                    hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header for Basic credentials."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(value: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {value}"}


#: A task only an admin may run (and follow): ``vault.py``.
VAULT = """
from kernkoa import *


class Vault:
    @requires("admin")
    def open_celery(self, task):
        return "the admin's secret"
"""

#: ``vault.py`` as it may be found later, by the failure of route resolution it
#: makes (``None``: the file is gone).
BROKEN_VAULTS: dict[str, str | None] = {
    "syntax error": VAULT.replace("def open_celery(self, task):", "def open_celery(self, task)"),
    "import error": "import kernkoa_no_such_module\n" + VAULT,
    "method renamed": VAULT.replace("def open_celery", "def opened_celery"),
    "class removed": VAULT.replace("class Vault:", "class Safe:"),
    "file deleted": None,
}


def write_version(path: Path, source: str | None) -> None:
    """Write ``source`` to ``path`` so every loader sees a new version (a later
    modification time), or delete the file for ``None``."""
    if source is None:
        path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    path.write_text(source)
    os.utime(path, ns=(time.time_ns(), max(before, path.stat().st_mtime_ns) + 1_000_000_000))
