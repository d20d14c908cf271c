"""The one JSON envelope every error status is sent in, and the Flask handlers sending it.

``{"error": {"status": 404, "code": "not_found", "message": "..."}}``: the
status, code and message come from the exception (:mod:`kernel.core.errors`
declares them on each class; Werkzeug's own exceptions, Flask's 404 or 413,
give their status name as the code). The same envelope answers for the errors
nginx sends in the app's place (:func:`standard_envelope`).
"""

from __future__ import annotations

import json
import logging
import traceback
import typing as t

from flask import Flask
from flask import Response
from flask import current_app
from flask import has_request_context
from flask import request
from werkzeug import exceptions as http

from ..core.errors import ParameterError
from .cbor import cbor_or_json
from .cbor import prefers_cbor

log = logging.getLogger("kernkoa")


def envelope(status: int, code: str, message: str, **extra: t.Any) -> dict[str, t.Any]:
    """Build the JSON error envelope: ``{"error": {"status", "code", "message", ...}}``."""
    return {"error": {"status": status, "code": code, "message": message, **extra}}


def error_code(error: http.HTTPException) -> str:
    """The envelope's ``code`` for ``error``: its ``error_code`` attribute, else
    its status name in snake case (``request_entity_too_large``)."""
    code = getattr(error, "error_code", None)
    if code:
        return str(code)
    return (error.name or "error").lower().replace(" ", "_")


def error_envelope(error: http.HTTPException, **extra: t.Any) -> dict[str, t.Any]:
    """The envelope of ``error``: its status, :func:`error_code` and client message."""
    return envelope(error.code or 500, error_code(error), error.description or error.name,
                    **extra)


def standard_envelope(status: int) -> dict[str, t.Any]:
    """The envelope the kernel sends for Werkzeug's own exception of ``status``
    (Flask's 404 or 413, say), for whatever answers in the app's place (nginx)."""
    return error_envelope(http.default_exceptions[status]())


def error_response(error: http.HTTPException) -> Response:
    """Turn any HTTP exception into the JSON envelope, keeping its headers (``Allow``...);
    the same envelope in CBOR when the client's ``Accept`` prefers it."""
    extra: dict[str, t.Any] = {}
    if isinstance(error, ParameterError):
        extra["fields"] = error.fields
    detail = getattr(error, "detail", None)
    if detail and current_app.debug:
        extra["detail"] = detail
    status = error.code or 500
    body = error_envelope(error, **extra)
    response = cbor_or_json(
        body, status,
        lambda: current_app.response_class(json.dumps(body), status=status,
                                           mimetype="application/json"),
        has_request_context() and prefers_cbor(request._get_current_object()))  # type: ignore[attr-defined]
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            # add, not set: a 401 carries one WWW-Authenticate per auth scheme.
            response.headers.add(name, value)
    return t.cast(Response, response)  # current_app.response_class made it


def _handle_http_error(error: http.HTTPException) -> Response:
    detail = getattr(error, "detail", None)
    if detail and (error.code or 500) >= 500:
        log.error("%s: %s", error.description, detail)
    return error_response(error)


def _handle_unexpected(error: Exception) -> Response:
    log.exception("Unhandled error while serving the request")
    wrapped = http.InternalServerError("The server failed to answer this request.")
    if current_app.debug:
        wrapped.detail = "".join(traceback.format_exception(error))  # type: ignore[attr-defined]
    return error_response(wrapped)


def register_error_handlers(app: Flask) -> None:
    """Send every error status, Flask's own 404/405/413 included, as the JSON envelope."""
    app.register_error_handler(http.HTTPException, _handle_http_error)
    app.register_error_handler(Exception, _handle_unexpected)
