"""The kernel's own pages under ``/<RESERVED_PREFIX>/`` (``/_kernkoa/`` by default).

=========================  ================================================
``GET endpoints``          every route and broken file, as JSON
``GET endpoints/<url>``    one route (404 envelope when none answers)
``GET info``               versions, features, broker kind (:mod:`.info`)
``GET openapi.json``       an OpenAPI 3.1 document of every route
``GET docs``               an HTML page to read and try every route
``GET static/<file>``      the pages' own CSS and JavaScript
``GET tasks``              recent tasks, queues, workers, live (:mod:`.tasks`)
``GET health``             web, broker and result store up? (:mod:`.health`)
``GET metrics``            Prometheus metrics (:mod:`.metrics`)
=========================  ================================================

The ``PAGES`` setting switches the first six off (then they answer 404 like
any unknown URL); ``HEALTH`` the health check; ``METRICS`` (off by default)
turns the metrics on. Who may see them is decided by
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

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import send_from_directory
from werkzeug.wrappers import Response

from ..auth.layer import current_identity
from ..catalog import listing
from ..catalog.access import KERNEL_PAGE
from ..catalog.access import PUBLIC
from ..catalog.access import guarded_by
from ..core.lazy import LazyModule
from ..web.html import STATIC
from ..web.html import render_page
from ..web.html import site_url
from ..web.state import current_state
from ..web.state import state_of
from . import health
from . import info as info_module
from . import metrics as metrics_page
from . import openapi
from . import tasks

# The beat's run records are in the result store: read through Celery's stack,
# imported only by a listing that has a schedule to show.
_beatstate = LazyModule("kernel.tasks.beatstate")


def _json(value: t.Any, status: int = 200) -> Response:
    return current_app.response_class(json.dumps(value, indent=2) + "\n", status=status,
                                      mimetype="application/json")


def _listing() -> listing.Listing:
    state = current_state()
    return listing.build(state.catalog, state.settings.CATALOG)


def with_runs(found: dict[str, t.Any], app: Flask) -> dict[str, t.Any]:
    """A listing's JSON with each schedule's time zone, last and next run (read from
    the beat's records: Celery is imported only when something is scheduled)."""
    scheduled = [route for route in found["routes"] if route["schedule"] is not None]
    if scheduled:
        runs = _beatstate.schedule_runs(app)
        timezone = state_of(app).settings.SCHEDULE_TIMEZONE
        for route in scheduled:
            route["schedule"].update(
                {"timezone": timezone, "last_run": None, "next_run": None,
                 "last_task_id": None, "skipped": 0, "error": None},
                **runs.get(route["url"], {}))
    return found


def _listing_json(scanned: listing.Listing | None = None) -> dict[str, t.Any]:
    scanned = _listing() if scanned is None else scanned
    return with_runs(listing.as_json(scanned, current_app.debug),
                     current_app._get_current_object())  # type: ignore[attr-defined]


@guarded_by(KERNEL_PAGE)
def endpoints() -> Response:
    """Every route and every broken controller file."""
    return _json(_listing_json())


@guarded_by(KERNEL_PAGE)
def endpoint(url: str) -> Response:
    """The one route ``url`` names."""
    found = listing.find(current_state().catalog, current_state().settings.CATALOG, url,
                         current_app.debug)
    with_runs({"routes": [found]}, current_app._get_current_object())  # type: ignore[attr-defined]
    return _json(found)


def _info() -> dict[str, t.Any]:
    # Where the server keeps its catalog and broker is for authenticated callers only.
    return info_module.info(current_state().settings, private=current_identity() is not None)


@guarded_by(KERNEL_PAGE)
def info() -> Response:
    """Versions, features, broker kind (and, to an authenticated caller, addresses
    and the catalog root)."""
    return _json(_info())


@guarded_by(KERNEL_PAGE)
def openapi_json() -> Response:
    """The OpenAPI 3.1 document of every route."""
    layer = current_state().auth
    assert layer is not None  # installed by the factory
    doc = openapi.document(_listing(), base=site_url(""), debug=current_app.debug,
                           auth_default=layer.auth_default, auth_enabled=bool(layer.schemes))
    return _json(doc)


def _json_schemas(found: listing.Listing) -> dict[str, dict[str, t.Any]]:
    """Each route's parameters' JSON Schemas as a JSON (or CBOR) body holds them:
    what the try-it form reads its text fields as when it sends JSON or CBOR."""
    return {route.url: {slot.name: slot.converter.schema(text=False)
                        for slot in listing.all_slots(route.endpoint)}
            for route in found.routes}


@guarded_by(KERNEL_PAGE)
def docs() -> Response:
    """An HTML page listing the catalog by folder, with a form to try each method."""
    scanned = _listing()
    found = _listing_json(scanned)
    routes = sorted(found["routes"], key=lambda r: (r["folder"], r["url"]))
    folders = [(folder, list(items))
               for folder, items in itertools.groupby(routes, key=lambda r: r["folder"])]
    return render_page("docs.html", folders=folders, broken=found["broken"],
                       route_count=len(routes), schemas=_json_schemas(scanned),
                       site_url=site_url, info=_info())


@guarded_by(PUBLIC)  # the task page needs them without a login
def static(filename: str) -> Response:
    """The pages' own CSS and JavaScript."""
    return send_from_directory(STATIC, filename, max_age=300)


def register(app: Flask) -> None:
    """Add the kernel pages to ``app`` (the listing pages unless ``PAGES`` is off).

    The static assets, the health check and the task page's event stream do
    not depend on ``PAGES``: the task page and load balancers need them.
    """
    settings = state_of(app).settings
    prefix = f"{settings.base.rstrip('/')}/{settings.RESERVED_PREFIX}"
    app.add_url_rule(f"{prefix}/static/<path:filename>", "kernkoa_static", static,
                     methods=["GET", "HEAD"])
    health.register(app, prefix)
    metrics_page.register(app, prefix)
    if not settings.PAGES:
        return
    pages = Blueprint("kernkoa_pages", __name__, url_prefix=prefix)
    get = ["GET", "HEAD"]
    pages.add_url_rule("/endpoints", view_func=endpoints, methods=get)
    pages.add_url_rule("/endpoints/<path:url>", view_func=endpoint, methods=get)
    pages.add_url_rule("/info", view_func=info, methods=get)
    pages.add_url_rule("/openapi.json", view_func=openapi_json, methods=get)
    pages.add_url_rule("/docs", view_func=docs, methods=get)
    pages.add_url_rule("/tasks", view_func=tasks.tasks, methods=get)
    pages.add_url_rule("/tasks/events", view_func=tasks.tasks_events, methods=["GET"])
    app.register_blueprint(pages)
