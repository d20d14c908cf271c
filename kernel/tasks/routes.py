"""The task layer's part of an app: ``/status/<id>``, its event stream, and how
the catch-all view starts a ``_celery`` method.

:func:`init_app` is all the factory calls. It imports no Celery: the views
and the enqueueing code (and with them Celery's stack, ~15 MiB and ~150 ms per
process) are imported on the first task request, which most processes never
see.
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import request
from werkzeug.wrappers import Response

from ..catalog.access import RouteOfTask
from ..catalog.access import TaskOrigin
from ..catalog.access import guarded_by
from ..catalog.exposure import Endpoint
from ..core.lazy import LazyModule
from ..web.allow import ROUTED_METHODS
from ..web.allow import other_method
from ..web.state import state_of

_enqueue = LazyModule("kernel.tasks.enqueue")
_idempotency = LazyModule("kernel.tasks.idempotency")
_page = LazyModule("kernel.tasks.page")
_views = LazyModule("kernel.tasks.views")

#: The header of an idempotent trigger (``kernel.tasks.idempotency.HEADER``,
#: named here too: reading it must not import Celery).
IDEMPOTENCY_HEADER = "Idempotency-Key"

#: The HTTP methods ``/status/<id>`` serves.
STATUS_METHODS = frozenset({"GET", "HEAD", "DELETE"})


def task_origin(task_id: str) -> TaskOrigin | None:
    """Where the task ``task_id`` came from (see :func:`kernel.tasks.enqueue.task_origin`)."""
    return t.cast("TaskOrigin | None", _enqueue.task_origin(task_id))


#: A task's views are readable by whoever may run the route that started it.
FOLLOWS_TASK_ROUTE = RouteOfTask(origin=task_origin)


@guarded_by(FOLLOWS_TASK_ROUTE)
def task_status(task_id: str) -> Response:
    """``/status/<id>``: :func:`kernel.tasks.views.task_status`."""
    if request.method not in STATUS_METHODS:
        return other_method(request.method, STATUS_METHODS)
    return t.cast(Response, _views.task_status(task_id))


@guarded_by(FOLLOWS_TASK_ROUTE)
def task_status_events(task_id: str) -> Response:
    """``/status/<id>/events``: :func:`kernel.tasks.page.task_events`."""
    return t.cast(Response, _page.task_events(task_id))


def start_task(endpoint: Endpoint, route: str, args: list[t.Any],
               kwargs: dict[str, t.Any]) -> Response:
    """Send a bound ``_celery`` call to a worker and answer the trigger (202).

    With an ``Idempotency-Key`` header, a key this caller already used on this
    route answers with the task it started (:mod:`kernel.tasks.idempotency`).
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        task_id = _enqueue.enqueue(endpoint, route, args, kwargs)
        return t.cast(Response, _views.task_started(task_id))
    task_id, replayed = _idempotency.start_once(endpoint, route, args, kwargs,
                                                request._get_current_object(),  # type: ignore[attr-defined]
                                                key)
    response = t.cast(Response, _views.task_started(task_id))
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def init_app(app: Flask) -> None:
    """Add the task routes to ``app`` and let its catch-all view start tasks."""
    state = state_of(app)
    base = state.settings.base.rstrip("/")
    app.add_url_rule(f"{base}/status/<task_id>", "task_status", task_status,
                     methods=ROUTED_METHODS, provide_automatic_options=False)
    app.add_url_rule(f"{base}/status/<task_id>/events", "task_status_events",
                     task_status_events, methods=["GET"])
    state.start_task = start_task
