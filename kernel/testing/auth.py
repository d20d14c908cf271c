"""Credentials for a test: a valid bearer token (``jwt_auth``) or Basic user
(``basic_auth``) holding the scopes the test names."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import jwt
from flask import Flask

from ..auth.users import UserStore
from ..auth.users import users_file
from ..core.settings import Settings
from ..web.state import state_of

#: How long a test token is valid, in seconds.
TOKEN_LIFETIME = 3600


def token_for(app: Flask, *scopes: str, subject: str = "tester") -> str:
    """An HS256 token ``jwt_auth`` accepts, for ``subject`` with ``scopes``, signed
    with the app's key (``HMACKEY``, else the file ``HMACKEY_FILE``)."""
    settings = state_of(app).settings
    key = settings.HMACKEY.strip() or (
        Path(settings.path) / settings.HMACKEY_FILE).read_text().strip()
    claims = {"sub": subject, "scope": " ".join(scopes),
              "exp": int(time.time()) + TOKEN_LIFETIME}
    if settings.JWT_AUDIENCE:
        claims["aud"] = settings.JWT_AUDIENCE
    return jwt.encode(claims, key, algorithm="HS256")


def basic_user(app: Flask, *scopes: str, name: str = "tester") -> tuple[str, str]:
    """Add (or replace) user ``name`` with ``scopes`` and a fresh password to the
    app's users file; return ``(name, password)`` for Basic auth."""
    password = secrets.token_urlsafe(18)
    UserStore(users_file(state_of(app).settings)).add(name, password, scopes, replace=True)
    return name, password


def seed_users(settings: Settings) -> None:
    """Give a test's ``basic_auth`` a users file to start on (it refuses an empty one):
    one user, ``tester``, without scopes, unless the file exists already."""
    path = users_file(settings)
    if "basic_auth" in settings.ADDONS and not path.exists():
        UserStore(path).add("tester", secrets.token_urlsafe(18))
