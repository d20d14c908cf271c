"""What the client raises: an error answer, a task that failed, a wait that ran out."""

from __future__ import annotations

import typing as t

from ..core.root import KernKoaError

#: Characters of a body that is no envelope kept as an error's message.
MESSAGE_MAX = 500


class CallError(KernKoaError):
    """A 4xx or 5xx answer, with the server's JSON error envelope.

    ``status``, ``code`` and ``message`` are the envelope's; ``fields`` lists the
    refused fields of a 422; ``detail`` is what a server in debug mode adds (the
    traceback of a controller's own exception, its type and message last).
    """

    def __init__(self, method: str, url: str, status: int, envelope: t.Any) -> None:
        error = envelope.get("error") if isinstance(envelope, dict) else None
        error = error if isinstance(error, dict) else {}
        #: The HTTP status.
        self.status = status
        #: The whole decoded body (the envelope, or whatever else the server sent).
        self.envelope = envelope
        #: The envelope's machine-readable code (``""`` when the body is no envelope).
        self.code = str(error.get("code", ""))
        #: The envelope's message, else the start of the body as text.
        self.message = str(error.get("message", "")) if error else str(envelope)[:MESSAGE_MAX]
        #: The fields a 422 refused: ``[{"name", "source", "message"}]``.
        self.fields: list[dict[str, t.Any]] = list(error.get("fields") or [])
        #: What a server in debug mode tells besides.
        self.detail = str(error.get("detail") or "")
        lines = [f"{method} {url}: {status} {self.code or 'error'}: {self.message}"]
        lines += [f"  {f.get('name')} ({f.get('source')}): {f.get('message')}"
                  for f in self.fields]
        if self.detail:
            lines.append(self.detail.rstrip())
        super().__init__("\n".join(lines))


class TaskFailed(KernKoaError):
    """A task that ended ``FAILURE`` (or ``REVOKED``): its status body and the error it gave."""

    def __init__(self, task_id: str, body: dict[str, t.Any]) -> None:
        #: The final status body.
        self.body = body
        #: ``FAILURE`` or ``REVOKED``.
        self.status = str(body.get("status"))
        found = body.get("error")
        error: dict[str, t.Any] = found if isinstance(found, dict) else {}
        #: The type name of the exception the method raised (``""`` when cancelled).
        self.type = str(error.get("type", ""))
        #: Its message.
        self.error_message = str(error.get("message", ""))
        if self.status == "REVOKED":
            text = f"task {task_id} was cancelled"
        else:
            text = f"task {task_id} failed: {self.type}: {self.error_message}"
        super().__init__(text)


class TaskTimeout(KernKoaError, TimeoutError):
    """A task still unfinished when the wait for it ran out."""

    def __init__(self, task_id: str, timeout: float, body: dict[str, t.Any]) -> None:
        #: The last status body seen.
        self.body = body
        super().__init__(f"task {task_id} still {body.get('status')} after {timeout} s")
