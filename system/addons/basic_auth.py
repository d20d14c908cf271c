"""Add-on ``basic_auth``: ``Authorization: Basic`` against a file of password hashes.

Enable it with ``KERNKOA_ADDONS=basic_auth``; add users with
``kernkoa user add NAME [--scope S ...]`` (the password is read without echo,
or from standard input with ``--password-stdin``). The file is ``USERS_FILE``
(default ``VAR/users.json``); see :mod:`kernel.users` for its format and the
hashing. The file is re-read when it changes, so no restart is needed.

Use it over HTTPS only: Basic credentials travel in clear in every request.
Each check costs one scrypt hash (tens of milliseconds, on purpose); for
machine clients making many calls, prefer ``jwt_auth``.
"""

from __future__ import annotations

import re
import typing as t

from flask import Flask
from flask import Request
from flask import current_app

from kernel.auth import Identity
from kernel.errors import AuthConfigError
from kernel.errors import InvalidCredentials
from kernel.errors import UsersError
from kernel.settings import Settings
from kernel.users import UserStore
from kernel.users import users_file

#: The ``Authorization`` scheme this add-on answers.
SCHEME = "Basic"

_EXTENSION = "kernkoa.basic_auth"
_UNQUOTABLE = re.compile(r'["\\\x00-\x1f\x7f]')


def init_app(app: Flask, settings: Settings) -> None:
    """Find the users file; refuse to start without one (nobody could log in)."""
    path = users_file(settings)
    store = UserStore(path)
    try:
        users = store.users()
    except UsersError as error:
        raise AuthConfigError(f"basic_auth: {error}") from None
    if not users:
        raise AuthConfigError(f"basic_auth is enabled but {path} holds no user: add one with "
                              "`kernkoa user add NAME`")
    realm = _UNQUOTABLE.sub("", str(settings.AUTH_REALM))
    app.extensions[_EXTENSION] = (store, realm)


def authenticate(request: Request) -> Identity:
    """The identity the request's Basic credentials prove.

    :raises InvalidCredentials: for malformed credentials, an unknown user or
        a wrong password (one message for all three).
    """
    store, _ = current_app.extensions[_EXTENSION]
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.username is None:
        raise InvalidCredentials("The Basic credentials are malformed.")
    try:
        user = store.verify(auth.username, auth.password or "")
    except UsersError as error:
        raise InvalidCredentials("The credentials cannot be checked.", detail=str(error)) \
            from None
    if user is None:
        raise InvalidCredentials("The user name or password is not valid.")
    return Identity(name=user.name, scopes=user.scopes, scheme=SCHEME)


def challenge(error: str | None = None, scopes: t.Sequence[str] = ()) -> str:
    """The ``WWW-Authenticate`` value that makes a browser ask for a password."""
    _, realm = current_app.extensions[_EXTENSION]
    return f'Basic realm="{realm}", charset="UTF-8"'
