"""``GET /_kernkoa/tasks``: the recent tasks, their counts, the queues and the workers.

One snapshot (:func:`snapshot`), three forms:

- HTML for a browser, kept up to date by ``static/tasks.js`` from
- ``GET /_kernkoa/tasks/events``: the snapshot as Server-Sent Events, one
  ``tasks`` event each time it changes (polled every second, as
  :mod:`kernel.tasks.events` does for one task);
- JSON with ``?format=json``, or for a client that does not prefer HTML
  (``Accept: application/json``).

The tasks are those of the recent-tasks index (:mod:`kernel.tasks.recent`,
``RECENT_TASKS`` at most), newest first; ``?limit=`` shows fewer. Counts are
per route and state over those tasks. Queues and workers come from the
worker heartbeats, as ``/_kernkoa/health/tasks`` reads them
(:mod:`kernel.pages.health`). Who may see it: ``KERNEL_PAGE``, as every
listing page.
"""

from __future__ import annotations

import json
import typing as t
from collections import Counter

from flask import current_app
from flask import request
from flask import url_for
from werkzeug.wrappers import Response

from ..catalog.access import KERNEL_PAGE
from ..catalog.access import guarded_by
from ..core.errors import KernelError
from ..core.errors import ParameterError
from ..core.lazy import LazyModule
from ..tasks.events import change_events
from ..tasks.events import stream_response
from ..web.envelope import error_envelope
from ..web.html import render_page
from ..web.state import current_state
from . import health

_jobs = LazyModule("kernel.tasks.enqueue")
_recent = LazyModule("kernel.tasks.recent")
_views = LazyModule("kernel.tasks.views")

#: Tasks shown when ``?limit=`` does not say.
DEFAULT_LIMIT = 50

#: Seconds between two looks inside an event stream, and its longest life
#: (below uWSGI's ``harakiri``, as the task page's stream).
STREAM_INTERVAL = 1.0
STREAM_LIFE = 45.0


def requested_limit() -> int:
    """``?limit=``: 1 to ``RECENT_TASKS``; :data:`DEFAULT_LIMIT` when absent.

    :raises ParameterError: when it is not such a number (422).
    """
    most = max(1, current_state().settings.RECENT_TASKS)
    raw = request.args.get("limit")
    if raw is None:
        return min(DEFAULT_LIMIT, most)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise ParameterError([{"name": "limit", "source": "query",
                               "message": f"must be a whole number from 1 to {most}"}])
    return int(raw)


def snapshot(limit: int, queue_names: list[str] | None = None) -> dict[str, t.Any]:
    """The data of the page (see the module doc).

    :param queue_names: the catalog's queues, when known (a scan of the catalog
        finds them otherwise).
    :raises BrokerUnavailable: when the broker or the result store cannot be read.
    """
    celery, breaker = _jobs.celery_and_breaker()

    def read() -> dict[str, t.Any]:
        tasks = _recent.recent_tasks(celery, limit)
        source = health.worker_source()
        workers = source.workers()
        serving = Counter(queue for worker in workers for queue in worker.queues)
        queues = {}
        for queue in queue_names or health.catalog_queues():
            waiting = source.waiting(queue)
            queues[queue] = {"waiting": waiting.count, "workers": serving.get(queue, 0)}
        return {"tasks": tasks, "counts": count(tasks), "queues": queues,
                "workers": [{"name": w.name, "queues": w.queues, "held": w.held}
                            for w in sorted(workers, key=lambda w: w.name)]}

    return t.cast(dict[str, t.Any], breaker.call(read))


def count(tasks: list[dict[str, t.Any]]) -> dict[str, dict[str, int]]:
    """How many of ``tasks`` each route has in each state."""
    counts: dict[str, dict[str, int]] = {}
    for task in tasks:
        states = counts.setdefault(task["route"], {})
        states[task["state"]] = states.get(task["state"], 0) + 1
    return {route: dict(sorted(states.items())) for route, states in sorted(counts.items())}


def _json(body: dict[str, t.Any], status: int = 200) -> Response:
    response = current_app.response_class(json.dumps(body, indent=2) + "\n", status=status,
                                          mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@guarded_by(KERNEL_PAGE)
def tasks() -> Response:
    """The tasks page: HTML for a browser, else (or with ``?format=json``) JSON."""
    data = snapshot(requested_limit())
    if not _views.prefers_html():
        return _json(data)
    query: dict[str, t.Any] = {"limit": request.args["limit"]} if "limit" in request.args else {}
    response = render_page("tasks.html", initial=data,
                           events_url=url_for("kernkoa_pages.tasks_events", **query),
                           json_url=url_for("kernkoa_pages.tasks", format="json", **query),
                           status_base=url_for("task_status", task_id="-")[:-1])
    response.headers["Cache-Control"] = "no-store"
    return response


@guarded_by(KERNEL_PAGE)
def tasks_events() -> Response:
    """``GET /_kernkoa/tasks/events``: the snapshot as Server-Sent Events."""
    limit = requested_limit()
    # Scanned once per stream, not at each look: the catalog's queues change rarely.
    queue_names = health.catalog_queues()

    def read() -> dict[str, t.Any]:
        try:
            return {"code": 200, **snapshot(limit, queue_names)}
        except KernelError as error:  # a store that is away: the page says so, and goes on
            return {"code": error.code or 500, **error_envelope(error)}

    return stream_response(change_events(read, "tasks", life=STREAM_LIFE,
                                         interval=STREAM_INTERVAL))
