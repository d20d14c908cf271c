"""An OpenAPI 3.1 document for every route of the catalog.

Built from :mod:`kernel.catalog.listing`, so it describes exactly what is served:

- a GET (or DELETE) operation takes the method's fields as query parameters;
  POST, PUT and PATCH take them as a form, multipart, JSON or CBOR body (only
  multipart for a method taking files; the query string works too, but one
  place per field keeps the document readable);
- each field's JSON Schema is built by the binder's own converter
  (:meth:`kernel.catalog.conversion.Converter.schema`): types, ``Optional``, lists,
  ``Literal`` (``enum``) and the constraints of ``Annotated`` (``minimum``,
  ``maxLength``, ``pattern``...), with the binder's one rule: query
  parameters and form fields are text, read as their type (``on`` is true, an
  empty value ``None``, one value a list of one); a JSON value must already
  be of the field's type (``null`` only for ``Optional``);
- a method whose only field is ``params`` takes any JSON body (it reads it as
  ``params.json``); every other method takes a JSON object;
- every error status the kernel can send for the operation is listed
  (:data:`CONTROLLER_ERRORS`), each with the kernel's envelope
  (``#/components/schemas/Error``);
- a ``_celery`` method answers 202 with a task reference, a ``Location``
  header and links to ``/status/{id}``; ``TaskStatus`` describes what
  ``/status/<id>`` answers.

Leftover path segments (positional arguments) are not described: OpenAPI has
no optional path segments. HEAD and OPTIONS are left out as Flask does (every
route answers OPTIONS with 204 and ``Allow``).
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

from ..catalog.access import AccessRule
from ..catalog.access import rule_for
from ..catalog.conversion import Converter
from ..catalog.exposure import Endpoint
from ..catalog.listing import Listing
from ..catalog.listing import all_slots
from ..catalog.listing import describe_route
from ..catalog.listing import shown_error
from ..core.version import __version__
from .taskdoc import DATA_TYPES
from .taskdoc import IDEMPOTENCY_ERRORS
from .taskdoc import IDEMPOTENCY_ONLY_ERRORS
from .taskdoc import STATUS_REF
from .taskdoc import data
from .taskdoc import error
from .taskdoc import status_paths
from .taskdoc import task_links
from .taskdoc import trigger_headers

#: Operations described per HTTP method (lower case, as OpenAPI spells them).
DESCRIBED_METHODS = ("get", "post", "put", "patch", "delete")

#: HTTP methods whose fields travel in the query string.
QUERY_METHODS = frozenset({"get", "delete"})

#: The media types a method taking fields reads its body from.
BODY_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", *DATA_TYPES)

#: The field names a multipart body can carry: the kernel refuses a part whose
#: name holds a backslash (:mod:`kernel.web.formbody`), as encoders read it apart.
MULTIPART_NAMES = {"pattern": "^[^\\\\]*$"}


@dataclass(frozen=True)
class Facts:
    """What decides the error statuses of one operation."""

    #: A ``_celery`` method (or ``/status``): the broker may be away.
    tasks: bool
    #: Its only field is ``params``: any body reaches it, never a 415.
    takes_any_body: bool
    #: Who may call it.
    access: AccessRule
    #: Whether an auth add-on is enabled (bad credentials are a 401 anywhere).
    auth_enabled: bool

    @property
    def guarded(self) -> bool:
        """Whether credentials are looked at (a 401 or a 429 can come back)."""
        return self.access.required or (self.auth_enabled and not self.access.public)


def _always(facts: Facts) -> bool:
    return True


#: Every error status a controller operation can answer, and when it applies.
CONTROLLER_ERRORS: tuple[tuple[str, str, t.Callable[[Facts], bool]], ...] = (
    ("400", "The body is not valid JSON or CBOR, is CBOR no JSON body could be (a tag "
            "other than 0-4...), or nests deeper than `MAX_JSON_DEPTH`.", _always),
    ("401", "Credentials are missing or not valid.", lambda f: f.guarded),
    ("403", "The credentials lack a scope the route requires.", lambda f: bool(f.access.scopes)),
    ("404", "No such route (or more path segments than the method takes).", _always),
    ("405", "The route does not accept this HTTP method; `Allow` lists those it does.",
     _always),
    ("413", "The body is over `MAX_CONTENT_LENGTH`, or the request carries more than "
            "`MAX_FIELDS` fields.", _always),
    ("415", "The body is neither JSON, CBOR nor a form.", lambda f: not f.takes_any_body),
    ("422", "Missing, unconvertible or unexpected fields, a field breaking its constraints, "
            "or a JSON body that is not an object.", _always),
    ("429", "Too many failed authentications from this client; see `Retry-After`.",
     lambda f: f.auth_enabled and not f.access.public),
    ("500", "The method failed, or its controller file did not load.", _always),
    ("503", "The task broker or result store did not answer.", lambda f: f.tasks),
)


def _parameter_schema(param: dict[str, t.Any], converter: Converter,
                      text: bool) -> dict[str, t.Any]:
    schema = converter.schema(text=text, required=param["required"])
    if param["has_default"] and param["default"] is not None:
        schema["default"] = param["default"]
    return schema


def _operation_id(url: str, method: str) -> str:
    return method + "_" + re.sub(r"[^A-Za-z0-9_]", "_", url.strip("/"))


def _fields(route: dict[str, t.Any],
            converters: dict[str, Converter]) -> list[dict[str, t.Any]]:
    return [p for p in route["parameters"] if p["source"] == "field"
            and p["name"] in converters]


def _open_ended(route: dict[str, t.Any]) -> bool:
    return any(p["source"] in ("params", "kwargs") for p in route["parameters"])


def _query_parameters(route: dict[str, t.Any],
                      converters: dict[str, Converter]) -> list[dict[str, t.Any]]:
    parameters = []
    for param in _fields(route, converters):
        entry: dict[str, t.Any] = {
            "name": param["name"],
            "in": "query",
            "required": param["required"],
            "schema": _parameter_schema(param, converters[param["name"]], text=True),
        }
        if param["many"]:
            entry["explode"] = True  # repeated keys: ?tag=a&tag=b
        parameters.append(entry)
    return parameters


def _object_schema(route: dict[str, t.Any], converters: dict[str, Converter],
                   text: bool) -> dict[str, t.Any]:
    """The body's fields as one object: as a form sends them (``text``) or as JSON."""
    fields = _fields(route, converters)
    schema: dict[str, t.Any] = {
        "type": "object",
        "properties": {p["name"]: _parameter_schema(p, converters[p["name"]], text)
                       for p in fields},
        "additionalProperties": _open_ended(route),
    }
    required = [p["name"] for p in fields if p["required"]]
    if required:
        schema["required"] = required
    return schema


def _request_body(route: dict[str, t.Any], converters: dict[str, Converter],
                  takes_any_body: bool) -> dict[str, t.Any]:
    fields = _fields(route, converters)
    form = _object_schema(route, converters, text=True)
    multipart = {**form, "propertyNames": MULTIPART_NAMES}
    if any(p["file"] for p in fields):
        content = {"multipart/form-data": {"schema": multipart}}
    elif takes_any_body:
        # Whatever comes reaches ``params``: a form's fields, or any JSON value.
        anything = {"description": "Any body: the method reads it through `params` "
                                   "(`params.json` for JSON of any type)."}
        content = {media: {"schema": anything} for media in BODY_TYPES}
        # A multipart body holds fields only.
        content["multipart/form-data"] = {"schema": {"type": "object",
                                                     "propertyNames": MULTIPART_NAMES}}
    else:
        content = {media: {"schema": form} for media in BODY_TYPES}
        content["multipart/form-data"] = {"schema": multipart}
        content.update(data(_object_schema(route, converters, text=False)))
    return {"required": "required" in form, "content": content}


def _success_responses(celery: bool) -> dict[str, t.Any]:
    if not celery:
        return {"200": {
            "description": "The method's return value: HTML for a string, JSON (or CBOR: "
                           "`Accept`) for a dict, list, number or null, bytes as a download.",
            "content": {"text/html": {"schema": {"type": "string"}}, **data({}),
                        "application/octet-stream": {"schema": {"type": "string",
                                                                "format": "binary"}}},
        }}
    return {
        "202": {
            "description": "Queued on a Celery worker; follow `status_url`.",
            "headers": {"Location": {"description": "The task's status URL.",
                                     "schema": {"type": "string"}}},
            "content": data({"$ref": "#/components/schemas/TaskAccepted"}),
            "links": task_links(),
        },
        "200": {
            "description": "Sent with `Prefer: wait=<seconds>`: the task finished within "
                           "the wait; its status body, with `id` and `status_url`.",
            "content": data(STATUS_REF),
            "links": task_links(),
        },
    }


def _operation(route: dict[str, t.Any], method: str, converters: dict[str, Converter],
               facts: Facts) -> dict[str, t.Any]:
    responses = _success_responses(route["kind"] == "celery")
    for status, description, applies in CONTROLLER_ERRORS:
        if applies(facts):
            responses[status] = error(description)
    operation: dict[str, t.Any] = {
        "operationId": _operation_id(route["url"], method),
        "tags": [route["module"]],
        "summary": route["summary"] or f"{route['class']}.{route['method']}",
        "responses": responses,
    }
    if route["doc"]:
        operation["description"] = route["doc"]
    parameters = _query_parameters(route, converters) if method in QUERY_METHODS else []
    if route["kind"] == "celery":
        parameters += trigger_headers()
        for status, addition in IDEMPOTENCY_ERRORS.items():
            responses[status]["description"] += addition
        for status, description in IDEMPOTENCY_ONLY_ERRORS.items():
            responses[status] = error(description)
    if parameters:
        operation["parameters"] = parameters
    if method not in QUERY_METHODS:
        operation["requestBody"] = _request_body(route, converters, facts.takes_any_body)
    return operation


def _components() -> dict[str, t.Any]:
    text = {"type": "string"}
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string", "examples": ["not_found"]},
                "message": text,
                "fields": {"type": "array", "description": "With 422: each bad field "
                                                           "(`name` \"\": the whole body).",
                           "items": {"type": "object",
                                     "required": ["name", "source", "message"],
                                     "properties": {"name": text, "source": text,
                                                    "message": text}}},
                "detail": {"type": "string", "description": "Debug mode only."},
            },
        }},
    }
    accepted = {
        "type": "object",
        "required": ["id", "status", "status_url"],
        "properties": {"id": text,
                       "status": {"type": "string", "const": "PENDING"},
                       "status_url": text},
    }
    status = {
        "type": "object",
        "required": ["status"],
        "description": "What GET /status/{id} answers: PENDING, STARTED, a custom state "
                       "with its `state`, SUCCESS with `data`, FAILURE with `error`, REVOKED.",
        "properties": {
            "status": text,
            "state": {"description": "The custom state's fields (PROGRESS: current, "
                                     "total, percent, message)."},
            "data": {"description": "The method's return value."},
            "error": {"type": "object", "properties": {"type": text, "message": text}},
            "id": {"type": "string", "description": "In a trigger's answer only."},
            "status_url": {"type": "string", "description": "In a trigger's answer only."},
        },
    }
    return {"schemas": {"Error": error, "TaskAccepted": accepted, "TaskStatus": status}}


def document(listing: Listing, base: str = "", debug: bool = False, auth_default: str = "open",
             auth_enabled: bool = False) -> dict[str, t.Any]:
    """The OpenAPI 3.1 document of a listing, ``/status/{id}`` included.

    :param base: the URL prefix the kernel is served under (the ``base`` setting).
    :param debug: the load errors of broken files may be shown.
    :param auth_default: the ``AUTH_DEFAULT`` setting.
    :param auth_enabled: whether an auth add-on is enabled.
    """
    paths: dict[str, t.Any] = {}
    guarded = auth_enabled
    for found in listing.routes:
        endpoint: Endpoint = found.endpoint
        route = describe_route(found, listing.root)
        converters = {s.name: s.converter for s in all_slots(endpoint)}
        access = rule_for(endpoint, auth_default)
        guarded |= access.required
        facts = Facts(endpoint.is_celery, endpoint.binder.takes_any_body, access,
                      auth_enabled)
        item = {}
        for method in DESCRIBED_METHODS:
            if method.upper() in route["http_methods"]:
                item[method] = _operation(route, method, converters, facts)
        if item:
            paths[route["url"]] = item
    # A task's status follows the rule of the route that started it.
    auth_statuses = {"401": "Credentials are missing or not valid.",
                     "403": "The credentials lack a scope the task's route requires."}
    if auth_enabled:
        auth_statuses["429"] = "Too many failed authentications from this client."
    paths.update(status_paths(auth_statuses if guarded else {}))
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
