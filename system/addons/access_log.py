"""Add-on ``access_log``: a request id and one access log line per request.

Enable it with ``ADDONS = ["access_log"]`` in ``config.py`` or
``KERNKOA_ADDONS=access_log``.

- Request id: an incoming ``X-Request-Id`` is kept when it is sane (1 to 128
  characters of letters, digits and ``-_.:``, as proxies and load balancers
  send), otherwise a fresh one is generated. It is in ``flask.g.request_id``
  for controllers and echoed in the response's ``X-Request-Id`` header, so a
  client's report can be matched to the log.
- Log line: on the ``kernkoa.access`` logger at INFO, one per request::

      request_id=3f2a... method=GET route=/message/message/message/index status=200 duration_ms=4.1

  ``route`` is the URL path (never the query string, which may carry secrets).
  For a streamed response the duration ends when the body starts.
- Tasks: ``on_task_start``/``on_task_finish`` log a line per ``_celery`` task.
"""

from __future__ import annotations

import logging
import re
import time
import typing as t
import uuid
from urllib.parse import quote

from flask import g
from flask import request
from werkzeug.wrappers import Response

#: The header carrying the request id, in and out.
HEADER = "X-Request-Id"

#: What an incoming request id must look like to be kept (no spaces, quotes or
#: control characters, which could forge log lines or headers).
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}+")

log = logging.getLogger("kernkoa.access")

# Under uWSGI nothing configures logging, and an access log that prints nothing
# is no use: without any configured handler, write INFO lines to stderr (the
# uWSGI log). A deployment that configures logging keeps full control.
if not log.handlers and not logging.getLogger().handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(_handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)

#: Characters of a path written to the log as they are; anything else (spaces,
#: newlines, non-ASCII) is percent-encoded so one request is always one line.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def request_id(incoming: str | None) -> str:
    """``incoming`` when it is a sane request id, else a new random one."""
    if incoming and SANE_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def before_request() -> None:
    """Start the clock and settle the request id."""
    g.request_started = time.perf_counter()
    g.request_id = request_id(request.headers.get(HEADER))


def after_request(response: Response) -> Response:
    """Echo the request id and write the access line."""
    rid = g.get("request_id") or request_id(request.headers.get(HEADER))
    started = g.get("request_started")
    duration_ms = (time.perf_counter() - started) * 1000 if started is not None else -1.0
    response.headers[HEADER] = rid
    log.info("request_id=%s method=%s route=%s status=%d duration_ms=%.1f",
             rid, request.method, quote(request.path, safe=_PATH_SAFE),
             response.status_code, duration_ms)
    return response


def on_task_start(*, task_id: str, name: str, **info: t.Any) -> None:
    """Log that a task started."""
    log.info("task_id=%s task=%s state=STARTED", task_id, name)


def on_task_finish(*, task_id: str, name: str, state: str, duration: float,
                   error: BaseException | None = None, **info: t.Any) -> None:
    """Log how a task ended and how long it took."""
    log.info("task_id=%s task=%s state=%s duration_ms=%.1f%s", task_id, name, state,
             duration * 1000, f" error={type(error).__name__}" if error else "")
