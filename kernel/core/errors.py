"""Every exception the kernel raises, all under one root, :class:`KernKoaError`.

- :class:`KernelError` and its subclasses are answered over HTTP. Each is
  Werkzeug's HTTP exception with its policy as class attributes: the status
  (``code``), the envelope's ``error_code``, the client-facing ``description``,
  and the headers it adds (``challenges``, ``retry_after``). An instance may
  carry a ``detail``, kept for the log and shown to clients only in debug mode.
  The web layer (:mod:`kernel.web.envelope`) sends them in the JSON envelope.
- The others stop the start-up, a command or a task. Where callers catch a
  builtin (``ValueError``, ``KeyError``...), they derive from it as well.

``except KernKoaError`` catches every one of them.
"""

from __future__ import annotations

import typing as t

from werkzeug import exceptions as http

from .root import KernKoaError as KernKoaError


class KernelError(KernKoaError, http.HTTPException):
    """Base of the kernel's errors answered over HTTP; subclasses declare data only.

    :param message: what the client is told, instead of ``description``.
    :param detail: what went wrong internally; logged, and shown to the
        client only in debug mode.
    """

    #: Machine-readable error code sent in the envelope. Every class raised
    #: sets one; a subclass that does not gets one from its status name.
    error_code: str | None = None

    #: ``WWW-Authenticate`` values sent with the answer, one header each.
    challenges: t.Sequence[str] = ()

    #: Seconds sent as ``Retry-After``; ``None`` sends no such header.
    retry_after: int | None = None

    def __init__(self, message: str | None = None, detail: str | None = None) -> None:
        super().__init__(description=message or self.description)
        #: Internal explanation, for logs and debug mode.
        self.detail = detail

    def get_headers(self, *args: t.Any, **kwargs: t.Any) -> list[tuple[str, str]]:
        """Werkzeug's headers, one ``WWW-Authenticate`` per challenge, and
        ``Retry-After`` when :attr:`retry_after` is set."""
        headers = super().get_headers(*args, **kwargs)
        headers += [("WWW-Authenticate", challenge) for challenge in self.challenges]
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
        return headers


class BadRequestBody(KernelError):
    """400: the request body could not be parsed."""

    code = 400
    error_code = "bad_request"
    description = "The request body could not be parsed."


class JsonTooDeep(BadRequestBody):
    """400: the JSON body nests deeper than ``MAX_JSON_DEPTH``."""

    error_code = "json_too_deep"
    description = "The JSON body is nested too deeply."


class UnsupportedCbor(BadRequestBody):
    """400: the CBOR body holds an item no JSON body could: a tag other than
    date/time, bignum or decimal fraction, a byte string outside a bignum, a
    simple value other than false/true/null, a map key that is not text
    (:mod:`kernel.web.cbor`)."""

    error_code = "unsupported_cbor"
    description = ("The CBOR body holds an item this server does not read: only the "
                   "JSON data model, date/time (tags 0, 1), bignums (2, 3) and decimal "
                   "fractions (4).")


class InvalidIdempotencyKey(KernelError):
    """400: the ``Idempotency-Key`` header is empty, too long or holds characters
    a key may not (see :mod:`kernel.tasks.idempotency`)."""

    code = 400
    error_code = "invalid_idempotency_key"
    description = ("The Idempotency-Key header must be 1 to 255 visible ASCII characters, "
                   "without quotes or backslashes (optionally quoted as a whole).")


class AuthenticationRequired(KernelError):
    """401: credentials are missing or invalid.

    :param challenges: ``WWW-Authenticate`` values, one per enabled scheme.
    """

    code = 401
    error_code = "unauthorized"
    description = "Authentication is required to call this URL."

    def __init__(self, message: str | None = None, detail: str | None = None,
                 challenges: t.Sequence[str] = ()) -> None:
        super().__init__(message, detail)
        self.challenges = list(challenges)


class InvalidCredentials(AuthenticationRequired):
    """401: credentials were sent, and they are not valid."""

    error_code = "invalid_credentials"
    description = "The credentials sent are not valid."


class InsufficientScope(KernelError):
    """403: the caller is authenticated but lacks a scope the route requires.

    :param challenge: the Bearer ``insufficient_scope`` challenge (RFC 6750), if any.
    """

    code = 403
    error_code = "insufficient_scope"
    description = "The credentials do not grant access to this URL."

    def __init__(self, missing: t.Iterable[str], challenge: str | None = None) -> None:
        super().__init__(f"Missing scope: {' '.join(sorted(missing))}.")
        self.challenges = [challenge] if challenge else []


class AccessUndecidable(KernelError):
    """403: the access rule of the URL cannot be found, so no credentials pass
    (a task whose route no longer loads and whose rule was not recorded)."""

    code = 403
    error_code = "access_undecidable"
    description = "Access to this URL cannot be decided right now, so it is refused."


class RouteNotFound(KernelError):
    """404: the URL does not name a routable controller method."""

    code = 404
    error_code = "not_found"
    description = "No controller method answers this URL."


class FileOutsideFolder(RouteNotFound):
    """404: a catalog file leads outside its folder (a symlink), or is no regular file."""


class TaskNotFound(KernelError):
    """404: no task was issued with this id, or its record expired."""

    code = 404
    error_code = "not_found"
    description = "No task has this id (it was never issued, or its result expired)."


class MethodNotAllowed(KernKoaError, http.MethodNotAllowed):
    """405: the controller method exists but does not accept this HTTP method
    (Werkzeug's, which sends ``Allow``)."""

    error_code = "method_not_allowed"
    description = "This URL does not accept that HTTP method."


class TaskFinished(KernelError):
    """409: a task that already finished cannot be cancelled."""

    code = 409
    error_code = "conflict"
    description = "The task has already finished."


class PayloadTooLarge(KernelError):
    """413: base of the request limits of this server; each subclass is one limit."""

    code = 413


class TooManyFields(PayloadTooLarge):
    """413: the request carries more fields than ``MAX_FIELDS``."""

    error_code = "too_many_fields"
    description = "The request carries too many fields."


class FormTooLarge(PayloadTooLarge):
    """413: an urlencoded form is larger than ``MAX_FORM_MEMORY_SIZE``."""

    error_code = "form_too_large"
    description = "The form is larger than this server reads into memory."


class JsonTooLarge(PayloadTooLarge):
    """413: the JSON body holds more arrays and objects than ``MAX_JSON_CONTAINERS``."""

    error_code = "json_too_large"
    description = "The JSON body holds more arrays and objects than this server parses."


class UnsupportedBody(KernelError):
    """415: the body is of a media type the kernel reads no fields from, sent
    to a method that takes fields."""

    code = 415
    error_code = "unsupported_media_type"
    description = ("The request body must be JSON (application/json), CBOR "
                   "(application/cbor) or a form "
                   "(application/x-www-form-urlencoded, multipart/form-data).")


class ParameterError(KernelError):
    """422: arguments for the controller method were missing or could not be converted.

    :param fields: one entry per offending field, each a dict with ``name``,
        ``source`` (``query``, ``form``, ``json``, ``path``) and ``message``.
    """

    code = 422
    error_code = "unprocessable_entity"
    description = "The request's fields do not fit the method's parameters."

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__()
        #: The fields that failed, as sent to the client.
        self.fields = fields


class IdempotencyKeyReused(KernelError):
    """422: an ``Idempotency-Key`` already started a task with other fields."""

    code = 422
    error_code = "idempotency_key_reused"
    description = ("This Idempotency-Key was already used with other fields on this route; "
                   "use a new key for a new request.")


class IdempotencyKeyInFlight(KernelError):
    """409: the trigger that claimed this ``Idempotency-Key`` has not sent its task
    (it failed, or its process died); the key is free again after ``retry_after``
    seconds."""

    code = 409
    error_code = "idempotency_key_in_flight"
    description = ("The first request with this Idempotency-Key has not started its task; "
                   "retry later.")

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class TooManyFailures(KernelError):
    """429: this client failed to log in too often lately; it is refused
    without checking, until ``retry_after`` seconds have passed."""

    code = 429
    error_code = "too_many_failures"
    description = "Too many failed logins from this client; try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class ControllerLoadError(KernelError):
    """500: a controller file failed to import; only its own routes answer with this."""

    code = 500
    error_code = "controller_error"
    description = "The controller for this URL failed to load."


class BrokerUnavailable(KernelError):
    """503: the task broker or result store cannot be reached right now."""

    code = 503
    error_code = "broker_unavailable"
    description = "Background tasks are unavailable right now; try again shortly."


class IdempotencyUnsupported(KernelError):
    """501: ``Idempotency-Key`` needs a result store that can claim a key atomically
    (Redis or the embedded one); this deployment's cannot."""

    code = 501
    error_code = "idempotency_unsupported"
    description = "Idempotency-Key needs a Redis or embedded result store."


class PasswordChecksBusy(KernelError):
    """503: every password-hash slot of the process stayed busy for the whole wait."""

    code = 503
    error_code = "busy"
    retry_after = 1
    description = "Too many logins are being checked right now; try again shortly."


# Errors that stop the start-up or a command (raised before any request).

class SettingsError(KernKoaError, ValueError):
    """A setting, usually from the environment, has a value of the wrong type."""


class InsecureSecretError(KernKoaError, RuntimeError):
    """The configured secret key is empty or well known."""


class AddonError(KernKoaError, RuntimeError):
    """An add-on named in ``config.ADDONS`` is missing, fails to import or is malformed."""


class AuthConfigError(KernKoaError, RuntimeError):
    """The auth settings cannot work; raised at start-up, never at request time."""


class UsersError(KernKoaError, ValueError):
    """A user name, password or users file is not acceptable."""


class MetricsError(KernKoaError, RuntimeError):
    """Metrics cannot be collected as ``METRICS`` asks (see :mod:`kernel.core.metrics`)."""


# Errors of the catalog and of the API that controllers call.

class ScheduleError(KernKoaError, ValueError):
    """A ``@every`` or ``@cron`` declaration that cannot be a schedule."""


class ConversionError(KernKoaError, ValueError):
    """A value does not fit a parameter's annotation."""


class ConstraintError(KernKoaError, TypeError):
    """An annotation's constraint cannot be checked or described (a bound that is
    not a number, a pattern with flags JSON Schema cannot express)."""


class CatalogLoadError(KernKoaError, LookupError):
    """``load`` was asked for something it cannot give: a bad name, a missing
    file, a file that fails to import, or a missing class or attribute."""


class DatabaseConfigError(KernKoaError, ValueError):
    """An entry of ``config.databases`` cannot be turned into an engine."""


class UnknownDatabase(KernKoaError, KeyError):
    """``dbs[name]`` for a name that ``config.databases`` does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown database"


# Errors that end a background task.

class TaskCancelled(KernKoaError):
    """Raised inside a task at its first progress report after a cancellation."""


class TaskTimeLimitExceeded(KernKoaError):
    """A task ran past its soft time limit."""
