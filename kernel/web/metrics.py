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

import os
import time
import typing as t
from pathlib import Path

from flask import Flask
from flask import Request

from ..catalog.loader import ModuleLoader
from ..core.metrics import UNRESOLVED
from ..core.metrics import Metrics
from ..core.metrics import enable
from ..core.metrics import method_label
from ..core.settings import Settings

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

try:  # only inside a uWSGI process
    import uwsgi
except ImportError:
    uwsgi = None

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
    """WSGI middleware: in-flight gauge, count and duration of every request."""

    def __init__(self, app: WSGIApplication, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.in_flight = metrics.http_in_flight
        # Children by label values: ``labels()`` checks its arguments on every call.
        self._counters: dict[tuple[str, str, str], t.Any] = {}
        self._timers: dict[str, t.Any] = {}

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> t.Iterable[bytes]:
        """Answer through the app, then count the answer under its labels."""
        # Flask starts the response while the request is still reachable from
        # the environ; it is gone once the app returns.
        answer = [UNRESOLVED, "500"]

        def capture(code: str, headers: t.Any, exc_info: t.Any = None) -> t.Any:
            req = environ.get("werkzeug.request")
            if req is not None:
                answer[0] = route_label(req)
            answer[1] = code[:3]
            return start_response(code, headers, exc_info)

        started = time.perf_counter()
        self.in_flight.inc()
        try:
            return self.app(environ, capture)
        finally:
            self.in_flight.dec()
            self._record(environ, answer[0], answer[1], time.perf_counter() - started)

    def _record(self, environ: WSGIEnvironment, route: str, status: str,
                seconds: float) -> None:
        key = (route, method_label(environ.get("REQUEST_METHOD", "")), status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.http_requests.labels(*key)
        counter.inc()
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self.metrics.http_duration.labels(route)
        timer.observe(seconds)


def enable_web_metrics(settings: Settings) -> Metrics:
    """This process's metrics, in the web server's folder unless another was chosen
    first. Called before the add-ons load: one importing ``prometheus_client``
    first would fix it in single-process mode."""
    return enable(web_folder(settings), server_start())


def install_metrics(app: Flask, metrics: Metrics, loader: ModuleLoader) -> None:
    """Count ``app``'s requests and ``loader``'s reloads in ``metrics``."""
    watch_loader(loader, metrics)
    app.wsgi_app = RequestMetrics(app.wsgi_app, metrics)  # type: ignore[method-assign]


def watch_loader(loader: ModuleLoader, metrics: Metrics) -> None:
    """Count the reloads and load failures of ``loader``'s files (once per loader)."""
    if metrics.controller_loaded not in loader.listeners:
        loader.listeners.append(metrics.controller_loaded)
