"""Add-on ``cors``: let pages on other origins call the API from a browser.

Off unless enabled (``KERNKOA_ADDONS=cors``), and even then only for the
origins listed in ``CORS_ORIGINS`` (exact ``scheme://host[:port]`` strings; ``*``
allows any origin but never with ``CORS_ALLOW_CREDENTIALS``). Settings:
``CORS_METHODS``, ``CORS_HEADERS``, ``CORS_ALLOW_CREDENTIALS``, ``CORS_MAX_AGE``.

- A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
  is answered here, before authentication (browsers send it without
  credentials): 204 with the ``Access-Control-Allow-*`` headers, or a 403
  envelope when the origin, method or a header is not allowed.
- Other responses to an allowed origin get ``Access-Control-Allow-Origin`` (and
  ``Vary: Origin``); ``Location`` and ``WWW-Authenticate`` are exposed, so a
  script can follow a task's ``status_url`` and see why it was refused.

List it first in ``ADDONS`` so its headers wrap every other add-on's answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Flask
from flask import current_app
from flask import request
from werkzeug.wrappers import Response

from kernel.core.errors import KernelError
from kernel.core.settings import Settings
from kernel.web.envelope import error_response

#: What an allowed origin must look like (no path, no trailing slash).
ORIGIN = re.compile(r"https?+://[A-Za-z0-9.-]++(?::[0-9]{1,5}+)?+|\*")

#: Response headers a script may read.
EXPOSED = "Location, WWW-Authenticate, X-Request-Id"

_EXTENSION = "kernkoa.cors"


class CorsRefused(KernelError):
    """A preflight asked for an origin, method or header that is not allowed."""

    code = 403
    name = "Forbidden"
    error_code = "cors_refused"
    description = "This cross-origin request is not allowed."


@dataclass(frozen=True)
class CorsSettings:
    """The checked CORS settings of one app."""

    origins: frozenset[str]
    methods: frozenset[str]
    headers: frozenset[str]
    credentials: bool
    max_age: int


def init_app(app: Flask, settings: Settings) -> None:
    """Check the settings; refuse a malformed origin or ``*`` with credentials."""
    origins = [o.strip() for o in settings.CORS_ORIGINS]
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            raise ValueError(f"CORS_ORIGINS: {origin!r} is not scheme://host[:port] or *")
    if "*" in origins and settings.CORS_ALLOW_CREDENTIALS:
        raise ValueError("CORS_ORIGINS '*' cannot be combined with CORS_ALLOW_CREDENTIALS")
    app.extensions[_EXTENSION] = CorsSettings(
        origins=frozenset(o.lower() for o in origins),
        methods=frozenset(m.upper() for m in settings.CORS_METHODS),
        headers=frozenset(h.lower() for h in settings.CORS_HEADERS),
        credentials=settings.CORS_ALLOW_CREDENTIALS,
        max_age=settings.CORS_MAX_AGE,
    )


def _config() -> CorsSettings:
    return current_app.extensions[_EXTENSION]  # type: ignore[no-any-return]


def _allowed_origin(config: CorsSettings) -> str | None:
    """The value for ``Access-Control-Allow-Origin``, or ``None`` when not allowed."""
    origin = request.headers.get("Origin")
    if not origin:
        return None
    if origin.lower() in config.origins:
        return origin
    return "*" if "*" in config.origins else None


def before_request() -> Response | None:
    """Answer a preflight; leave every other request alone."""
    wanted = request.headers.get("Access-Control-Request-Method")
    if request.method != "OPTIONS" or not wanted or "Origin" not in request.headers:
        return None
    config = _config()
    origin = _allowed_origin(config)
    asked = {h.strip().lower() for h in
             request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()}
    if origin is None or wanted.upper() not in config.methods or not asked <= config.headers:
        return error_response(CorsRefused())
    response = current_app.response_class(status=204)
    response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(config.methods))
    if config.headers:
        response.headers["Access-Control-Allow-Headers"] = ", ".join(sorted(config.headers))
    response.headers["Access-Control-Max-Age"] = str(config.max_age)
    return response


def after_request(response: Response) -> Response:
    """Mark the answer readable by an allowed origin."""
    config = _config()
    origin = _allowed_origin(config)
    if origin is None:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    if origin != "*":
        response.vary.add("Origin")
    if config.credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
    if request.method != "OPTIONS":
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
    return response
