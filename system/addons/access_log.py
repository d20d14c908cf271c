"""Add-on ``access_log``: one log line per request and per task.

Enable it with ``ADDONS = ["access_log"]`` in ``config.py`` or
``KERNKOA_ADDONS=access_log``.

- Request line: on the ``kernkoa.access`` logger at INFO, one per request,
  errors included::

      method=GET path=/shop/Cart/show/3 route=/shop/Cart/show status=200 duration_ms=4.1 identity=-

  ``path`` is the URL path (never the query string, which may carry secrets),
  percent-encoded where needed so that one request is always one line;
  ``route`` is the catalog method it resolved to (without the arguments in
  the path), the kernel view's rule (``/status/<task_id>``), or ``-`` when the
  URL names nothing; ``identity`` is the authenticated caller's name. With
  ``LOG_FORMAT = "json"`` the same fields are keys of the line's JSON object,
  besides its ``request_id``. For a streamed response the duration ends when
  the body starts.
- Task lines, on a worker: one when a ``_celery`` task starts, one when it
  ends, with its route, state, duration and retries so far (its ``task_id``
  and ``request_id`` are the line's context, as on every line of the task).

The request id itself is the kernel's, on every request and every line
whether this add-on is on or not (``flask.g.request_id``, ``X-Request-Id``).
"""

from __future__ import annotations

import logging
import time
import typing as t
from urllib.parse import quote

from flask import Request
from flask import g
from flask import request
from werkzeug.wrappers import Response

log = logging.getLogger("kernkoa.access")

#: Characters of a path written to the log as they are; anything else (spaces,
#: newlines, non-ASCII) is percent-encoded so one request is always one line.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

#: The endpoint of the catch-all view, whose rule says nothing of the route.
_CATCH_ALL = "dispatch"


def route_of(req: Request) -> str | None:
    """What ``req`` was routed to: its catalog method, the kernel view's URL rule,
    or ``None`` when the URL names nothing."""
    resolved = getattr(req, "kernkoa_resolved", None)
    if resolved is not None and resolved[2] is not None:
        return str(resolved[1].route)
    rule = req.url_rule
    if rule is None or rule.endpoint == _CATCH_ALL:
        return None
    return rule.rule


def before_request() -> None:
    """Start the clock."""
    g.request_started = time.perf_counter()


def after_request(response: Response) -> Response:
    """Write the request's access line."""
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
    identity = g.get("identity")
    fields = {
        "method": request.method,
        "path": quote(request.path, safe=_PATH_SAFE),
        "route": route_of(request),
        "status": response.status_code,
        "duration_ms": duration_ms,
        "identity": getattr(identity, "name", None),
        "request_id": getattr(request, "request_id", None),
    }
    log.info("method=%s path=%s route=%s status=%d duration_ms=%s identity=%s",
             fields["method"], fields["path"], fields["route"] or "-", fields["status"],
             "-" if duration_ms is None else f"{duration_ms:.1f}",
             fields["identity"] or "-", extra=fields)
    return response


def on_task_start(*, task_id: str, name: str, retries: int = 0, **info: t.Any) -> None:
    """Log that a task started."""
    log.info("route=%s state=STARTED retries=%d", name, retries,
             extra={"task_id": task_id, "route": name, "state": "STARTED", "retries": retries})


def on_task_finish(*, task_id: str, name: str, state: str, duration: float,
                   error: BaseException | None = None, retries: int = 0,
                   **info: t.Any) -> None:
    """Log how a task ended, how long it took and how often it had been retried."""
    duration_ms = round(duration * 1000, 1)
    error_name = type(error).__name__ if error is not None else None
    log.info("route=%s state=%s duration_ms=%.1f retries=%d%s", name, state, duration_ms,
             retries, f" error={error_name}" if error_name else "",
             extra={"task_id": task_id, "route": name, "state": state,
                    "duration_ms": duration_ms, "retries": retries, "error": error_name})
