"""An OpenAPI 3.1 document for every route of the catalog.

Built from :mod:`kernel.listing`, so it describes exactly what is served:

- a GET (or DELETE) operation takes the method's fields as query parameters;
  POST, PUT and PATCH take them as a form, multipart or JSON body (the query
  string works too, but one place per field keeps the document readable);
- JSON-schema types come from the annotations, with the binder's rules:
  ``list[X]`` is an array, ``Optional[X]`` also accepts null;
- every error is the kernel's envelope (``#/components/schemas/Error``);
- a ``_celery`` method answers 202 with a task reference and a ``Location``
  header; ``TaskStatus`` describes what ``/status/<id>`` answers.

Leftover path segments (positional arguments) are not described: OpenAPI has
no optional path segments. HEAD and OPTIONS are left out as Flask does.
"""

from __future__ import annotations

import re
import types
import typing as t

from werkzeug.datastructures import FileStorage

from . import __version__
from .binding import converter_for
from .listing import Listing
from .listing import all_slots
from .listing import describe_route
from .listing import shown_error

#: Operations described per HTTP method (lower case, as OpenAPI spells them).
DESCRIBED_METHODS = ("get", "post", "put", "patch", "delete")

#: HTTP methods whose fields travel in the query string.
QUERY_METHODS = frozenset({"get", "delete"})

_SCALAR_SCHEMAS: dict[t.Any, dict[str, t.Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    FileStorage: {"type": "string", "format": "binary"},
}

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def schema_for(annotation: t.Any) -> dict[str, t.Any]:
    """The JSON schema of a parameter annotation, as the binder converts it."""
    converter = converter_for(annotation)
    origin = t.get_origin(annotation)
    inner = annotation
    if origin in (t.Union, types.UnionType):
        members = [a for a in t.get_args(annotation) if a is not type(None)]
        inner = members[0] if len(members) == 1 else t.Any
    if converter.many:
        args = t.get_args(inner)
        schema: dict[str, t.Any] = {"type": "array",
                                    "items": dict(_SCALAR_SCHEMAS.get(args[0], {}))
                                    if args else {}}
    else:
        schema = dict(_SCALAR_SCHEMAS.get(inner, {}))
    if converter.optional and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def _parameter_schema(param: dict[str, t.Any], annotation: t.Any) -> dict[str, t.Any]:
    schema = schema_for(annotation)
    if param["has_default"] and param["default"] is not None:
        schema["default"] = param["default"]
    return schema


def _operation_id(url: str, method: str) -> str:
    return method + "_" + re.sub(r"[^A-Za-z0-9_]", "_", url.strip("/"))


def _fields(route: dict[str, t.Any], annotations: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    return [p for p in route["parameters"] if p["source"] == "field"
            and p["name"] in annotations]


def _open_ended(route: dict[str, t.Any]) -> bool:
    return any(p["source"] in ("params", "kwargs") for p in route["parameters"])


def _query_parameters(route: dict[str, t.Any],
                      annotations: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    parameters = []
    for param in _fields(route, annotations):
        entry: dict[str, t.Any] = {
            "name": param["name"],
            "in": "query",
            "required": param["required"],
            "schema": _parameter_schema(param, annotations[param["name"]]),
        }
        if param["many"]:
            entry["explode"] = True  # repeated keys: ?tag=a&tag=b
        parameters.append(entry)
    return parameters


def _request_body(route: dict[str, t.Any], annotations: dict[str, t.Any]) -> dict[str, t.Any]:
    fields = _fields(route, annotations)
    schema: dict[str, t.Any] = {
        "type": "object",
        "properties": {p["name"]: _parameter_schema(p, annotations[p["name"]])
                       for p in fields},
        "additionalProperties": _open_ended(route),
    }
    required = [p["name"] for p in fields if p["required"]]
    if required:
        schema["required"] = required
    if any(p["file"] for p in fields):
        content = {"multipart/form-data": {"schema": schema}}
    else:
        content = {"application/x-www-form-urlencoded": {"schema": schema},
                   "multipart/form-data": {"schema": schema},
                   "application/json": {"schema": schema}}
    return {"required": bool(required), "content": content}


def _responses(route: dict[str, t.Any]) -> dict[str, t.Any]:
    responses: dict[str, t.Any] = {}
    if route["kind"] == "celery":
        responses["202"] = {
            "description": "Queued on a Celery worker; follow `status_url`.",
            "headers": {"Location": {"description": "The task's status URL.",
                                     "schema": {"type": "string"}}},
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/TaskAccepted"}}},
        }
        responses["200"] = {
            "description": "Sent with `Prefer: wait=<seconds>`: the task finished within "
                           "the wait; its status body, with `id` and `status_url`.",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/TaskStatus"}}},
        }
        responses["503"] = _error("The task broker did not answer.")
    else:
        responses["200"] = {
            "description": "The method's return value: HTML for a string, JSON for "
                           "a dict, list, number or null, bytes as a download.",
            "content": {"text/html": {"schema": {"type": "string"}},
                        "application/json": {"schema": {}},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}},
        }
    responses["404"] = _error("No such route.")
    responses["405"] = _error("The route does not accept this HTTP method.")
    responses["422"] = _error("Missing, unconvertible or unexpected fields.")
    responses["500"] = _error("The method failed, or its controller file did not load.")
    return responses


def _error(description: str) -> dict[str, t.Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ERROR_REF}}}


def _operation(route: dict[str, t.Any], method: str,
               annotations: dict[str, t.Any]) -> dict[str, t.Any]:
    operation: dict[str, t.Any] = {
        "operationId": _operation_id(route["url"], method),
        "tags": [route["module"]],
        "summary": route["summary"] or f"{route['class']}.{route['method']}",
        "responses": _responses(route),
    }
    if route["doc"]:
        operation["description"] = route["doc"]
    if method in QUERY_METHODS:
        parameters = _query_parameters(route, annotations)
        if parameters:
            operation["parameters"] = parameters
    else:
        operation["requestBody"] = _request_body(route, annotations)
    return operation


def _components() -> dict[str, t.Any]:
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string", "examples": ["not_found"]},
                "message": {"type": "string"},
                "fields": {"type": "array", "description": "With 422: each bad field.",
                           "items": {"type": "object", "properties": {
                               "name": {"type": "string"},
                               "source": {"type": "string"},
                               "message": {"type": "string"}}}},
                "detail": {"type": "string", "description": "Debug mode only."},
            },
        }},
    }
    accepted = {
        "type": "object",
        "required": ["id", "status", "status_url"],
        "properties": {"id": {"type": "string"},
                       "status": {"type": "string", "const": "PENDING"},
                       "status_url": {"type": "string"}},
    }
    status = {
        "type": "object",
        "required": ["status"],
        "description": "What GET /status/{id} answers: PENDING, STARTED, a custom state "
                       "with its `state`, SUCCESS with `data`, FAILURE with `error`, REVOKED.",
        "properties": {
            "status": {"type": "string"},
            "state": {"description": "The custom state's fields (PROGRESS: current, "
                                     "total, percent, message)."},
            "data": {"description": "The method's return value."},
            "error": {"type": "object", "properties": {"type": {"type": "string"},
                                                       "message": {"type": "string"}}},
        },
    }
    return {"schemas": {"Error": error, "TaskAccepted": accepted, "TaskStatus": status}}


def _status_paths() -> dict[str, t.Any]:
    id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
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
            "responses": {
                "200": {"description": "The task's status.",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/TaskStatus"}}}},
                "404": _error("No such task, or it expired."),
                "422": _error("`wait` is not a number of seconds."),
            },
        },
        "delete": {
            "operationId": "task_cancel",
            "tags": ["kernel"],
            "summary": "Cancel a task: it is REVOKED from then on.",
            "responses": {
                "200": {"description": "Cancelled.",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/TaskStatus"}}}},
                "404": _error("No such task, or it expired."),
            },
        },
    }}


def document(listing: Listing, base: str = "", debug: bool = False) -> dict[str, t.Any]:
    """The OpenAPI 3.1 document of a listing, ``/status/{id}`` included.

    :param base: the URL prefix the kernel is served under (the ``base`` setting).
    :param debug: the load errors of broken files may be shown.
    """
    paths: dict[str, t.Any] = {}
    for found in listing.routes:
        route = describe_route(found, listing.root)
        annotations = {s.name: s.converter.annotation for s in all_slots(found.endpoint)}
        item = {}
        for method in DESCRIBED_METHODS:
            if method.upper() in route["http_methods"]:
                item[method] = _operation(route, method, annotations)
        if item:
            paths[route["url"]] = item
    paths.update(_status_paths())
    doc: dict[str, t.Any] = {
        "openapi": "3.1.0",
        "info": {"title": "KernKoa catalog", "version": __version__,
                 "description": "Every routable controller method of this catalog."},
        "paths": paths,
        "components": _components(),
    }
    if base:
        doc["servers"] = [{"url": base}]
    if listing.broken:
        files = []
        for broken in listing.broken:
            name = broken.file.relative_to(listing.root).as_posix()
            shown = shown_error(broken.error, debug)
            files.append(f"{name} ({shown})" if shown else name)
        doc["info"]["description"] += (" Controller files that failed to load: "
                                       + ", ".join(files) + ".")
    return doc
