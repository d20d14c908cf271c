"""The kernel's own pages under ``/<RESERVED_PREFIX>/`` (``/_kernkoa/`` by default).

=========================  ================================================
``GET endpoints``          every route and broken file, as JSON
``GET endpoints/<url>``    one route (404 envelope when none answers)
``GET info``               versions, features, broker kind (:mod:`.info`)
``GET openapi.json``       an OpenAPI 3.1 document of every route
``GET docs``               an HTML page to read and try every route
``GET static/<file>``      the pages' own CSS and JavaScript
``GET health``             web, broker and result store up? (:mod:`.health`)
=========================  ================================================

The ``PAGES`` setting switches the first five off (then they answer 404 like
any unknown URL); ``HEALTH`` the health check. Who may see them is decided by
the auth layer (:mod:`.auth`): ``AUTH_DEFAULT``, or ``PAGES_AUTH`` to put them
behind a login while controller routes stay open.

Their templates and assets live in ``kernel/templates`` and ``kernel/static``,
rendered by a Jinja environment of their own, so they never mix with the
catalog's ``templates/`` folder.
"""

from __future__ import annotations

import itertools
import json
import typing as t
from pathlib import Path

import jinja2
from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import request
from flask import send_from_directory
from werkzeug.wrappers import Response

from ..auth.layer import AUTH_EXTENSION
from ..auth.layer import current_identity
from ..catalog import listing
from ..web.dispatch import kernel
from . import info as info_module
from . import openapi

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
    settings = kernel().settings
    return f"{request.script_root}{settings.base.rstrip('/')}/{settings.RESERVED_PREFIX}/{path}"


def _static_url(name: str) -> str:
    return pages_url(f"static/{name}")


def site_url(url: str) -> str:
    """A catalog URL (``/shop/cart/Cart/add``) as the browser must request it."""
    return f"{request.script_root}{kernel().settings.base.rstrip('/')}{url}"


def _json(value: t.Any, status: int = 200) -> Response:
    return current_app.response_class(json.dumps(value, indent=2) + "\n", status=status,
                                      mimetype="application/json")


def endpoints() -> Response:
    """Every route and every broken controller file."""
    return _json(listing.as_json(listing.build(kernel()), current_app.debug))


def endpoint(url: str) -> Response:
    """The one route ``url`` names."""
    return _json(listing.find(kernel(), url, current_app.debug))


def _info() -> dict[str, t.Any]:
    # Where the server keeps its catalog and broker is for authenticated callers only.
    return info_module.info(kernel().settings, private=current_identity() is not None)


def info() -> Response:
    """Versions, features, broker kind (and, to an authenticated caller, addresses
    and the catalog root)."""
    return _json(_info())


def openapi_json() -> Response:
    """The OpenAPI 3.1 document of every route."""
    layer = current_app.extensions[AUTH_EXTENSION]
    doc = openapi.document(listing.build(kernel()), base=site_url(""), debug=current_app.debug,
                           auth_default=layer.auth_default, auth_enabled=bool(layer.schemes))
    return _json(doc)


def docs() -> Response:
    """An HTML page listing the catalog by folder, with a form to try each method."""
    found = listing.as_json(listing.build(kernel()), current_app.debug)
    routes = sorted(found["routes"], key=lambda r: (r["folder"], r["url"]))
    folders = [(folder, list(items))
               for folder, items in itertools.groupby(routes, key=lambda r: r["folder"])]
    return render_page("docs.html", folders=folders, broken=found["broken"],
                       route_count=len(routes),
                       site_url=site_url, info=_info())


def static(filename: str) -> Response:
    """The pages' own CSS and JavaScript."""
    return send_from_directory(STATIC, filename, max_age=300)


def register(app: Flask) -> None:
    """Add the kernel pages to ``app`` (the listing pages unless ``PAGES`` is off).

    The static assets, the health check and the task page's event stream do
    not depend on ``PAGES``: the task page and load balancers need them.
    """
    from ..tasks import page as taskpage
    from . import health

    settings = app.extensions["kernkoa"].settings
    base = settings.base.rstrip("/")
    prefix = f"{base}/{settings.RESERVED_PREFIX}"
    app.add_url_rule(f"{prefix}/static/<path:filename>", "kernkoa_static", static,
                     methods=["GET", "HEAD"])
    health.register(app, prefix)
    taskpage.register(app, base)
    if not settings.PAGES:
        return
    pages = Blueprint("kernkoa_pages", __name__, url_prefix=prefix)
    get = ["GET", "HEAD"]
    pages.add_url_rule("/endpoints", view_func=endpoints, methods=get)
    pages.add_url_rule("/endpoints/<path:url>", view_func=endpoint, methods=get)
    pages.add_url_rule("/info", view_func=info, methods=get)
    pages.add_url_rule("/openapi.json", view_func=openapi_json, methods=get)
    pages.add_url_rule("/docs", view_func=docs, methods=get)
    app.register_blueprint(pages)
