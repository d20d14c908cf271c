"""The browser side of ``/status/<id>``: the live task page and its event stream.

- :func:`status_page` is what ``/status/<id>`` sends a browser (HTML preferred
  in ``Accept``): a progress bar, the custom state's fields, the result or the
  error, and a cancel button, kept up to date by ``static/status.js``.
- ``GET /status/<id>/events`` streams the same status bodies as Server-Sent
  Events (:mod:`kernel.tasks.events`); the page polls ``/status/<id>`` instead when
  the stream cannot be opened.
"""

from __future__ import annotations

import typing as t

from flask import request
from flask import url_for
from werkzeug.wrappers import Response

from ..core.errors import KernelError
from ..core.errors import TaskNotFound
from ..web.envelope import error_envelope
from ..web.html import render_page
from .body import status_body
from .enqueue import celery_and_breaker
from .enqueue import known_task_id
from .enqueue import read_task
from .events import events_response
from .ids import describe_task_id
from .recent import task_timing

#: Longest life of one event stream, in seconds (then the browser reconnects).
#: Below the shipped uWSGI ``harakiri`` (60 s), which would kill the worker
#: process, and every request it serves, under a stream that outlived it.
STREAM_LIFE = 45.0

#: Seconds between two looks at the task's status inside a stream.
STREAM_INTERVAL = 0.5


def status_page(body: dict[str, t.Any], status: int = 200) -> Response:
    """The HTML task page of the task being asked for, starting from ``body``,
    with its route and, from the recent-tasks index, when it started and ended."""
    task_id = str((request.view_args or {}).get("task_id", ""))
    signed = describe_task_id(task_id)
    try:
        celery, breaker = celery_and_breaker()
        timing = breaker.call(lambda: task_timing(celery, task_id))
    except KernelError:
        timing = {}  # the page still shows the status, and says so when it cannot
    return render_page(
        "status.html", status=status, task_id=task_id, initial=body,
        route=signed.route if signed is not None else timing.get("route") or "",
        timing=timing,
        status_url=url_for("task_status", task_id=task_id),
        events_url=url_for("task_status_events", task_id=task_id),
    )


def read_status(task_id: str) -> tuple[int, dict[str, t.Any]]:
    """``(HTTP status, body)`` as ``GET /status/<id>`` would answer, errors included."""
    try:
        if not known_task_id(task_id):
            raise TaskNotFound()
        return 200, status_body(read_task(task_id))
    except KernelError as error:
        return error.code or 500, error_envelope(error)


def task_events(task_id: str) -> Response:
    """``GET /status/<id>/events``: the task's status as Server-Sent Events."""
    if not known_task_id(task_id):
        raise TaskNotFound()
    return events_response(read_status, task_id, life=STREAM_LIFE, interval=STREAM_INTERVAL)
