"""Counting requests for ``/_kernkoa/metrics`` (``METRICS``).

Installed only when ``METRICS`` is on, so an app without metrics runs no code
of this per request: the app's WSGI callable becomes
:meth:`~kernel.web.flaskapp.KernKoaFlask.counted_wsgi_app`, which times all
Flask does (hooks, error handlers), so a refused request is counted and timed
like any other. Labels are bounded whatever the URLs: the route is the template the
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

from flask import Request

from ..catalog.loader import ModuleLoader
from ..core.metrics import UNRESOLVED
from ..core.metrics import Metrics
from ..core.metrics import enable
from ..core.settings import Settings

if t.TYPE_CHECKING:
    from .flaskapp import KernKoaFlask

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


def install_request_counting(app: KernKoaFlask, metrics: Metrics,
                             settings: Settings) -> None:
    """Count ``app``'s requests in ``metrics``
    (:meth:`~kernel.web.flaskapp.KernKoaFlask.count_requests`)."""
    app.count_requests(metrics.request_tally(flush_interval(settings)))


def watch_loader(loader: ModuleLoader, metrics: Metrics) -> None:
    """Count the reloads and load failures of ``loader``'s files (once per loader)."""
    if metrics.controller_loaded not in loader.listeners:
        loader.listeners.append(metrics.controller_loaded)
