"""Every error the kernel raises, and the one JSON envelope they are all sent in.

Errors are Werkzeug HTTP exceptions, so Flask already knows their status codes.
Each carries a client-facing ``message`` and, where useful, a ``detail`` kept
for the log and shown to clients only in debug mode.
"""

from __future__ import annotations

import json
import logging
import traceback
import typing as t

from flask import Flask
from flask import Response
from flask import current_app
from werkzeug import exceptions as http

log = logging.getLogger("kernkoa")


class KernelError(http.HTTPException):
    """Base of the kernel's own HTTP errors.

    :param message: what the client is told.
    :param detail: what went wrong internally; logged, and shown to the
        client only in debug mode.
    """

    #: Machine-readable error code sent in the envelope; derived from the
    #: status name when a subclass does not set one.
    error_code: str | None = None

    def __init__(self, message: str | None = None, detail: str | None = None) -> None:
        super().__init__(description=message or self.description)
        #: Internal explanation, for logs and debug mode.
        self.detail = detail


class RouteNotFound(KernelError):
    """The URL does not name a routable controller method."""

    code = 404
    name = "Not Found"
    description = "No controller method answers this URL."


class FileOutsideFolder(RouteNotFound):
    """A catalog file leads outside its folder (a symlink), or is no regular file."""


class MethodNotAllowed(http.MethodNotAllowed):
    """The controller method exists but does not accept this HTTP method."""

    description = "This URL does not accept that HTTP method."


class BadRequestBody(KernelError):
    """The request body could not be parsed."""

    code = 400
    name = "Bad Request"
    description = "The request body could not be parsed."


class UnsupportedBody(KernelError):
    """The body is of a media type the kernel reads no fields from, sent to a
    method that takes fields."""

    code = 415
    name = "Unsupported Media Type"
    error_code = "unsupported_media_type"
    description = ("The request body must be JSON (application/json) or a form "
                   "(application/x-www-form-urlencoded, multipart/form-data).")


class ParameterError(KernelError):
    """Arguments for the controller method were missing or could not be converted.

    :param fields: one entry per offending field, each a dict with ``name``,
        ``source`` (``query``, ``form``, ``json``, ``path``) and ``message``.
    """

    code = 422
    name = "Unprocessable Entity"
    description = "The request's fields do not fit the method's parameters."

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__()
        #: The fields that failed, as sent to the client.
        self.fields = fields


class ControllerLoadError(KernelError):
    """A controller file failed to import; only its own routes answer with this."""

    code = 500
    name = "Internal Server Error"
    error_code = "controller_error"
    description = "The controller for this URL failed to load."


class AddonError(RuntimeError):
    """An add-on named in ``config.ADDONS`` is missing, fails to import or is malformed."""


class AuthConfigError(RuntimeError):
    """The auth settings cannot work; raised at start-up, never at request time."""


class AuthenticationRequired(KernelError):
    """401: credentials are missing or invalid.

    :param challenges: ``WWW-Authenticate`` values, one per enabled scheme.
    """

    code = 401
    name = "Unauthorized"
    error_code = "unauthorized"
    description = "Authentication is required to call this URL."

    def __init__(self, message: str | None = None, detail: str | None = None,
                 challenges: t.Sequence[str] = ()) -> None:
        super().__init__(message, detail)
        self.challenges = list(challenges)

    def get_headers(self, *args: t.Any, **kwargs: t.Any) -> list[tuple[str, str]]:
        """Werkzeug's headers plus one ``WWW-Authenticate`` per challenge."""
        headers = super().get_headers(*args, **kwargs)
        return [*headers, *(("WWW-Authenticate", c) for c in self.challenges)]


class InvalidCredentials(AuthenticationRequired):
    """401: credentials were sent, and they are not valid."""

    error_code = "invalid_credentials"
    description = "The credentials sent are not valid."


class InsufficientScope(KernelError):
    """403: the caller is authenticated but lacks a scope the route requires."""

    code = 403
    name = "Forbidden"
    error_code = "insufficient_scope"
    description = "The credentials do not grant access to this URL."

    def __init__(self, missing: t.Iterable[str], challenge: str | None = None) -> None:
        missing = sorted(missing)
        super().__init__(f"Missing scope: {' '.join(missing)}.")
        self.challenge = challenge

    def get_headers(self, *args: t.Any, **kwargs: t.Any) -> list[tuple[str, str]]:
        """Werkzeug's headers plus the Bearer ``insufficient_scope`` challenge (RFC 6750)."""
        headers = super().get_headers(*args, **kwargs)
        return [*headers, ("WWW-Authenticate", self.challenge)] if self.challenge else headers


class AccessUndecidable(KernelError):
    """403: the access rule of the URL cannot be found, so no credentials pass
    (a task whose route no longer loads and whose rule was not recorded)."""

    code = 403
    name = "Forbidden"
    error_code = "access_undecidable"
    description = "Access to this URL cannot be decided right now, so it is refused."


class TooManyFailures(KernelError):
    """429: this client failed to log in too often lately; it is refused
    without checking, until ``retry_after`` seconds have passed."""

    code = 429
    name = "Too Many Requests"
    error_code = "too_many_failures"
    description = "Too many failed logins from this client; try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    def get_headers(self, *args: t.Any, **kwargs: t.Any) -> list[tuple[str, str]]:
        """Werkzeug's headers plus ``Retry-After``."""
        return [*super().get_headers(*args, **kwargs), ("Retry-After", str(self.retry_after))]


class PasswordChecksBusy(KernelError):
    """503: every password-hash slot of the process stayed busy for the whole wait."""

    code = 503
    name = "Service Unavailable"
    error_code = "busy"
    description = "Too many logins are being checked right now; try again shortly."

    def get_headers(self, *args: t.Any, **kwargs: t.Any) -> list[tuple[str, str]]:
        """Werkzeug's headers plus ``Retry-After``."""
        return [*super().get_headers(*args, **kwargs), ("Retry-After", "1")]


class ConversionError(ValueError):
    """A value does not fit a parameter's annotation."""


class DatabaseConfigError(ValueError):
    """An entry of ``config.databases`` cannot be turned into an engine."""


class UnknownDatabase(KeyError):
    """``dbs[name]`` for a name that ``config.databases`` does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown database"


class BrokerUnavailable(KernelError):
    """The task broker or result store cannot be reached right now."""

    code = 503
    name = "Service Unavailable"
    error_code = "broker_unavailable"
    description = "Background tasks are unavailable right now; try again shortly."


class TooManyFields(KernelError):
    """The request carries more fields than ``MAX_FIELDS``."""

    code = 413
    name = "Request Entity Too Large"
    error_code = "too_many_fields"
    description = "The request carries too many fields."


class FormTooLarge(KernelError):
    """An urlencoded form is larger than ``MAX_FORM_MEMORY_SIZE``."""

    code = 413
    name = "Request Entity Too Large"
    error_code = "form_too_large"
    description = "The form is larger than this server reads into memory."


class JsonTooLarge(KernelError):
    """The JSON body holds more arrays and objects than ``MAX_JSON_CONTAINERS``."""

    code = 413
    name = "Request Entity Too Large"
    error_code = "json_too_large"
    description = "The JSON body holds more arrays and objects than this server parses."


class JsonTooDeep(BadRequestBody):
    """The JSON body nests deeper than ``MAX_JSON_DEPTH``."""

    error_code = "json_too_deep"
    description = "The JSON body is nested too deeply."


class CatalogLoadError(LookupError):
    """``load`` was asked for something it cannot give: a bad name, a missing
    file, a file that fails to import, or a missing class or attribute."""


class InsecureSecretError(RuntimeError):
    """The configured secret key is empty or well known."""


class SettingsError(ValueError):
    """A setting, usually from the environment, has a value of the wrong type."""


class TaskNotFound(KernelError):
    """No task was issued with this id, or its record expired."""

    code = 404
    name = "Not Found"
    error_code = "not_found"
    description = "No task has this id (it was never issued, or its result expired)."


class TaskFinished(KernelError):
    """A task that already finished cannot be cancelled."""

    code = 409
    name = "Conflict"
    error_code = "conflict"
    description = "The task has already finished."


class TaskCancelled(Exception):
    """Raised inside a task at its first progress report after a cancellation."""


class TaskTimeLimitExceeded(Exception):
    """A task ran past its soft time limit."""


class UsersError(ValueError):
    """A user name, password or users file is not acceptable."""


def _error_code(error: http.HTTPException) -> str:
    code = getattr(error, "error_code", None)
    if code:
        return code
    return (error.name or "error").lower().replace(" ", "_")


def envelope(status: int, code: str, message: str, **extra: t.Any) -> dict[str, t.Any]:
    """Build the JSON error envelope: ``{"error": {"status", "code", "message", ...}}``."""
    return {"error": {"status": status, "code": code, "message": message, **extra}}


def standard_envelope(status: int) -> dict[str, t.Any]:
    """The envelope the kernel sends for Werkzeug's own exception of ``status``
    (Flask's 404 or 413, say), for whatever answers in the app's place (nginx)."""
    error = http.default_exceptions[status]()
    return envelope(status, _error_code(error), error.description or error.name)


def error_response(error: http.HTTPException) -> Response:
    """Turn any HTTP exception into the JSON envelope, keeping its headers (``Allow``...)."""
    status = error.code or 500
    message = error.description or error.name
    extra: dict[str, t.Any] = {}
    if isinstance(error, ParameterError):
        extra["fields"] = error.fields
    detail = getattr(error, "detail", None)
    if detail and current_app.debug:
        extra["detail"] = detail
    response = current_app.response_class(
        json.dumps(envelope(status, _error_code(error), message, **extra)),
        status=status,
        mimetype="application/json",
    )
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            # add, not set: a 401 carries one WWW-Authenticate per auth scheme.
            response.headers.add(name, value)
    return response


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
