"""HTTP faces of long work: the trigger's answer and ``/status/<id>``.

``GET /status/<id>`` answers, with ``Cache-Control: no-store``:

==========================  ===================================================
task                        body
==========================  ===================================================
queued                      ``{"status": "PENDING"}``
running, no progress yet    ``{"status": "STARTED"}``
custom state                ``{"status": "<state>", "state": <meta>}``
done                        ``{"status": "SUCCESS", "data": <return value>}``
raised                      ``{"status": "FAILURE", "error": {"type", "message"}}``
cancelled                   ``{"status": "REVOKED"}``
never issued or expired     404 error envelope
==========================  ===================================================

Once a worker has taken the task, each body ends with ``"request_id"``: the id
of the request that started it (:mod:`kernel.tasks.tasklogs`).

JSON unless the client prefers HTML (a browser), which gets the live task page
of :mod:`kernel.tasks.page`, or CBOR (``Accept: application/cbor``), which gets
the same body in CBOR; ``?format=json`` forces JSON. ``?wait=<seconds>``
answers once the task has finished, or when the wait is over (a long poll,
:mod:`kernel.tasks.waiting`).
``DELETE /status/<id>`` cancels the task.
"""

from __future__ import annotations

import json
import typing as t

from celery import states
from flask import Request
from flask import current_app
from flask import redirect
from flask import request
from flask import url_for
from werkzeug.wrappers import Response

from ..core.errors import BrokerUnavailable
from ..core.errors import TaskFinished
from ..core.errors import TaskNotFound
from ..web.cbor import cbor_or_json
from ..web.cbor import prefers_cbor
from ..web.state import current_state
from .body import status_body
from .enqueue import cancel_task
from .enqueue import known_task_id
from .enqueue import read_task
from .enqueue import read_task_for_request
from .events import FINAL_STATES
from .ids import is_signed_form
from .page import status_page
from .store import TaskRecord
from .waiting import is_settled
from .waiting import preferred_wait
from .waiting import wait_for_task
from .waiting import wait_seconds


def _query_value(req: Request, name: str) -> str | None:
    """The first value of query field ``name``, or ``None``: without parsing an
    empty query string, and without the exception ``args.get`` raises and
    catches inside for a missing field (per request, on every ``/status``)."""
    if not req.environ.get("QUERY_STRING"):
        return None
    args = req.args
    return args[name] if name in args else None


def prefers_html(req: Request | None = None) -> bool:
    """Whether the client would rather have HTML than JSON (a browser).

    :param req: the request, when the caller holds it (default: the current one).
    """
    if req is None:
        req = request._get_current_object()  # type: ignore[attr-defined]
    if _query_value(req, "format") == "json":
        return False
    # Parsing Accept costs more than the rest of a /status answer, and only
    # a header naming HTML can prefer it (machines mostly send */* or JSON).
    if "html" not in req.environ.get("HTTP_ACCEPT", "").lower():
        return False
    accept = req.accept_mimetypes
    return accept.best_match(["application/json", "text/html"]) == "text/html" and (
        accept["text/html"] > accept["application/json"]
    )


def status_response(body: dict[str, t.Any], status: int = 200,
                    req: Request | None = None) -> Response:
    """Send a status body: JSON, the HTML page when the client prefers HTML, or CBOR.

    :param req: the request, when the caller holds it (default: the current one).
    """
    if req is None:
        req = request._get_current_object()  # type: ignore[attr-defined]
    if prefers_html(req):
        response = status_page(body, status)
    else:
        response_class = current_app.response_class
        # json.dumps keeps "status" first with KernKoa's spacing:
        # {"status": "SUCCESS", "data": 10}, byte for byte as clients saw it.
        response = cbor_or_json(
            body, status,
            lambda: response_class(json.dumps(body), status=status, mimetype="application/json"),
            _prefers_cbor(req))
    response.headers["Cache-Control"] = "no-store"
    return response


def task_status(task_id: str) -> Response:
    """``GET``/``HEAD``/``DELETE /status/<id>``."""
    if not known_task_id(task_id):
        raise TaskNotFound()
    req = request._get_current_object()  # type: ignore[attr-defined]
    # The auth layer read an old-form id's record for its decision: the same
    # one answers. A signed id's decision read nothing: its one read is here.
    record = read_task(task_id) if is_signed_form(task_id) else read_task_for_request(task_id)
    body = status_body(record)
    method = req.method
    wait = _query_value(req, "wait")
    if wait is not None and method == "GET":
        seconds = wait_seconds(wait)  # refused when malformed, settled task or not
        if not is_settled(record) and (waited := _wait(task_id, seconds)) is not None:
            body = status_body(waited)
    if method == "DELETE":
        if body["status"] in FINAL_STATES - {states.REVOKED}:
            raise TaskFinished()
        cancel_task(task_id)
        body = {"status": states.REVOKED}
    return status_response(body, req=req)


def task_started(task_id: str) -> Response:
    """The trigger's answer: 202 with the id and status URL, or a redirect for browsers.

    Sent with ``Prefer: wait=<seconds>``, it first waits that long (at most
    ``STATUS_WAIT_MAX``) for the task, and answers 200 with the id, the status
    body and the status URL if the task is done by then.
    """
    status_url = url_for("task_status", task_id=task_id, _external=True)
    if prefers_html():
        return redirect(status_url, code=303)
    done = _finished_within_preferred_wait(task_id)
    if done is not None:
        return _json_or_cbor({"id": task_id, **done, "status_url": status_url}, 200)
    response = _json_or_cbor({"id": task_id, "status": states.PENDING,
                              "status_url": status_url}, 202)
    response.headers["Location"] = status_url
    return response


def _prefers_cbor(req: Request | None = None) -> bool:
    if req is None:
        req = request._get_current_object()  # type: ignore[attr-defined]
    return _query_value(req, "format") != "json" and prefers_cbor(req)


def _json_or_cbor(body: dict[str, t.Any], status: int) -> Response:
    def as_json() -> Response:
        response = t.cast(Response, current_app.json.response(body))
        response.status_code = status
        return response

    return cbor_or_json(body, status, as_json, _prefers_cbor())


def _wait(task_id: str, seconds: float) -> TaskRecord | None:
    """The task's record after waiting up to ``seconds`` for it, cut to
    ``STATUS_WAIT_MAX``; ``None`` when that leaves no wait at all."""
    seconds = min(seconds, current_state().settings.STATUS_WAIT_MAX)
    return wait_for_task(task_id, seconds) if seconds > 0 else None


def _finished_within_preferred_wait(task_id: str) -> dict[str, t.Any] | None:
    try:
        record = _wait(task_id, preferred_wait(request.headers.getlist("Prefer")) or 0)
    except BrokerUnavailable:
        return None  # it was sent: the client follows it as without the wait
    return status_body(record) if record is not None and is_settled(record) else None
