"""The OpenAPI parts of long work: a trigger's headers and links, ``/status/{id}``,
and the JSON-or-CBOR content every answer of :mod:`kernel.pages.openapi` shares."""

from __future__ import annotations

import typing as t

#: The media types of JSON-able answers (CBOR for ``Accept: application/cbor``).
DATA_TYPES = ("application/json", "application/cbor")

ERROR_REF = {"$ref": "#/components/schemas/Error"}
STATUS_REF = {"$ref": "#/components/schemas/TaskStatus"}

#: What a ``_celery`` trigger adds to the descriptions of its error statuses.
IDEMPOTENCY_ERRORS = {
    "400": " Or the `Idempotency-Key` header is empty, too long or malformed.",
    "422": " Or the `Idempotency-Key` started a task with other fields.",
}

#: The error statuses only an ``Idempotency-Key`` brings to a ``_celery`` trigger.
IDEMPOTENCY_ONLY_ERRORS = {
    "409": "The first trigger with this `Idempotency-Key` has not sent its task (it failed, "
           "or its process died): retry after `Retry-After` seconds.",
}

#: The error statuses of ``/status/{id}`` per operation, besides the auth ones.
STATUS_ERRORS = {
    "get": {"404": "No such task, or it expired.",
            "405": "`/status/{id}` answers GET, HEAD, DELETE and OPTIONS.",
            "413": "The request carries more than `MAX_FIELDS` fields.",
            "422": "`wait` is not a number of seconds, 0 or more.",
            "503": "The result store did not answer."},
    "delete": {"404": "No such task, or it expired.",
               "405": "`/status/{id}` answers GET, HEAD, DELETE and OPTIONS.",
               "409": "The task has already finished (SUCCESS or FAILURE).",
               "413": "The request carries more than `MAX_FIELDS` fields.",
               "503": "The result store did not answer."},
}

#: An ``Idempotency-Key``: 1 to 255 visible ASCII characters but ``"`` and ``\\``,
#: bare or quoted as a whole (:mod:`kernel.tasks.idempotency`).
IDEMPOTENCY_KEY_PATTERN = '^([!#-\\[\\]-~]{1,255}|"[!#-\\[\\]-~]{1,255}")$'


def data(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """The content of a JSON-able answer: the same schema in JSON and in CBOR."""
    return {media: {"schema": schema} for media in DATA_TYPES}


def error(description: str) -> dict[str, t.Any]:
    """An error answer: the kernel's envelope."""
    return {"description": description, "content": data(ERROR_REF)}


def task_links() -> dict[str, t.Any]:
    """The links of a trigger's answer to its task's status and cancellation."""
    by_id = {"id": "$response.body#/id"}
    return {"status": {"operationId": "task_status", "parameters": by_id},
            "cancel": {"operationId": "task_cancel", "parameters": by_id}}


def trigger_headers() -> list[dict[str, t.Any]]:
    """The request headers a ``_celery`` trigger reads: ``Prefer`` and ``Idempotency-Key``."""
    prefer = {"name": "Prefer", "in": "header", "required": False,
              "description": "`wait=<seconds>` (RFC 7240): answer with the result if the "
                             "task finishes within that time (at most `STATUS_WAIT_MAX`); a "
                             "preference the kernel cannot read is ignored.",
              "schema": {"type": "string"}}
    key = {"name": "Idempotency-Key", "in": "header", "required": False,
           "description": "A key of the client's choosing (a UUID): the first trigger with "
                          "it starts the task; every later one by the same caller on this "
                          "route, within `RESULT_EXPIRES`, answers with that task "
                          "(`Idempotent-Replayed: true`), or 422 if its fields differ.",
           "schema": {"type": "string", "minLength": 1, "maxLength": 257,
                      "pattern": IDEMPOTENCY_KEY_PATTERN}}
    return [prefer, key]


def status_paths(auth_statuses: dict[str, str]) -> dict[str, t.Any]:
    """The path item of ``/status/{id}``, with these auth errors besides its own."""
    id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]

    def errors(method: str) -> dict[str, t.Any]:
        found = {**STATUS_ERRORS[method], **auth_statuses}
        return {status: error(found[status]) for status in sorted(found)}

    status_body = data(STATUS_REF)
    return {"/status/{id}": {
        "parameters": id_param,
        "get": {
            "operationId": "task_status",
            "tags": ["kernel"],
            "summary": "The state, progress, result or error of a task.",
            "parameters": [{
                "name": "wait", "in": "query", "required": False,
                "description": "Long poll: answer once the task is done, or after this "
                               "many seconds (capped by STATUS_WAIT_MAX).",
                "schema": {"type": "number", "minimum": 0},
            }],
            "responses": {"200": {"description": "The task's status.", "content": status_body},
                          **errors("get")},
        },
        "delete": {
            "operationId": "task_cancel",
            "tags": ["kernel"],
            "summary": "Cancel a task: it is REVOKED from then on (and stays readable).",
            "responses": {"200": {"description": "Cancelled.", "content": status_body},
                          **errors("delete")},
        },
    }}
