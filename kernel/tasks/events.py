"""Server-Sent Events for a task's status: ``/status/<id>/events``.

The stream sends one ``status`` event each time the task's status body changes
(the same JSON ``GET /status/<id>`` answers), a comment line as a heartbeat
while nothing changes, and ends:

- after a final status (SUCCESS, FAILURE, REVOKED, or a 404 body), with an
  ``end`` event so the browser stops instead of reconnecting;
- after ``life`` seconds in any case. A stream holds a server worker (a whole
  uWSGI process) for as long as it is open, so its life is capped; the browser's
  ``EventSource`` reconnects by itself ``retry`` milliseconds later.

:func:`change_events` is the loop underneath, for any JSON that changes (the
tasks page streams its snapshot with it).

The response carries ``X-Accel-Buffering: no`` so nginx passes each event on at
once instead of buffering the stream.
"""

from __future__ import annotations

import json
import time
import typing as t

from flask import Response
from flask import current_app
from flask import stream_with_context

#: States after which a task's status never changes again.
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

#: Reads a task's status: ``(HTTP status, body)`` as ``GET /status/<id>`` answers.
StatusReader = t.Callable[[str], tuple[int, dict[str, t.Any]]]


def event(name: str, data: t.Any) -> str:
    """One SSE event: ``event:`` line, ``data:`` line (JSON on one line), blank line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def is_final(code: int, body: dict[str, t.Any]) -> bool:
    """Whether nothing more will happen to this task (finished, or unknown).

    Any other error (a 503 while the result store is down) is passing: the
    stream goes on and shows the status again once it can be read.
    """
    return code == 404 or body.get("status") in FINAL_STATES


def status_events(
    read: StatusReader,
    task_id: str,
    *,
    life: float = 60.0,
    interval: float = 0.5,
    heartbeat: float = 15.0,
    retry_ms: int = 1000,
    clock: t.Callable[[], float] = time.monotonic,
    sleep: t.Callable[[float], None] = time.sleep,
) -> t.Iterator[str]:
    """The event stream of one task, polled every ``interval`` seconds for ``life`` seconds."""
    def payload() -> dict[str, t.Any]:
        code, body = read(task_id)
        return {"code": code, **body}

    return change_events(payload, "status", lambda p: is_final(p["code"], p), life=life,
                         interval=interval, heartbeat=heartbeat, retry_ms=retry_ms,
                         clock=clock, sleep=sleep)


def change_events(
    read: t.Callable[[], dict[str, t.Any]],
    name: str,
    done: t.Callable[[dict[str, t.Any]], bool] = lambda payload: False,
    *,
    life: float = 60.0,
    interval: float = 0.5,
    heartbeat: float = 15.0,
    retry_ms: int = 1000,
    clock: t.Callable[[], float] = time.monotonic,
    sleep: t.Callable[[float], None] = time.sleep,
) -> t.Iterator[str]:
    """An event ``name`` each time ``read()`` answers something new, polled every
    ``interval`` seconds; an ``end`` event once ``done(payload)``; no more after
    ``life`` seconds (the browser reconnects)."""
    yield f"retry: {retry_ms}\n\n"
    started = clock()
    last: t.Any = None
    last_sent = started
    while True:
        payload = read()
        if payload != last:
            last = payload
            last_sent = clock()
            yield event(name, payload)
        if done(payload):
            yield event("end", {"reason": "final"})
            return
        now = clock()
        if now - started >= life:
            # No "end" event: the browser reconnects and gets a fresh stream.
            return
        if now - last_sent >= heartbeat:
            last_sent = now
            yield ": keep-alive\n\n"
        sleep(interval)


def stream_response(stream: t.Iterator[str]) -> Response:
    """A streamed ``text/event-stream`` response that nginx does not buffer."""
    response = current_app.response_class(stream_with_context(stream),
                                          mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def events_response(read: StatusReader, task_id: str, life: float = 60.0,
                    interval: float = 0.5) -> Response:
    """The streamed ``text/event-stream`` response of one task."""
    return stream_response(status_events(read, task_id, life=life, interval=interval))
