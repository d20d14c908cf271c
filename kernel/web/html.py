"""The kernel's own HTML pages (the docs page, the task page): one Jinja
environment, their security headers, their URLs.

Their templates and assets live in ``kernel/templates`` and ``kernel/static``,
rendered by an environment of their own, so they never mix with the catalog's
``templates/`` folder.
"""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import jinja2
from flask import current_app
from flask import request
from werkzeug.wrappers import Response

from .state import current_state

HERE = Path(__file__).resolve().parents[1]

#: The pages' templates and assets, kept apart from the catalog's own.
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: Sent with every HTML page: only the kernel's own scripts, styles and URLs.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
# JSON as plain text, escaped like any other value: Jinja's own ``tojson`` is
# marked safe and would end a double-quoted attribute at its first quote.
_templates.filters["json_text"] = lambda value: json.dumps(value, ensure_ascii=False)


def render_page(template: str, status: int = 200, **context: t.Any) -> Response:
    """Render one of the kernel's HTML pages, with its security headers."""
    body = _templates.get_template(template).render(
        static=_static_url, prefix=pages_url(""), **context)
    response = current_app.response_class(body, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def pages_url(path: str) -> str:
    """The URL of a kernel page (``docs``, ``static/x.js``) as the browser sees it."""
    settings = current_state().settings
    return f"{request.script_root}{settings.base.rstrip('/')}/{settings.RESERVED_PREFIX}/{path}"


def _static_url(name: str) -> str:
    return pages_url(f"static/{name}")


def site_url(url: str) -> str:
    """A catalog URL (``/shop/cart/Cart/add``) as the browser must request it."""
    return f"{request.script_root}{current_state().settings.base.rstrip('/')}{url}"
