"""KernKoa's entry point, as KernKoa controllers and deployments know it.

- Controllers: ``from kernkoa import *`` gives the names in ``__all__``.
- uWSGI: ``module = kernkoa``, ``callable = app``.
- Development: ``python kernkoa.py`` is ``kernkoa serve``.
- Workers: ``celery -A kernkoa.celery worker`` (``-A kernkoa`` would find ``app``).

Importing this module creates no app: ``app`` is built on first use, so a
controller's ``from kernkoa import *`` costs nothing and starts nothing.
"""

from __future__ import annotations

import html
import json
import time
import typing as t

from flask import Flask
from flask import Response
from flask import abort
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import send_file
from flask import session
from flask import stream_template
from flask import url_for
from werkzeug.local import LocalProxy

import kernel.app as _kernel_app
from kernel.api.config import config
from kernel.api.databases import dbs
from kernel.api.load import load
from kernel.catalog.access import public
from kernel.catalog.access import requires
from kernel.catalog.exposure import methods
from kernel.catalog.schedules import cron
from kernel.catalog.schedules import every
from kernel.core.errors import ParameterError
from kernel.core.lazy import LazyModule
from kernel.web.rendering import render

__all__ = [
    "ParameterError",
    "Response",
    "abort",
    "config",
    "cron",
    "dbs",
    "escape",
    "every",
    "exeTask",
    "json",
    "jsonify",
    "load",
    "methods",
    "public",
    "redirect",
    "render",
    "render_template",
    "request",
    "requires",
    "send_file",
    "session",
    "stream_template",
    "task_options",
    "time",
    "url_for",
]


# Celery's stack costs every worker process ~15 MiB and ~150 ms to import:
# it is loaded when a controller first uses these, not by the star import.
_jobs = LazyModule("kernel.tasks.enqueue")
_tasks = LazyModule("kernel.tasks.run")


def exeTask(instance: t.Any, name: str, params: t.Mapping[str, t.Any] | None = None) -> dict:
    """KernKoa's ``exeTask(self, "name_celery", params)``.

    See :func:`kernel.tasks.enqueue.exe_task`.
    """
    return t.cast(dict, _jobs.exe_task(instance, name, params))


def task_options(*args: t.Any, **options: t.Any) -> t.Callable[[t.Any], t.Any]:
    """Celery options of one ``_celery`` method: see :func:`kernel.tasks.run.task_options`."""
    return t.cast(t.Callable[[t.Any], t.Any], _tasks.task_options(*args, **options))


def escape(value: t.Any) -> str:
    """``value`` as text safe to put into HTML: ``& < > " '`` become entities.

    Returns a plain ``str``, so KernKoa-style ``"..." + escape(x) + "<br>"``
    concatenation keeps working.
    """
    return html.escape(str(value), quote=True)


def _default_app() -> Flask:
    # uWSGI calls through this on every request: no import statement in here.
    return _kernel_app.default_app()


class _DefaultAppProxy(LocalProxy):  # type: ignore[type-arg]
    """A proxy to the default app whose WSGI call goes straight to the app.

    A plain :class:`LocalProxy` resolves ``__call__`` through two descriptor
    layers, about 2 % of a small request under uWSGI.
    """

    __slots__ = ()

    def __call__(self, environ: dict[str, t.Any], start_response: t.Callable[..., t.Any]) -> t.Any:
        return _kernel_app.default_app().wsgi_app(environ, start_response)


#: The app of ``config.py`` and the environment, built on first use. A proxy
#: rather than a module ``__getattr__``: uWSGI looks ``callable = app`` up in the
#: module's ``__dict__``, and would not find a name served by ``__getattr__``.
app: Flask = _DefaultAppProxy(_default_app)  # type: ignore[assignment]


def __getattr__(name: str) -> t.Any:
    if name == "celery":
        # ``celery -A kernkoa.celery worker``: the Celery app, built on first use.
        from kernel.tasks.celeryapp import get_celery

        return get_celery(_kernel_app.default_app())
    raise AttributeError(f"module 'kernkoa' has no attribute {name!r}")


if __name__ == "__main__":
    import sys

    from kernel.cli.main import main

    sys.exit(main(["serve", *sys.argv[1:]]))
