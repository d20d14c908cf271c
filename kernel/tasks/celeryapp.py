"""The Celery app of a KernKoa app, built lazily from its settings.

Nothing here connects anywhere: the Celery app is configured on first use
(``kernkoa.celery``, the first trigger, the first ``/status`` request) and
Celery itself connects only when a message is sent or a result read.

Two broker set-ups:

- **Embedded** (``BROKER_URL`` empty): kombu's ``filesystem://`` transport
  (:mod:`kernel.tasks.filebroker`: a taken message stays on disk until acknowledged)
  and Celery's ``file://`` result backend under ``VAR/celery/``
  (:class:`~kernel.tasks.backends.FileResultBackend`: whole-file, conditional writes). No server
  needed; for development. Result files never expire on their own (the
  embedded worker prunes old ones when it starts).
- **Redis** (``BROKER_URL=redis://...``; RabbitMQ works as a broker too): late
  acks, prefetch 1, a visibility timeout above the hard time limit, results
  that expire.

In both, a dead worker's tasks are requeued by the heartbeats and sweeps of
:mod:`kernel.tasks.leases`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import typing as t
import zoneinfo
from pathlib import Path

from celery import Celery
from celery import signals
from flask import Flask

from ..core.errors import SettingsError
from ..core.settings import Settings
from ..web.state import state_of
from .backends import FileResultBackend
from .backends import PublishingRedisBackend
from .filebroker import TRANSPORT as FILE_TRANSPORT
from .filebroker import FileLeases
from .leases import Leases
from .leases import LeaseStep
from .leases import RedisLeases
from .redisbroker import LEASE_OPTION as REDIS_LEASE_OPTION
from .redisbroker import TRANSPORT as REDIS_TRANSPORT
from .run import register_tasks
from .tasklogs import RequestIdMeta
from .tasklogs import connect_task_logging

#: Folders of the embedded broker and result store, under ``VAR``.
EMBEDDED_FOLDERS = ("queue", "processed", "control", "results", "unacked", "workers",
                    "rejected")

#: Visibility timeout of tasks without a hard time limit: a week.
UNLIMITED_VISIBILITY = 7 * 24 * 3600

log = logging.getLogger("kernkoa.worker")

# Threaded servers may ask for the app from two requests at once.
_build_lock = threading.Lock()


class RedisResultBackend(RequestIdMeta, PublishingRedisBackend):
    """The kernel's Redis result backend (:class:`PublishingRedisBackend`: conditional
    writes, no subscription at send time), storing each task's request id with its
    states (:class:`RequestIdMeta`)."""


class EmbeddedResultBackend(RequestIdMeta, FileResultBackend):
    """The embedded store's result backend (:class:`FileResultBackend`: whole-file,
    conditional writes), storing each task's request id with its states
    (:class:`RequestIdMeta`)."""


def embedded_root(settings: Settings) -> Path:
    """The folder of the embedded broker and result store."""
    return settings.VAR / "celery"


def is_embedded(settings: Settings) -> bool:
    """Whether the embedded (file-based) broker is in use."""
    return not settings.BROKER_URL


def _result_backend(settings: Settings) -> str:
    url = settings.RESULT_BACKEND or settings.BROKER_URL
    # A "class+url" backend URL: Celery loads the class, hands it the URL.
    if not url:
        return f"{__name__}.EmbeddedResultBackend+{(embedded_root(settings) / 'results').as_uri()}"
    if url.startswith(("redis://", "rediss://")):
        return f"{__name__}.RedisResultBackend+{url}"
    return url


def visibility_timeout(settings: Settings) -> int:
    """Seconds before an unacknowledged Redis message goes to another worker
    whatever its lease (:mod:`kernel.tasks.leases` requeues a dead worker's sooner).

    It stays above the hard time limit, or a task still running would be
    started a second time: a setting at or below it is raised to the limit
    plus one lease. 0 in the settings means twice the hard limit, or
    :data:`UNLIMITED_VISIBILITY` for tasks without one.
    """
    limit = settings.TASK_TIME_LIMIT
    configured = settings.VISIBILITY_TIMEOUT or (2 * limit if limit else UNLIMITED_VISIBILITY)
    floor = limit + int(worker_lease(settings)) if limit else 0
    if configured < floor:
        log.warning("VISIBILITY_TIMEOUT %d s is not above TASK_TIME_LIMIT %d s: using %d s",
                    configured, limit, floor)
    return max(configured, floor)


def worker_lease(settings: Settings) -> float:
    """Seconds a worker's heartbeat holds its tasks: ``WORKER_LEASE``, and at
    least two heartbeats, so that one late heartbeat requeues nothing."""
    return max(settings.WORKER_LEASE, 2 * settings.WORKER_HEARTBEAT)


def make_leases(celery: Celery, settings: Settings) -> Leases | None:
    """The lease keeper of the broker in use (none for RabbitMQ, which
    redelivers a dead consumer's messages itself)."""
    if is_embedded(settings):
        return FileLeases(celery, embedded_root(settings), worker_lease(settings))
    if settings.BROKER_URL.startswith(("redis://", "rediss://")):
        return RedisLeases(celery, worker_lease(settings))
    return None


def check_timezone(name: str) -> str:
    """``name``, refused unless it names a time zone (``SCHEDULE_TIMEZONE``).

    :raises SettingsError: naming it.
    """
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"SCHEDULE_TIMEZONE {name!r} is not a time zone name") from None
    return name


def celery_config(settings: Settings) -> dict[str, t.Any]:
    """Celery settings for KernKoa's ``settings`` (see ``config.py``).

    :raises SettingsError: when ``SCHEDULE_TIMEZONE`` names no time zone.
    """
    timeout = settings.BROKER_TIMEOUT
    config: dict[str, t.Any] = {
        # JSON only: messages never carry pickles (a pickled controller
        # instance is what broke the original's worker).
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # The task stores STARTED itself, in the round trip of its
        # cancellation check (JobStore.start).
        "task_track_started": False,
        "result_expires": settings.RESULT_EXPIRES,
        # The time zone of @cron schedules (kernel.tasks.beat).
        "timezone": check_timezone(settings.SCHEDULE_TIMEZONE),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.TASK_SOFT_TIME_LIMIT or None,
        "task_time_limit": settings.TASK_TIME_LIMIT or None,
        "worker_hijack_root_logger": False,
        # A method's print() is a line of its task's log, not a warning.
        "worker_redirect_stdouts_level": "INFO",
        # Sending: a bounded connect, then no retry (the web answers 503).
        "broker_connection_timeout": timeout,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_publish_retry": False,
        "broker_pool_limit": 4,
        "result_backend": _result_backend(settings),
        # A held task run in the sending process (KernKoaCelery.run_held) stores
        # its states and result like a worker's, so /status reads them alike.
        "task_store_eager_result": True,
        # A worker's state and result writes wait for a store that is away
        # (Celery's own retry loop, backing off to 2 s between tries), so a
        # task that ran is never stored as a ConnectionError FAILURE. The web
        # side never goes through this loop: it reads and writes its records
        # directly, without retries, and answers 503.
        "result_backend_always_retry": True,
        "result_backend_max_retries": float("inf"),
        "result_backend_max_sleep_between_retries_ms": 2000,
        "redis_socket_connect_timeout": timeout,
        "redis_socket_timeout": timeout,
        "redis_retry_on_timeout": False,
    }
    if is_embedded(settings):
        root = embedded_root(settings)
        config["broker_url"] = "filesystem://"
        # kombu's transport, keeping each taken message on disk until acknowledged.
        config["broker_transport"] = FILE_TRANSPORT
        config["broker_transport_options"] = {
            "unacked_folder": str(root / "unacked"),
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "processed_folder": str(root / "processed"),
            "store_processed": False,
            # Message files no consumer can read, moved out of the queue.
            "rejected_folder": str(root / "rejected"),
            # Revoke and remote control need a fanout table.
            "control_folder": str(root / "control"),
            # The default polls once a second.
            "polling_interval": settings.BROKER_POLLING_INTERVAL,
        }
    else:
        visible = visibility_timeout(settings)
        transport = {
            "visibility_timeout": visible,
            "socket_connect_timeout": timeout,
            "socket_timeout": max(timeout, 5.0),
            "retry_on_timeout": False,
            # Sweep for abandoned messages often enough for the timeout.
            "unacked_restore_interval": max(1, min(10, visible // 4)),
            "unacked_restore_throttle": 1 if visible < 100 else 10,
            REDIS_LEASE_OPTION: worker_lease(settings),
        }
        config["broker_url"] = settings.BROKER_URL
        if settings.BROKER_URL.startswith(("redis://", "rediss://")):
            # kombu's transport, with a fetch that loses nothing and a close that
            # always finishes (kernel.redisbroker).
            config["broker_transport"] = REDIS_TRANSPORT
        config["broker_transport_options"] = transport
        # The docs list three places for it; the shortest one wins.
        config["visibility_timeout"] = visible
        config["result_backend_transport_options"] = {
            "visibility_timeout": visible,
            # The worker retries a lost backend a few times; the web side
            # passes max_retries=0 itself.
            "retry_policy": {"max_retries": 5, "interval_start": 0.2,
                             "interval_step": 0.5, "interval_max": 2},
        }
    return config


@dataclasses.dataclass(frozen=True)
class HeldTask:
    """A task message kept in the sending process instead of sent (see
    :meth:`KernKoaCelery.hold_tasks`)."""

    name: str
    args: list[t.Any]
    kwargs: dict[str, t.Any]
    task_id: str


class KernKoaCelery(Celery):  # type: ignore[misc]  # Celery has no types
    """The Celery app of one KernKoa app: it knows that app, and the worker leases."""

    def __init__(self, flask_app: Flask, settings: Settings) -> None:
        super().__init__("kernkoa", set_as_current=False)
        self.config_from_object(celery_config(settings))
        #: The KernKoa app whose controllers the tasks run.
        self.flask_app = flask_app
        #: The app's settings.
        self.kernkoa_settings = settings
        #: Guards the broker of the web side (:mod:`kernel.tasks.enqueue`), made there.
        self.breaker: t.Any = None
        #: The worker leases, when the broker keeps them (see :mod:`kernel.tasks.leases`).
        self.leases = make_leases(self, settings)
        #: Task messages kept to run in this process (:meth:`hold_tasks`); ``None``: sent.
        self.held: list[HeldTask] | None = None

    def hold_tasks(self) -> None:
        """Keep every task message sent from now on in this process, to run it with
        :meth:`run_held` (the test kit's eager mode; Celery's ``task_always_eager``
        does not apply to ``send_task``, and would run the task inside the request
        that starts it)."""
        if self.held is None:
            self.held = []

    def run_held(self) -> int:
        """Run the held tasks here, in the order they were sent, through the same
        generic task a worker runs (states, progress and result stored alike);
        return how many ran."""
        ran = 0
        while self.held:
            held = self.held.pop(0)
            self.tasks[held.name].apply(held.args, held.kwargs, task_id=held.task_id)
            ran += 1
        return ran

    def send_task(self, name: str, args: t.Sequence[t.Any] | None = None,
                  kwargs: dict[str, t.Any] | None = None, **options: t.Any) -> t.Any:
        """Celery's ``send_task``, or keep the message when tasks are held."""
        if self.held is None:
            return super().send_task(name, args, kwargs, **options)
        self.held.append(HeldTask(name, list(args or ()), dict(kwargs or {}),
                                  options["task_id"]))
        return None


def share_task_events(sender: t.Any, **kwargs: t.Any) -> None:
    """``worker_init``: whether the worker sends task events (``-E``), told to its
    pool processes through the config they inherit, so that a task sends its
    progress events (:func:`kernel.tasks.run.send_state_event`) only then."""
    if isinstance(sender.app, KernKoaCelery):
        sender.app.conf.worker_send_task_events = bool(sender.task_events)


signals.worker_init.connect(share_task_events, weak=False)


def make_celery(flask_app: Flask) -> KernKoaCelery:
    """Build the Celery app of ``flask_app`` (connects to nothing)."""
    settings = state_of(flask_app).settings
    if is_embedded(settings):
        # Creating folders is not connecting; the backend checks its folder.
        for name in EMBEDDED_FOLDERS:
            (embedded_root(settings) / name).mkdir(parents=True, exist_ok=True)
    celery = KernKoaCelery(flask_app, settings)
    register_tasks(celery)
    connect_task_logging()
    if celery.leases is not None:
        celery.steps["consumer"].add(LeaseStep)
    return celery


def get_celery(flask_app: Flask) -> KernKoaCelery:
    """The Celery app of ``flask_app``, made on first use."""
    state = state_of(flask_app)
    if state.celery is None:
        with _build_lock:
            if state.celery is None:
                state.celery = make_celery(flask_app)
    return state.celery
