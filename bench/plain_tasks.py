"""The hand-written Flask + Celery app the task benchmarks compare KernKoa with.

A plain Celery task with Celery's defaults on Redis (``BENCH_REDIS_URL``), a
route calling ``apply_async`` on it, and a route reading
``AsyncResult(id).state``: what a Flask user would write without KernKoa.
Run a worker of it with ``celery -A bench.plain_tasks:celery worker``.
"""

from __future__ import annotations

import os

from celery import Celery
from flask import Flask


def make_celery(url: str) -> Celery:
    """A Celery app on ``url`` as broker and result backend, JSON only."""
    celery = Celery("bench_plain", broker=url, backend=url, set_as_current=False)
    celery.conf.update(accept_content=["json"], broker_connection_retry_on_startup=True,
                       worker_hijack_root_logger=False)
    celery.task(name="bench.ping")(ping)
    return celery


def ping() -> str:
    """The trivial task."""
    return "pong"


celery = make_celery(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1"))
ping_task = celery.tasks["bench.ping"]
app = Flask(__name__)


@app.route("/hello")
def hello() -> str:
    """Readiness."""
    return "hello world!!."


@app.route("/trigger", methods=["POST"])
def trigger() -> tuple[dict[str, str], int]:
    """Start the task; answer its id."""
    result = ping_task.apply_async()
    return {"id": result.id, "status": "PENDING"}, 202


@app.route("/state/<task_id>")
def state(task_id: str) -> dict[str, str]:
    """The task's state as Celery reads it."""
    return {"status": celery.AsyncResult(task_id).state}
