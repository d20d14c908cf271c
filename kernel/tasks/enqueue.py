"""The web side of long work: enqueue a ``_celery`` method, read and cancel tasks.

Enqueueing signs a task id that names the route (:mod:`kernel.tasks.ids`), then
publishes one ``kernkoa.run`` message under that id, whose JSON kwargs are::

    {"route": "/shop/report/Report/build_celery",
     "args": [...], "kwargs": {"year": 2024, "params": {"$kernkoa": "params"}},
     "request": {"path", "query_string", "method", "root_url", "headers",
                 "request_id", "json" | "form"}}

Every broker or backend call here is bounded (connect and socket timeouts, no
retries) and guarded by a short circuit breaker: after a failure, calls fail
at once with :class:`BrokerUnavailable` (503) until the cool-down is over, so
a dead broker never ties up the web process.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
import typing as t
from pathlib import Path

from flask import Flask
from flask import Request
from flask import current_app
from flask import g
from flask import has_request_context
from flask import request
from kombu.exceptions import KombuError
from kombu.utils.json import dumps
from redis.exceptions import RedisError

from ..catalog.access import AccessRule
from ..catalog.access import TaskOrigin
from ..catalog.access import rule_for
from ..catalog.exposure import Endpoint
from ..core.errors import BrokerUnavailable
from ..core.errors import ParameterError
from ..core.errors import RouteNotFound
from ..core.errors import TaskFinished
from ..web.cbor import is_cbor
from ..web.params import GivenFields
from ..web.params import Params
from ..web.params import RequestFields
from ..web.requestid import HEADER as REQUEST_ID_HEADER
from ..web.state import current_state
from ..web.state import state_of
from .body import valid_task_id
from .celeryapp import KernKoaCelery
from .celeryapp import get_celery
from .ids import SignedId
from .ids import is_signed_form
from .ids import new_task_id
from .ids import verify_task_id
from .metrics import count_sent
from .ratelimit import RATE_LIMIT_HEADER
from .recent import TRIGGER_HEADER
from .recent import recent_index
from .recent import trigger_details
from .run import PARAMS_FROM_REQUEST
from .run import TASK_NAME
from .run import options_of
from .store import JobStore
from .store import TaskRecord

log = logging.getLogger("kernkoa.tasks")

#: Errors that mean "the broker or the result store is unreachable".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    KombuError, RedisError, OSError, TimeoutError,
)

#: Longest kwargs shown for a task by monitoring, in characters (Celery's own limit).
REPR_MAX = 1024

_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower()


class CircuitBreaker:
    """Fails calls at once for ``cooldown`` seconds after a connection failure."""

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self._open_until = 0.0
        self._lock = threading.Lock()

    def call(self, func: t.Callable[[], t.Any]) -> t.Any:
        """Run ``func``; turn connection errors into :class:`BrokerUnavailable`."""
        if time.monotonic() < self._open_until:
            raise BrokerUnavailable(detail="circuit open after a recent broker failure")
        try:
            return func()
        except CONNECTION_ERRORS as error:
            with self._lock:
                self._open_until = time.monotonic() + self.cooldown
            log.error("task broker or result store unreachable: %r", error)
            raise BrokerUnavailable(detail=repr(error)) from error


def celery_and_breaker() -> tuple[KernKoaCelery, CircuitBreaker]:
    """The current app's Celery app and the circuit breaker guarding its broker."""
    celery = get_celery(current_app._get_current_object())  # type: ignore[attr-defined]
    breaker = celery.breaker
    if breaker is None:
        settings = celery.kernkoa_settings
        breaker = celery.breaker = CircuitBreaker(settings.BROKER_COOLDOWN)
    return celery, t.cast(CircuitBreaker, breaker)


@functools.lru_cache(maxsize=8)
def _lower_names(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(name.lower() for name in names)


def task_headers() -> frozenset[str]:
    """The lower-case names of the current app's ``TASK_HEADERS``."""
    return _lower_names(tuple(current_state().settings.TASK_HEADERS))


def request_snapshot(req: Request, task_headers: frozenset[str]) -> dict[str, t.Any]:
    """The parts of ``req`` a worker needs to rebuild it (JSON-safe), and its request id.

    :param task_headers: lower-case names of the headers that go along
        (``TASK_HEADERS``); the body's headers are derived again by the worker,
        and its ``X-Request-Id`` from ``request_id`` (the id the request was
        given, never the raw header).
    """
    snapshot: dict[str, t.Any] = {
        "path": req.path,
        "query_string": req.query_string.decode("latin-1"),
        "method": req.method,
        "root_url": req.url_root,
        "headers": [[k, v] for k, v in req.headers.items()
                    if k.lower() in task_headers and k.lower() != _REQUEST_ID_NAME],
        "request_id": getattr(req, "request_id", None),
    }
    snapshot.update(body_fields(req))
    return snapshot


def body_fields(req: Request) -> dict[str, t.Any]:
    """The fields of ``req``'s body, JSON-safe: ``{"json": value}``,
    ``{"form": [[name, value], ...]}`` or ``{}`` (no body, or no fields in it)."""
    fields = RequestFields(req)
    if fields.has_body:
        if req.is_json or is_cbor(req):
            # A CBOR body's value is one a JSON body could hold: it travels as JSON.
            return {"json": fields.json}
        if fields.form:
            return {"form": [[k, v] for k, v in fields.form.items(multi=True)]}
    return {}


def _encode(value: t.Any) -> t.Any:
    if not isinstance(value, Params):
        return value
    # The worker rebuilds the trigger's params from its request snapshot; a
    # params built from fields given by code travels as those fields.
    if isinstance(value.request_fields, GivenFields):
        return dict(value)
    return PARAMS_FROM_REQUEST


def _kwargs_repr(route: str, args: list[t.Any], kwargs: dict[str, t.Any],
                 snapshot: dict[str, t.Any] | None) -> str:
    """What monitoring (worker logs, Flower) shows as the task's kwargs, as JSON.

    Encoding the arguments here is also the check that they can travel as
    JSON. The request stands for its snapshot: Celery's own repr would spell
    out every header, and costs a tenth of a trigger.

    :raises ParameterError: naming each argument that is not JSON.
    """
    shown = {"route": route, "args": args, "kwargs": kwargs,
             "request": f"{snapshot['method']} {snapshot['path']}" if snapshot else None}
    try:
        shown_json: str = dumps(shown)
        return shown_json[:REPR_MAX]
    except (TypeError, ValueError):
        pass
    bad = []
    for name, value in [*((str(i), a) for i, a in enumerate(args)), *kwargs.items()]:
        try:
            dumps(value)
        except (TypeError, ValueError):
            bad.append({"name": name, "source": "request",
                        "message": "this value cannot be sent to a task (not JSON)"})
    # Each value alone may encode where the whole does not (a dict with tuple keys).
    raise ParameterError(bad or [{"name": "params", "source": "request",
                                  "message": "these values cannot be sent to a task (not JSON)"}])


def issue_task_id(endpoint: Endpoint, route: str) -> str:
    """A new signed id for a task of ``route``, carrying its rule and the time.

    The id needs no marker written first: an id of a publish that failed was
    never shown to anyone.
    """
    access = rule_for(endpoint, current_state().settings.AUTH_DEFAULT)
    return new_task_id(signing_secrets(), route, access)


def enqueue(endpoint: Endpoint, route: str, args: list[t.Any],
            kwargs: dict[str, t.Any], task_id: str | None = None) -> str:
    """Publish ``route``'s ``_celery`` method with bound arguments; return the task id.

    :param task_id: the id to publish under, issued earlier by
        :func:`issue_task_id` (an idempotent trigger claims its key with it
        first); a new one by default.

    :raises ParameterError: when an argument is not JSON.
    :raises BrokerUnavailable: when the broker or result store is unreachable.
    """
    args = [_encode(a) for a in args]
    kwargs = {k: _encode(v) for k, v in kwargs.items()}
    snapshot = request_snapshot(request, task_headers()) if has_request_context() else None
    kwargs_repr = _kwargs_repr(route, args, kwargs, snapshot)
    celery, breaker = celery_and_breaker()
    options = options_of(endpoint.func)
    sent_id = task_id or issue_task_id(endpoint, route)
    headers: dict[str, t.Any] = {}
    if options.get("rate_limit") is not None:
        headers[RATE_LIMIT_HEADER] = str(options["rate_limit"])
    if recent_index(celery) is not None:
        # The worker records the task when it takes it: the trigger is the publish alone.
        headers[TRIGGER_HEADER] = trigger_details()

    def publish() -> None:
        celery.send_task(
            TASK_NAME, task_id=sent_id,
            kwargs={"route": route, "args": args, "kwargs": kwargs, "request": snapshot},
            kwargsrepr=kwargs_repr,
            # Monitoring (worker logs, events, Flower, celery inspect) names the
            # task by its route; the worker still runs the one generic task.
            shadow=route,
            queue=options.get("queue"), retry=False,
            soft_time_limit=options.get("soft_time_limit"),
            time_limit=options.get("time_limit"),
            priority=options.get("priority"), expires=options.get("expires"),
            headers=headers or None,
        )

    breaker.call(publish)
    count_sent(route)
    return sent_id


def signing_secrets(app: Flask | None = None) -> tuple[str | bytes, ...]:
    """The secret keys of ``app`` (default: the current app), the signing one last
    (Flask's fallbacks first).

    Read from the config each time: a key set or rotated at run time counts at once.
    """
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    secret: str | bytes = config["SECRET_KEY"]
    fallbacks = config["SECRET_KEY_FALLBACKS"]
    return (*fallbacks, secret) if fallbacks else (secret,)


def verified_task_id(task_id: str) -> SignedId | None:
    """What the signed ``task_id`` says, or ``None`` when this app did not sign it or
    it is older than its results live (``RESULT_EXPIRES``). Reads no store."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return verify_task_id(signing_secrets(app), task_id, state_of(app).settings.RESULT_EXPIRES)


def known_task_id(task_id: str) -> bool:
    """Whether ``task_id`` may name a task of this app: a signed id that verifies, or
    an id of the old form (a UUID, whose marker the store still holds until it expires)."""
    if is_signed_form(task_id):
        return verified_task_id(task_id) is not None
    return valid_task_id(task_id)


def exe_task(instance: t.Any, name: str,
             params: t.Mapping[str, t.Any] | None = None) -> dict[str, str]:
    """KernKoa's ``exeTask(self, "name_celery", params)``: enqueue a method of ``instance``.

    The method is found by URL, through the same router and rules as a
    request, so only a routable ``_celery`` method can be started, and its
    arguments are bound as a POST to its URL would bind them: ``params`` from
    the request stands for the request's fields (query, form, JSON), any other
    mapping for a JSON object body. Required fields are checked before
    anything is queued. Returns ``{"type": "task", "id": <id>}``.

    :raises ParameterError: when the fields do not fit the method (422).
    """
    state = current_state()
    cls = type(instance)
    module = sys.modules.get(cls.__module__)
    file = Path(getattr(module, "__file__", "") or "")
    try:
        parts = file.relative_to(state.catalog.router.root).with_suffix("").parts
    except ValueError:
        raise RouteNotFound(detail=f"{cls.__name__} is not a catalog controller") from None
    route = "/" + "/".join((*parts, cls.__name__, name))
    _, endpoint = state.catalog.resolve(route)
    if not endpoint.is_celery:
        raise RouteNotFound(detail=f"{name} is not a _celery method")
    if isinstance(params, Params):
        fields = params.request_fields
    else:
        fields = GivenFields(params, state.settings)
    args, kwargs = endpoint.binder.bind(fields, (), route.lstrip("/"))
    return {"type": "task", "id": enqueue(endpoint, route, list(args), kwargs)}


def read_task(task_id: str) -> TaskRecord:
    """What the result store holds about ``task_id``.

    :raises BrokerUnavailable: when it is unreachable.
    """
    celery, breaker = celery_and_breaker()
    return t.cast(TaskRecord, breaker.call(lambda: JobStore(celery).read(task_id)))


def read_task_for_request(task_id: str) -> TaskRecord:
    """:func:`read_task`, at most once per request and id: the auth layer reads
    the record to decide access to ``/status/<id>``, and the view answers from
    the same record (one result-store round trip instead of two).

    Kept on ``flask.g``, which lives exactly as long as the request. A view that
    must see later changes (the event stream polls) calls :func:`read_task`.
    """
    found = g.get("_kernkoa_task")
    if found is not None and found[0] == task_id:
        return t.cast(TaskRecord, found[1])
    record = read_task(task_id)
    g._kernkoa_task = (task_id, record)
    return record


def task_origin(task_id: str) -> TaskOrigin | None:
    """Where the task ``task_id`` came from, for the access rule of its views, or
    ``None`` when the id names no task (the view answers 404).

    The record is read once per request (:func:`read_task_for_request`): the
    view answers from it.

    A signed id tells by itself, verified by its MAC: no store read.

    :raises BrokerUnavailable: when the result store cannot be read (no guess).
    """
    if is_signed_form(task_id):
        signed = verified_task_id(task_id)
        return None if signed is None else signed.origin
    if not valid_task_id(task_id):
        return None
    record = read_task_for_request(task_id)
    issued = record.issued
    if issued is None:
        # Never issued (404), unless the store still holds a result or a
        # cancellation whose marker expired first: its route is unknown.
        return None if record.meta is None and not record.revoked else TaskOrigin()
    if not isinstance(issued, dict):
        return TaskOrigin()
    route = issued.get("route")
    return TaskOrigin(route=route if isinstance(route, str) else None,
                      recorded=AccessRule.from_record(issued.get("access")))


def cancel_task(task_id: str) -> None:
    """Store the cancellation, then ask the workers to drop the task.

    The cancellation makes it REVOKED for good (:meth:`JobStore.mark_revoked`),
    and the task checks it before it starts and at each progress report;
    Celery's own revoke (with a soft signal for a running task on a prefork
    worker) is a broadcast that is only a best effort (lost if no worker is
    listening).

    :raises TaskFinished: when the task finished first (SUCCESS or FAILURE,
        stored after ``/status`` read it): nothing is changed.
    """
    celery, breaker = celery_and_breaker()
    if breaker.call(lambda: JobStore(celery).mark_revoked(task_id)) is not None:
        raise TaskFinished()
    try:
        # SIGUSR1 raises SoftTimeLimitExceeded inside a running prefork task, so a
        # method that never reports progress stops too; the task tells the two apart.
        breaker.call(lambda: celery.control.revoke(task_id, terminate=True, signal="SIGUSR1"))
    except BrokerUnavailable:
        log.warning("task %s: cancellation recorded, but the revoke broadcast failed", task_id)
