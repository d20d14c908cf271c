"""The one generic Celery task that runs every ``_celery`` controller method.

The message carries JSON only: the route path, the bound arguments and a
snapshot of the triggering request (see :mod:`kernel.tasks.enqueue`). The worker
resolves the route with the app's own :class:`~kernel.catalog.resolution.Catalog` (same router,
same exposure rules, same hot-reloading loader), so a forged message reaches
no more than a URL could, and an edited controller runs its new code.

The method is called as ``method(self, handle, ...)``: the first parameter
after ``self`` always receives a :class:`TaskHandle`.
"""

from __future__ import annotations

import json
import logging
import time
import typing as t

from celery import Celery
from celery import Task
from celery import signals
from celery.exceptions import Ignore
from celery.exceptions import SoftTimeLimitExceeded

from ..catalog.binding import PARAMS_NAME
from ..core.errors import TaskCancelled
from ..core.errors import TaskTimeLimitExceeded
from ..web.addons import notify_task_finish
from ..web.addons import notify_task_start
from ..web.params import RequestFields
from ..web.params import build_params
from ..web.state import state_of
from .backends import Note
from .backends import PublishingRedisBackend
from .environ import request_context_args
from .environ import request_id_of
from .environ import task_environ
from .priorities import HIGHEST
from .priorities import LOWEST
from .ratelimit import tasks_per_second
from .recent import RECENT_PREFIX
from .recent import TRIGGER_HEADER
from .recent import RedisRecent
from .recent import note_change
from .recent import note_started
from .recent import recent_index
from .recent import started_record
from .store import JobStore

if t.TYPE_CHECKING:  # the Celery app imports this module to register the task
    from .celeryapp import KernKoaCelery

log = logging.getLogger("kernkoa.tasks")

#: The name of the one generic task.
TASK_NAME = "kernkoa.run"

#: State written by :meth:`TaskHandle.progress`.
PROGRESS = "PROGRESS"

#: How a ``params`` argument built from the request travels in a message: the
#: worker rebuilds it from the request snapshot.
PARAMS_FROM_REQUEST = {"$kernkoa": "params"}

_OPTIONS_ATTR = "__kernkoa_task_options__"

#: Seconds before its soft time limit a task's soft signal cannot be that limit.
STRAY_MARGIN = 1.0

#: Most runs again of a task stopped by signals meant for other tasks.
STRAY_RERUNS = 3

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def task_options(
    queue: str | None = None,
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
    retries: int = 0,
    retry_delay: float = 5.0,
    rate_limit: str | float | None = None,
    priority: int | None = None,
    expires: float | None = None,
) -> t.Callable[[F], F]:
    """Set Celery options of one ``_celery`` controller method::

        class Report:
            @task_options(queue="long", soft_time_limit=600, time_limit=660, retries=2,
                          rate_limit="10/m", priority=5, expires=3600)
            def build_celery(self, task, year: int): ...

    :param queue: the queue to send it to (a worker must consume it: ``-Q``).
    :param soft_time_limit: seconds before the task is stopped with a FAILURE.
    :param time_limit: seconds before its worker process is killed.
    :param retries: how many times an exception re-runs it.
    :param retry_delay: seconds between those runs.
    :param rate_limit: most tasks of this route a worker starts, Celery's form
        (``"10/s"``, ``"100/m"``, ``"1000/h"``, or a number per second), per
        worker process group, whatever other routes do (:mod:`kernel.tasks.ratelimit`).
    :param priority: the message's priority, 0 (lowest) to 9: the Redis and embedded
        brokers take the highest first (:mod:`kernel.tasks.priorities`), as do
        RabbitMQ queues declared with ``x-max-priority``.
    :param expires: seconds after the trigger past which a task not yet started
        is dropped as ``REVOKED`` instead of run.
    :raises ValueError: for a malformed ``rate_limit``, ``priority`` or ``expires``.
    """
    if rate_limit is not None:
        try:
            tasks_per_second(rate_limit)
        except ValueError:
            raise ValueError(f"rate_limit must be like '10/s', '5/m' or '100/h', "
                             f"not {rate_limit!r}") from None
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not LOWEST <= priority <= HIGHEST):
        raise ValueError(f"priority must be an integer from {LOWEST} to {HIGHEST}")
    if expires is not None and (isinstance(expires, bool)
                                or not isinstance(expires, (int, float)) or expires <= 0):
        raise ValueError("expires must be a positive number of seconds")
    options = {"queue": queue, "soft_time_limit": soft_time_limit,
               "time_limit": time_limit, "retries": retries, "retry_delay": retry_delay,
               "rate_limit": rate_limit, "priority": priority, "expires": expires}

    def decorate(func: F) -> F:
        setattr(func, _OPTIONS_ATTR, options)
        return func

    return decorate


def options_of(func: t.Callable[..., t.Any]) -> dict[str, t.Any]:
    """The :func:`task_options` of a method (defaults when undecorated)."""
    return dict(getattr(func, _OPTIONS_ATTR, None) or {"retries": 0, "retry_delay": 5.0})


class TaskHandle:
    """What a ``_celery`` method gets as its first parameter (KernKoa's ``celery_instance``).

    Progress writes are throttled: a report of the same state within
    ``interval`` seconds of the last write is dropped (a final ``progress``
    with ``current == total`` is always written); with ``events``, each one
    written is also sent as a task event (:func:`send_state_event`). Each write first checks
    whether the task was cancelled, and raises :class:`TaskCancelled` if so.
    Any other attribute is the Celery task's (``handle.request.id``...).
    """

    def __init__(self, task: Task, store: JobStore, interval: float,
                 events: bool = False) -> None:
        self._task = task
        self._events = events
        self._store = store
        self._interval = interval
        self._last_state: str | None = None
        self._last_write = float("-inf")

    @property
    def id(self) -> str:
        """The task id."""
        return t.cast(str, self._task.request.id)

    @property
    def cancelled(self) -> bool:
        """Whether the task was cancelled (``DELETE /status/<id>``)."""
        try:
            return self._store.is_revoked(self.id)
        except Exception as error:  # the backend is away: keep working
            log.warning("cannot check whether task %s was cancelled: %s", self.id, error)
            return False

    def update_state(self, state: str | None = None, meta: t.Any = None,
                     force: bool = False, **kwargs: t.Any) -> None:
        """Store a custom state and its meta, shown by ``/status/<id>``."""
        now = time.monotonic()
        if (not force and state == self._last_state
                and now - self._last_write < self._interval):
            return
        if self.cancelled:
            raise TaskCancelled(self.id)
        self._task.update_state(state=state, meta=meta, **kwargs)
        self._last_state, self._last_write = state, now
        if state and self._events:
            send_state_event(self._task, state, meta)

    def progress(self, current: float, total: float | None = None,
                 message: str | None = None) -> None:
        """Report progress as state ``PROGRESS`` with ``current, total, percent, message``."""
        percent = round(100.0 * current / total, 1) if total else None
        meta = {"current": current, "total": total, "percent": percent, "message": message}
        self.update_state(PROGRESS, meta, force=bool(total) and current >= t.cast(float, total))

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._task, name)


def send_state_event(task: Task, state: str, meta: t.Any) -> None:
    """Tell event consumers (Flower, ``celery events``) about a custom state.

    Celery's monitors take an event ``task-<name>`` they do not know as the
    custom state ``<NAME>``, above STARTED and below the final states, so
    ``task-progress`` shows the task as ``PROGRESS`` until its final event.
    The meta goes as the event's ``result`` (JSON), the field where Celery
    keeps a custom state's meta. Sent without retries: a progress report never
    waits on a monitor.
    """
    try:
        task.send_event(f"task-{state.lower()}", retry=False,
                        result=json.dumps(meta, default=repr))
    except Exception as error:  # monitoring must never fail the task
        log.warning("task %s: cannot send its %s event: %r", task.request.id, state, error)


def _decode(value: t.Any, urlpath: str) -> t.Any:
    if value == PARAMS_FROM_REQUEST:
        from flask import request

        return build_params(RequestFields(request), urlpath)
    return value


def run_controller(task: Task, route: str, args: list[t.Any], kwargs: dict[str, t.Any],
                   request: dict[str, t.Any] | None = None) -> t.Any:
    """The generic task: call the ``_celery`` method ``route`` names (see module doc)."""
    celery: KernKoaCelery = task.app
    flask_app = celery.flask_app
    settings = celery.kernkoa_settings
    begun = time.monotonic()  # about when the pool's timer of the soft limit started
    store = JobStore(task.app, fail_fast=False)
    request_id = request_id_of(request)
    # Listed on the tasks page from now on, a task cancelled while queued too.
    cancelled = start_and_note(celery, store, task.request.id, task.request.hostname,
                               request_id, started_record(task.request.get(TRIGGER_HEADER),
                                                          route, time.time(),
                                                          task.request.hostname, request_id))
    if cancelled:
        raise Ignore()  # cancelled while queued: never starts
    context_args = request_context_args(request, route)
    environ = task_environ(context_args, flask_app.json.dumps) if request else None
    with (flask_app.request_context(environ) if environ is not None
          else flask_app.test_request_context(**context_args)):
        target, endpoint = state_of(flask_app).catalog.resolve(route)
        if not endpoint.is_celery:
            raise LookupError(f"{route} is not a _celery method")
        urlpath = route.lstrip("/")
        args = [_decode(a, urlpath) for a in args]
        kwargs = {k: _decode(v, urlpath) for k, v in kwargs.items()}
        if endpoint.binder.takes_params and PARAMS_NAME not in kwargs and not args:
            kwargs[PARAMS_NAME] = None
        # Events only from workers that send them (-E, see celeryapp.share_task_events).
        handle = TaskHandle(task, store, settings.PROGRESS_INTERVAL,
                            events=bool(celery.conf.worker_send_task_events))
        started, state = time.monotonic(), "FAILURE"
        failure: Exception | None = None
        retries = task.request.retries or 0
        notify_task_start(task.request.id, route, retries=retries)
        try:
            result = endpoint.func(endpoint.cls(), handle, *args, **kwargs)
            state = "SUCCESS"
            return result
        except TaskCancelled:
            state = "REVOKED"
            _stop_cancelled(store, task.request.id)
        except SoftTimeLimitExceeded:
            # Cancelling a running task sends the same signal as its soft time limit.
            if store.is_revoked(task.request.id):
                state = "REVOKED"
                _stop_cancelled(store, task.request.id)
            limit = task.request.timelimit[1] if task.request.timelimit else None
            limit = limit or settings.TASK_SOFT_TIME_LIMIT
            stray = not limit or time.monotonic() - begun + STRAY_MARGIN < limit
            if stray and task.request.retries < STRAY_RERUNS:
                # Not this task's limit, nor its cancellation: the signal of a
                # cancellation meant for the task this process ran just before
                # (Celery signals the process, which may have moved on). Run it again.
                state = "RETRY"
                log.warning("task %s stopped by a signal meant for another task: "
                            "run again", task.request.id)
                raise task.retry(countdown=0, max_retries=task.request.retries + 1) from None
            failure = TaskTimeLimitExceeded(
                f"the task ran longer than its time limit of {limit} s and was stopped")
            raise failure from None
        except Exception as error:
            failure = error
            options = options_of(endpoint.func)
            if options["retries"] and task.request.retries < options["retries"]:
                state = "RETRY"
                raise task.retry(exc=error, countdown=options["retry_delay"],
                                 max_retries=options["retries"]) from error
            raise
        finally:
            note_finished(celery, task.request.id, time.time())
            notify_task_finish(task.request.id, route, state, time.monotonic() - started,
                               error=failure, retries=retries)


def start_and_note(celery: Celery, store: JobStore, task_id: str, hostname: str | None,
                   request_id: str | None, record: dict[str, t.Any]) -> bool:
    """The worker's side, when it takes a task: store its STARTED state unless it
    was cancelled (:meth:`~kernel.tasks.store.JobStore.start`, whose answer this returns), and write
    its record (:func:`started_record`, ``started`` emptied if it was cancelled:
    it is listed, but never started). On Redis, one script does both (one round
    trip); elsewhere the record follows, and a store that is away then costs
    the record, never the task."""
    index = recent_index(celery)
    if isinstance(index, RedisRecent) and store.writes_listings:
        return store.start(task_id, hostname, request_id,
                           listing=index.listing(task_id, record))
    cancelled = store.start(task_id, hostname, request_id)
    if index is not None:
        note_started(celery, task_id, {**record, "started": None} if cancelled else record)
    return cancelled


def note_finished(celery: Celery, task_id: str, finished: float) -> None:
    """The worker's side, when the task's function is done: its record's ``finished``.
    On Redis it waits for the task's result and goes in the same script (one
    round trip for both), or alone once the task is over if no result is stored
    (:func:`write_waiting_note`); elsewhere it is written now. A store that is
    away costs the record, never the task."""
    backend = celery.backend
    index = recent_index(celery)
    if isinstance(index, RedisRecent) and isinstance(backend, PublishingRedisBackend):
        try:
            backend.note_with_result(task_id, Note(RECENT_PREFIX + task_id,
                                                   {"finished": finished}, index.expires))
        except Exception as error:
            log.warning("task %s: cannot update its recent-tasks record: %r", task_id, error)
        return
    note_change(celery, task_id, finished=finished)


def write_waiting_note(sender: t.Any = None, task_id: str | None = None,
                       **_: t.Any) -> None:
    """Write the record's end still waiting once a task is over (Celery's
    ``task_postrun``: after its result, if one is stored)."""
    backend = getattr(sender, "backend", None)
    if isinstance(backend, PublishingRedisBackend) and task_id is not None:
        try:
            backend.flush_note(task_id)
        except Exception as error:
            log.warning("task %s: cannot update its recent-tasks record: %r", task_id, error)


#: The worker strategy of the generic task: Celery's own, rate-limited per route.
ROUTE_STRATEGY = "kernel.tasks.ratelimit:route_strategy"


def _stop_cancelled(store: JobStore, task_id: str) -> t.NoReturn:
    # The cancellation may be a record beside the result (an old-form id, or
    # written by an older kernel): the result key then says REVOKED too.
    store.fold_cancellation(task_id)
    log.info("task %s stopped: it was cancelled", task_id)
    raise Ignore() from None


def register_tasks(celery: Celery) -> None:
    """Register the generic task on ``celery``, with the strategy that applies
    each route's rate limit (:mod:`kernel.tasks.ratelimit`)."""
    celery.task(name=TASK_NAME, bind=True, Strategy=ROUTE_STRATEGY)(run_controller)
    # The end of a task's recent-tasks record goes with its result, or after it.
    signals.task_postrun.connect(write_waiting_note, weak=False,
                                 dispatch_uid="kernkoa.recent.write_waiting_note")
