"""``GET /_kernkoa/health``: is this web process, its broker and its result store up?
``GET /_kernkoa/health/tasks``: do the catalog's queues have live workers?

200 ``{"status": "ok", "checks": {...}, "workers": {"queues": {queue: live
workers}}}`` when all answer; 503 with the error envelope naming the failed
parts otherwise. The workers are reported, never part of that verdict;
``/health/tasks`` judges them (see :func:`task_health`), from the heartbeats
of :mod:`kernel.tasks.leases` (Celery's remote control for RabbitMQ). For load balancers and
orchestrators, so it is fast and bounded: the broker and result-store checks
run side by side, each with the Celery work's connect timeouts and circuit
breaker (``BROKER_TIMEOUT``, ``BROKER_COOLDOWN``), and the whole answer comes
within ``HEALTH_TIMEOUT`` seconds even if a check hangs. It is never behind
a login (the auth layer treats it as public), and ``HEALTH = False`` turns it
off.
"""

from __future__ import annotations

import json
import threading
import time
import typing as t

from flask import Flask
from flask import current_app
from werkzeug.wrappers import Response

from ..catalog.access import PUBLIC
from ..catalog.access import guarded_by
from ..core.lazy import LazyModule
from ..web.envelope import envelope
from ..web.state import current_state
from ..web.state import state_of

# The Celery stack (~15 MiB per worker process) comes with the first health
# check, not with the app.
_celeryapp = LazyModule("kernel.tasks.celeryapp")
_jobs = LazyModule("kernel.tasks.enqueue")
_jobstore = LazyModule("kernel.tasks.store")
_leases = LazyModule("kernel.tasks.leases")
_registry = LazyModule("kernel.catalog.registry")
_tasks = LazyModule("kernel.tasks.run")

#: A check: raises when its part does not answer.
Check = t.Callable[[], None]

#: The key read from the result store: any answer, even "missing", proves it is up.
PROBE_KEY = b"kernkoa-health-probe"


def check_broker() -> None:
    """Open a connection to the broker (the Redis transport pings on connect)."""
    celery, breaker = _jobs.celery_and_breaker()

    def connect() -> None:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            # A channel makes kombu talk to the server (Redis: PING).
            connection.default_channel  # noqa: B018

    breaker.call(connect)


def check_result_store() -> None:
    """Read one key from the result store."""
    celery, breaker = _jobs.celery_and_breaker()
    breaker.call(lambda: _jobstore.JobStore(celery).backend.get(PROBE_KEY))


def run_checks(checks: dict[str, Check], timeout: float) -> dict[str, dict[str, t.Any]]:
    """Run the checks in parallel threads; a check not done within ``timeout`` fails.

    Threads are made per call (never at import) and are daemons, so a check
    stuck in a system call cannot hold the answer or the process's exit.
    """
    results: dict[str, dict[str, t.Any]] = {}
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def run(name: str, check: Check) -> None:
        started = time.monotonic()
        try:
            with app.app_context():
                check()
        except Exception as error:  # any failure is the answer, not a crash
            results[name] = {"ok": False, "error": type(error).__name__,
                             "message": getattr(error, "description", None) or str(error)}
        else:
            results[name] = {"ok": True}
        results[name]["seconds"] = round(time.monotonic() - started, 3)

    threads = [threading.Thread(target=run, args=item, daemon=True, name=f"health-{item[0]}")
               for item in checks.items()]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    timed_out = {"ok": False, "error": "Timeout", "message": f"no answer within {timeout} s"}
    # A late thread may still write into ``results``: answer from a copy, in order.
    return {name: dict(results.get(name, timed_out)) for name in checks}


def worker_source() -> t.Any:
    """Where the current app's workers are found: the heartbeat records of
    :mod:`kernel.tasks.leases`, or Celery's remote control for other brokers."""
    celery, _ = _jobs.celery_and_breaker()
    leases = celery.leases
    if leases is None:
        settings = current_state().settings
        return _leases.PingedWorkers(celery, settings.HEALTH_TIMEOUT / 2)
    return leases


def workers_by_queue() -> dict[str, int]:
    """How many live workers consume each queue (a worker counts once per queue)."""
    counts: dict[str, int] = {}
    for record in worker_source().workers():
        for queue in record.queues:
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def catalog_queues() -> list[str]:
    """The queues the catalog's ``_celery`` methods are sent to."""
    celery, _ = _jobs.celery_and_breaker()
    default = celery.conf.task_default_queue
    routes, _broken = _registry.scan(current_state().catalog)
    return sorted({_tasks.options_of(route.endpoint.func).get("queue") or default
                   for route in routes if route.endpoint.is_celery} | {default})


def _respond(body: dict[str, t.Any], status: int) -> Response:
    response = current_app.response_class(json.dumps(body), status=status,
                                          mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@guarded_by(PUBLIC)  # load balancers ask without a login
def health() -> Response:
    """The health answer (see the module docstring)."""
    settings = current_state().settings
    found: dict[str, dict[str, int]] = {}

    def read_workers() -> None:
        found["queues"] = workers_by_queue()

    checks = run_checks({"broker": check_broker, "result_store": check_result_store,
                         "workers": read_workers}, settings.HEALTH_TIMEOUT)
    # The workers are reported, never part of the verdict: a load balancer asks
    # whether this web process can serve, which it can without a worker.
    workers = {**checks.pop("workers"), "queues": found.get("queues")}
    checks = {"web": {"ok": True}, **checks}
    failed = [name for name, result in checks.items() if not result["ok"]]
    kind = "embedded" if _celeryapp.is_embedded(settings) else settings.BROKER_URL.split(":", 1)[0]
    if failed:
        body = envelope(503, "unhealthy", "not answering: " + ", ".join(failed),
                        failed=failed, checks=checks, broker=kind, workers=workers)
        return _respond(body, 503)
    return _respond({"status": "ok", "checks": checks, "broker": kind, "workers": workers}, 200)


@guarded_by(PUBLIC)
def task_health() -> Response:
    """``GET /_kernkoa/health/tasks``: can the catalog's tasks run now?

    200 when at least one live worker consumes every queue the catalog sends
    tasks to; 503 ``degraded`` naming the queues without one (or ``unhealthy``
    when the broker cannot be read). Each queue reports its live workers, the
    tasks waiting in it and the age in seconds of the oldest.
    """
    settings = current_state().settings
    found: dict[str, t.Any] = {}

    def read() -> None:
        source = worker_source()
        counts = workers_by_queue()
        now = time.time()
        for queue in catalog_queues():
            waiting = source.waiting(queue)
            found[queue] = {
                "workers": counts.get(queue, 0), "waiting": waiting.count,
                "oldest_seconds": None if waiting.oldest is None
                else round(max(0.0, now - waiting.oldest), 1)}

    check = run_checks({"tasks": read}, settings.HEALTH_TIMEOUT)["tasks"]
    if not check["ok"]:
        body = envelope(503, "unhealthy", "the task broker cannot be read", checks=check)
        return _respond(body, 503)
    queues = dict(found)
    idle = [queue for queue, seen in queues.items() if not seen["workers"]]
    if idle:
        body = envelope(503, "degraded", "no worker consumes: " + ", ".join(idle),
                        queues=queues, failed=idle)
        return _respond(body, 503)
    return _respond({"status": "ok", "queues": queues}, 200)


def register(app: Flask, prefix: str) -> None:
    """Add ``<prefix>/health`` and ``<prefix>/health/tasks`` unless ``HEALTH`` is off."""
    if state_of(app).settings.HEALTH:
        app.add_url_rule(f"{prefix}/health", "kernkoa_health", health, methods=["GET", "HEAD"])
        app.add_url_rule(f"{prefix}/health/tasks", "kernkoa_health_tasks", task_health,
                         methods=["GET", "HEAD"])
