"""The application factory.

``create_app()`` builds a Flask app serving the catalog: the catch-all route,
the static ``/images/`` and ``/pdfs/`` folders, and the JSON error envelope.
Building it imports no controller, starts no thread and opens no connection,
so uWSGI may fork after loading it. Where nothing configured logging (bare
uWSGI), it writes the process's log lines to stderr in ``LOG_FORMAT``
(:func:`kernel.core.logs.install_logging`).
"""

from __future__ import annotations

import logging
import typing as t
from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask import Request
from flask import request
from flask import send_from_directory
from werkzeug.exceptions import SecurityError
from werkzeug.wrappers import Response

from .auth.layer import install_auth
from .catalog.loader import shared_loader
from .catalog.resolution import Catalog
from .catalog.routing import Limits
from .catalog.routing import Router
from .core.errors import RouteNotFound
from .core.logs import install_logging
from .core.secretkey import check_secret
from .core.secretkey import generated_secret
from .core.settings import PROJECT_ROOT
from .core.settings import Settings
from .pages.views import register as register_pages
from .tasks.routes import init_app as init_tasks
from .web.addons import install_addons
from .web.allow import ROUTED_METHODS
from .web.dispatch import dispatch
from .web.envelope import register_error_handlers
from .web.fastmatch import CatchAllShortcut
from .web.flaskapp import KernKoaFlask
from .web.hooks import add_before_request
from .web.limits import install_limits
from .web.metrics import enable_web_metrics
from .web.metrics import install_request_counting
from .web.metrics import watch_loader
from .web.proxies import install_trusted_proxies
from .web.sessions import CachedSecureCookieSessionInterface
from .web.state import install_state

log = logging.getLogger("kernkoa")

#: First path segments that are never controller paths (besides the kernel prefix).
RESERVED_SEGMENTS = ("status", "images", "pdfs")


def create_app(overrides: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build a KernKoa application.

    :param overrides: settings that win over ``config.py`` and the environment
        (tests point ``CATALOG`` at a folder of their own this way).
    """
    settings = Settings.load(overrides)
    install_logging(settings.LOG_FORMAT)
    check_secret(settings, overrides)
    metrics = enable_web_metrics(settings) if settings.METRICS else None
    app = KernKoaFlask(
        "kernkoa",
        root_path=str(PROJECT_ROOT),
        template_folder=str(settings.TEMPLATES),
        static_folder=None,
    )
    app.debug = settings.DEBUG
    app.config.update(
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,
        SECRET_KEY=settings.secretKey or generated_secret(settings.VAR),
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_timeout),
        TRUSTED_HOSTS=settings.TRUSTED_HOSTS or None,
    )
    # Same cookies as Flask's, minus ~19 µs per request of serializer building.
    app.session_interface = CachedSecureCookieSessionInterface()
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False

    reserved = frozenset((*RESERVED_SEGMENTS, settings.RESERVED_PREFIX))
    router = Router(
        settings.CATALOG / "controller",
        index_route=settings.INDEX_ROUTE,
        reserved=reserved,
        limits=Limits(settings.MAX_PATH_LENGTH, settings.MAX_PATH_DEPTH,
                      settings.MAX_SEGMENT_LENGTH),
    )
    loader = shared_loader(settings.CATALOG, reload=settings.RELOAD)
    install_state(app, settings, Catalog(router, loader, settings.ROUTE_CACHE_SIZE))

    base = settings.base.rstrip("/")
    app.add_url_rule(f"{base}/", "dispatch", dispatch, methods=ROUTED_METHODS,
                     provide_automatic_options=False)
    app.add_url_rule(f"{base}/<path:path>", "dispatch", dispatch, methods=ROUTED_METHODS,
                     provide_automatic_options=False)
    # Werkzeug's wildcard match costs ~5 µs; paths only this rule can match skip it.
    app.catch_all_shortcut = CatchAllShortcut(app, "dispatch")
    init_tasks(app)
    _add_static_folder(app, f"{base}/images", "images", settings.IMAGES)
    _add_static_folder(app, f"{base}/pdfs", "pdfs", settings.PDFS)
    register_error_handlers(app)
    register_pages(app)
    if app.config["TRUSTED_HOSTS"]:
        add_before_request(app, refuse_untrusted_host)
    install_limits(app, settings)
    if metrics is not None:  # before any WSGI middleware: it replaces the callable
        install_request_counting(app, metrics, settings)
    install_addons(app, settings)
    install_auth(app, settings)
    install_trusted_proxies(app, settings)
    if metrics is not None:
        watch_loader(loader, metrics)
    _warn_about_shadowed_controllers(router.root, reserved)
    return app


def refuse_untrusted_host(req: Request) -> None:
    """End a request whose ``Host`` is not in ``TRUSTED_HOSTS`` with its 400,
    before any other check: Flask would raise it only after every
    ``before_request`` hook, so a forged host would still cost an auth
    decision (a password hash) and be answered 401 instead."""
    if isinstance(req.routing_exception, SecurityError):
        raise req.routing_exception


def _add_static_folder(app: Flask, rule: str, name: str, folder: Path) -> None:
    def serve(filename: str = "") -> Response:
        # The KernKoa form /images?image=NAME is accepted too.
        filename = filename or request.args.get(name[:-1], "")
        if not filename:
            raise RouteNotFound(detail=f"no file named under /{name}")
        return send_from_directory(folder, filename)

    serve.__name__ = f"static_{name}"
    app.add_url_rule(rule, serve.__name__, serve, methods=["GET", "HEAD"])
    app.add_url_rule(f"{rule}/<path:filename>", serve.__name__, serve, methods=["GET", "HEAD"])


def _warn_about_shadowed_controllers(root: Path, reserved: frozenset[str]) -> None:
    for name in sorted(reserved):
        for shadowed in (root / f"{name}.py", root / name):
            if shadowed.exists():
                log.warning("%s is never reached: /%s/ is reserved by the kernel", shadowed, name)


_default_app: Flask | None = None


def default_app() -> Flask:
    """The app built from ``config.py`` and the environment, created on first use."""
    global _default_app
    if _default_app is None:
        _default_app = create_app()
    return _default_app

