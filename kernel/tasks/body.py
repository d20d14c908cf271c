"""The status body of a task record (see the table of :mod:`kernel.tasks.views`),
and the form of the ids kernels issued before signed ids."""

from __future__ import annotations

import typing as t
import uuid

from celery import states

from ..core.errors import TaskNotFound
from ..web.requestid import checked_request_id
from .store import REQUEST_ID_KEY
from .store import TaskRecord


def _error_message(result: t.Any) -> tuple[str, str]:
    if not isinstance(result, dict):
        return "Error", str(result)
    exc_type = str(result.get("exc_type") or "Error")
    raw = result.get("exc_message")
    args = raw if isinstance(raw, (list, tuple)) else [raw] if raw is not None else []
    if exc_type == "TimeLimitExceeded":
        limit = args[0] if args else "?"
        return exc_type, (f"the task ran longer than its hard time limit of {limit} s; "
                          "its worker process was killed")
    return exc_type, " ".join(str(a) for a in args)


def status_body(record: TaskRecord) -> dict[str, t.Any]:
    """The status body of a task record (see the module docstring), ending with
    the ``request_id`` of the request that started the task once a worker has
    stored it (never while the task is queued).

    :raises TaskNotFound: when the id was never issued or has expired.
    """
    body = _state_body(record)
    request_id = checked_request_id(record.meta.get(REQUEST_ID_KEY)) if record.meta else None
    if request_id is not None:
        body[REQUEST_ID_KEY] = request_id
    return body


def _state_body(record: TaskRecord) -> dict[str, t.Any]:
    if record.revoked:
        return {"status": states.REVOKED}
    meta = record.meta
    if meta is None:
        if record.issued is None:
            raise TaskNotFound()
        return {"status": states.PENDING}
    state = meta.get("status", states.PENDING)
    result = meta.get("result")
    if state == states.SUCCESS:
        return {"status": state, "data": result}
    if state in (states.FAILURE, states.RETRY):
        exc_type, message = _error_message(result)
        return {"status": state, "error": {"type": exc_type, "message": message}}
    if state in (states.PENDING, states.STARTED, states.RECEIVED, states.REVOKED):
        return {"status": state}
    return {"status": state, "state": result}


def valid_task_id(task_id: str) -> bool:
    """Whether ``task_id`` has the form of an old-form id (a UUID, as kernels issued
    before signed ids: :mod:`kernel.tasks.ids`)."""
    try:
        return str(uuid.UUID(task_id)) == task_id.lower()
    except ValueError:
        return False
