"""Counting ``_celery`` calls for the metrics (``METRICS``, ``kernkoa worker --metrics-port``).

The web side counts what it sends (``kernkoa_tasks_sent_total``, from
:func:`kernel.tasks.enqueue.enqueue`); a worker counts what it ran
(``kernkoa_tasks_finished_total``, ``kernkoa_task_duration_seconds``) through
Celery's ``task_prerun`` / ``task_postrun`` signals, connected only when it
serves metrics, and answers scrapes on a port of its own. The route label is
the template the catalog resolves the task's route to, never its arguments.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from pathlib import Path

from celery import Task
from celery.signals import task_postrun
from celery.signals import task_prerun
from flask import Flask

from ..catalog.resolution import Catalog
from ..core.errors import KernelError
from ..core.errors import MetricsError
from ..core.metrics import UNRESOLVED
from ..core.metrics import Metrics
from ..core.metrics import active
from ..core.settings import Settings
from ..web.state import current_state
from ..web.state import state_of
from .run import TASK_NAME

log = logging.getLogger("kernkoa.worker")

#: Celery's state of a task that raised ``Ignore``: KernKoa's cancellation.
_STATES = {"IGNORED": "REVOKED"}


def worker_folder(settings: Settings, port: int) -> Path:
    """Where the processes of the worker serving metrics on ``port`` write them."""
    return settings.VAR / "metrics" / f"worker-{port}"


def route_template(catalog: Catalog, route: str) -> str:
    """The ``route`` label of a task's route: the method's template, or ``<unresolved>``."""
    try:
        target, _ = catalog.resolve(route)
    except KernelError:
        return UNRESOLVED
    return target.route


def count_sent(route: str) -> None:
    """Count one task the current app published, when this process counts."""
    metrics = active()
    if metrics is not None:
        metrics.tasks_sent.labels(route_template(current_state().catalog, route)).inc()


def watch_worker(app: Flask, metrics: Metrics) -> None:
    """Count every ``_celery`` call this worker runs (its pool inherits the signals)."""
    catalog = state_of(app).catalog
    started: dict[str, float] = {}
    lock = threading.Lock()

    def before(sender: Task, task_id: str, **_: t.Any) -> None:
        if sender.name == TASK_NAME:
            with lock:
                started[task_id] = time.monotonic()

    def after(sender: Task, task_id: str, kwargs: dict[str, t.Any] | None = None,
              state: str | None = None, **_: t.Any) -> None:
        if sender.name != TASK_NAME:
            return
        with lock:
            began = started.pop(task_id, None)
        route = route_template(catalog, str((kwargs or {}).get("route", "")))
        state = state or "FAILURE"
        metrics.tasks_finished.labels(route, _STATES.get(state, state)).inc()
        if began is not None:
            metrics.task_duration.labels(route).observe(time.monotonic() - began)

    task_prerun.connect(before, weak=False)
    task_postrun.connect(after, weak=False)


def serve_metrics(metrics: Metrics, host: str, port: int) -> None:
    """Answer scrapes of this worker's metrics on ``host:port`` (a daemon thread).

    :raises MetricsError: when the address cannot be listened on.
    """
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=metrics.registry())
    except OSError as error:
        raise MetricsError(f"cannot serve metrics on {host}:{port}: {error}") from None
    log.info("metrics on http://%s:%d/metrics", host, port)
