"""Add-on ``basic_auth``: ``Authorization: Basic`` against a file of password hashes.

Enable it with ``KERNKOA_ADDONS=basic_auth``; add users with
``kernkoa user add NAME [--scope S ...]`` (the password is read without echo,
or from standard input with ``--password-stdin``). The file is ``USERS_FILE``
(default ``VAR/users.json``); see :mod:`kernel.auth.users` for its format and the
hashing. The file is re-read when it changes, so no restart is needed.

Use it over HTTPS only: Basic credentials travel in clear in every request.
A check costs one scrypt hash (about 0.4 s and 32 MiB, on purpose), at most
two at once per process, and a verified password is remembered for a minute
(:mod:`kernel.auth.hashing`). After 5 failed logins in 60 s a client (its address,
see ``TRUSTED_PROXIES``) gets 429 with ``Retry-After``, without any hash
(:mod:`kernel.auth.throttle`). For machine clients making many calls, prefer
``jwt_auth``.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

from flask import Flask
from flask import Request
from flask import current_app

from kernel.auth.layer import Identity
from kernel.auth.throttle import FailureThrottle
from kernel.auth.throttle import client_key
from kernel.auth.users import UserStore
from kernel.auth.users import users_file
from kernel.core.errors import AuthConfigError
from kernel.core.errors import InvalidCredentials
from kernel.core.errors import TooManyFailures
from kernel.core.errors import UsersError
from kernel.core.settings import Settings

#: The ``Authorization`` scheme this add-on answers.
SCHEME = "Basic"

_EXTENSION = "kernkoa.basic_auth"
_UNQUOTABLE = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclass(frozen=True)
class BasicAuth:
    """The add-on's state in one app."""

    #: The users file.
    store: UserStore
    #: The realm named in challenges.
    realm: str
    #: Failed logins per client.
    throttle: FailureThrottle


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
    realm = _UNQUOTABLE.sub("", settings.AUTH_REALM)
    app.extensions[_EXTENSION] = BasicAuth(store, realm, FailureThrottle())


def authenticate(request: Request) -> Identity:
    """The identity the request's Basic credentials prove.

    :raises InvalidCredentials: for malformed credentials, an unknown user or
        a wrong password (one message for all three); each counts as a
        failure of the client.
    :raises TooManyFailures: when the client failed too often lately; nothing
        is checked then, not even credentials that would be remembered.
    :raises PasswordChecksBusy: when the process's hash slots stay busy.
    """
    state: BasicAuth = current_app.extensions[_EXTENSION]
    client = client_key(request.remote_addr)
    wait = state.throttle.retry_after(client)
    if wait is not None:
        raise TooManyFailures(wait)
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.username is None:
        state.throttle.failed(client)
        raise InvalidCredentials("The Basic credentials are malformed.")
    try:
        user = state.store.verify(auth.username, auth.password or "")
    except UsersError as error:
        # The file, not the client, is at fault: no failure counted.
        raise InvalidCredentials("The credentials cannot be checked.", detail=str(error)) \
            from None
    if user is None:
        state.throttle.failed(client)
        raise InvalidCredentials("The user name or password is not valid.")
    return Identity(name=user.name, scopes=user.scopes, scheme=SCHEME)


def challenge(error: str | None = None, scopes: t.Sequence[str] = ()) -> str:
    """The ``WWW-Authenticate`` value that makes a browser ask for a password."""
    state: BasicAuth = current_app.extensions[_EXTENSION]
    return f'Basic realm="{state.realm}", charset="UTF-8"'
