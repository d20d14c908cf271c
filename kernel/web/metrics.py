"""Counting requests for ``/_kernkoa/metrics`` (``METRICS``), as WSGI middleware.

Installed only when ``METRICS`` is on, so an app without metrics runs no code
of this module per request. The middleware wraps the whole app (proxies,
hooks, error handlers), so a refused request is counted and timed like any
other. Labels are bounded whatever the URLs: the route is the template the
catalog resolved (``/shop/cart/Cart/show``, never its arguments), the rule of
a kernel view (``/status/<task_id>``, ``/_kernkoa/health``), or
``<unresolved>`` for everything else; the method is one of the known ones or
``other``; the status is one of HTTP's.
"""

from __future__ import annotations

import logging
import os
import typing as t
from pathlib import Path
from time import perf_counter

from flask import Flask
from flask import Request

from ..catalog.loader import ModuleLoader
from ..core.metrics import UNRESOLVED
from ..core.metrics import Metrics
from ..core.metrics import enable
from ..core.metrics_batch import STARTED
from ..core.settings import Settings

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

try:  # only inside a uWSGI process
    import uwsgi
except ImportError:
    uwsgi = None

log = logging.getLogger(__name__)

#: The endpoint of the catch-all view, whose route comes from the catalog.
DISPATCH_ENDPOINT = "dispatch"


def web_folder(settings: Settings) -> Path:
    """Where the web server's processes write their metrics."""
    return settings.VAR / "metrics" / "web"


def server_start() -> str | None:
    """What identifies this start of the server, seen from any of its processes:
    the uWSGI master's pid (it loads the app, or each worker does with
    ``lazy-apps``), this process's without a master; ``None`` outside uWSGI
    (``kernkoa serve`` says it itself)."""
    if uwsgi is None:
        return None
    return f"uwsgi-{uwsgi.masterpid() or os.getpid()}"


def route_label(req: Request) -> str:
    """The ``route`` label of the request being answered."""
    rule = req.url_rule
    if rule is None:
        return UNRESOLVED
    if rule.endpoint != DISPATCH_ENDPOINT:
        return rule.rule
    resolved = getattr(req, "kernkoa_resolved", None)
    if resolved is None or resolved[2] is None:
        return UNRESOLVED
    return t.cast(str, resolved[1].route)


class RequestMetrics:
    """WSGI middleware: in-flight gauge, count and duration of every request,
    noted in the process's :class:`~kernel.core.metrics_batch.RequestTally`."""

    def __init__(self, app: WSGIApplication, metrics: Metrics, interval: float) -> None:
        self.app = app
        self.metrics = metrics
        self.tally = metrics.request_tally(interval)

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> t.Iterable[bytes]:
        """Answer through the app, then note the answer under its labels."""
        # What the app answered: the request (reachable from the environ only
        # while the app runs) and the status line; labelled once it returns.
        answer: tuple[Request | None, str] | None = None

        def capture(status: str, headers: t.Any, exc_info: t.Any = None) -> t.Any:
            nonlocal answer
            answer = (environ.get("werkzeug.request"), status)
            return start_response(status, headers, exc_info)

        tally = self.tally
        note = tally.note
        note(STARTED)
        if not tally.flushing:
            tally.start_flushing()
        started = perf_counter()
        try:
            return self.app(environ, capture)
        finally:
            seconds = perf_counter() - started
            if answer is None or answer[0] is None:
                note((UNRESOLVED, environ.get("REQUEST_METHOD"),
                      "500" if answer is None else answer[1], seconds))
            else:
                note((route_label(answer[0]), environ.get("REQUEST_METHOD"), answer[1], seconds))
            if not tally.interval:
                tally.flush()


def flush_interval(settings: Settings) -> float:
    """Seconds between two writes of a process's request counts: ``METRICS_FLUSH_SECONDS``,
    or 0 (every request writes) in a uWSGI process whose threads cannot run
    between requests, where the flushing thread would wait for the next one."""
    if uwsgi is not None and not threads_enabled(uwsgi.opt):
        log.warning("uWSGI runs without enable-threads: METRICS writes every request "
                    "at once, which costs more (docs/operations.md, Metrics)")
        return 0.0
    return settings.METRICS_FLUSH_SECONDS


def threads_enabled(options: t.Mapping[str, t.Any]) -> bool:
    """Whether uWSGI runs Python threads: ``enable-threads``, or ``threads`` above 1."""
    def text(value: t.Any) -> str:
        return (value.decode() if isinstance(value, bytes) else str(value)).strip().lower()

    enabled = options.get("enable-threads")
    threads = text(options.get("threads") or "1")
    return (enabled is not None and text(enabled) not in ("", "0", "false", "off", "no")
            or threads.isdigit() and int(threads) > 1)


def enable_web_metrics(settings: Settings) -> Metrics:
    """This process's metrics, in the web server's folder unless another was chosen
    first. Called before the add-ons load: one importing ``prometheus_client``
    first would fix it in single-process mode."""
    return enable(web_folder(settings), server_start())


def install_metrics(app: Flask, metrics: Metrics, loader: ModuleLoader,
                    settings: Settings) -> None:
    """Count ``app``'s requests and ``loader``'s reloads in ``metrics``."""
    watch_loader(loader, metrics)
    app.wsgi_app = RequestMetrics(  # type: ignore[method-assign]
        app.wsgi_app, metrics, flush_interval(settings))


def watch_loader(loader: ModuleLoader, metrics: Metrics) -> None:
    """Count the reloads and load failures of ``loader``'s files (once per loader)."""
    if metrics.controller_loaded not in loader.listeners:
        loader.listeners.append(metrics.controller_loaded)
