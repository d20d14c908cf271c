"""Flask's signed-cookie sessions, without their per-request cost when unused.

Flask's ``SecureCookieSessionInterface`` builds an itsdangerous serializer on
every request, used or not: about 19 µs per request in ``open_session``, more
than all of KernKoa's dispatch (see bench/RESULTS.md). This subclass keeps the
same cookies, signatures and behaviour and only avoids work nobody asked for:

- the serializer is built once per secret key (and fallbacks), then reused;
- a request without a session cookie gets an empty session without touching it;
- saving a session that was never read, changed or loaded does nothing, which
  is exactly what Flask's own ``save_session`` ends up doing for it.
"""

from __future__ import annotations

import typing as t

from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import SessionMixin

if t.TYPE_CHECKING:
    from flask import Flask
    from flask import Request
    from flask import Response
    from itsdangerous import URLSafeTimedSerializer


class CachedSecureCookieSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie sessions with a cached serializer and a free no-session path."""

    def __init__(self) -> None:
        self._serializer: tuple[t.Any, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Flask's serializer, rebuilt only when the secret key or its fallbacks change."""
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = self._serializer
        if cached is None or cached[0] != key:
            cached = self._serializer = (key, super().get_signing_serializer(app))
        return cached[1]

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Flask's ``open_session``; with no cookie header there is nothing to verify."""
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Flask's ``save_session``, skipped for an empty session nobody touched."""
        if not session and not session.accessed and not session.modified:
            return
        super().save_session(app, session, response)
