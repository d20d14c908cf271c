"""``config``: what controllers read as ``config.X`` (``from kernkoa import *``)."""

from __future__ import annotations

import typing as t

from flask import has_request_context
from flask import request

from ..web.state import current_settings


class ConfigProxy:
    """What controllers see as ``config``: the current settings, plus a live ``url``.

    ``config.url`` is the configured absolute base URL, or else the root URL of
    the request being served followed by the ``base`` prefix; it always ends in
    ``/``.
    """

    def __getattr__(self, name: str) -> t.Any:
        if name == "url":
            return self._url()
        return getattr(current_settings(), name)

    @staticmethod
    def _url() -> str:
        configured = current_settings().url
        if configured:
            return configured if configured.endswith("/") else configured + "/"
        base = current_settings().base.strip("/")
        root = request.url_root if has_request_context() else "/"
        # Controller URLs and /status live under ``base``: so does config.url.
        return f"{root}{base}/" if base else root

    def __repr__(self) -> str:
        return "<kernkoa config>"


#: The ``config`` object exported to controllers.
config = ConfigProxy()
