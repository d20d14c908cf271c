"""Request ids: the one a client or proxy sent, checked, or a new one.

Every request gets an id, settled once from its ``X-Request-Id`` header
(:func:`request_id_of`, kept in the WSGI environ):
the header's value when it is 1 to 128 characters of ``A-Z a-z 0-9 . _ -``,
as proxies and load balancers send, else 32 new random hex digits. A value
with anything else (spaces, quotes, control characters, non-ASCII, a colon)
is replaced, never repaired: it could forge log lines or headers, and half of
it would match nothing in the client's own log.

While the request is served the id is the log context's
(:data:`kernel.core.logs.REQUEST_ID`) and ``flask.g.request_id``; every
response carries it back in ``X-Request-Id``, errors included (see
:mod:`kernel.web.flaskapp`), and a task the request starts carries it to its
worker (:mod:`kernel.tasks.enqueue`).
"""

from __future__ import annotations

import os
import re
import typing as t

#: The header carrying the request id, in and out.
HEADER = "X-Request-Id"

#: The header as the WSGI environ names it.
ENVIRON_HEADER = "HTTP_X_REQUEST_ID"

#: Where the request's settled id is kept in its WSGI environ.
ENVIRON_KEY = "kernkoa.request_id"

#: What an incoming request id must look like to be kept.
SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}+")


def new_request_id() -> str:
    """A fresh request id: 128 random bits as 32 hex digits."""
    return os.urandom(16).hex()


def checked_request_id(value: object) -> str | None:
    """``value`` when it is a sane request id, else ``None``."""
    if isinstance(value, str) and SANE_ID.fullmatch(value):
        return value
    return None


def settle_request_id(incoming: str | None) -> str:
    """``incoming`` when it is a sane request id, else a new one."""
    return checked_request_id(incoming) or new_request_id()


def request_id_of(environ: dict[str, t.Any]) -> str:
    """The id of the request ``environ`` describes, settled on first use and kept in it."""
    request_id: str | None = environ.get(ENVIRON_KEY)
    if request_id is None:
        request_id = environ[ENVIRON_KEY] = settle_request_id(environ.get(ENVIRON_HEADER))
    return request_id
