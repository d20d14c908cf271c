"""Everything KernKoa keeps for one app, in one typed object.

Each layer hands its part to the app it is given (``init_app``-style), never
importing the composition root: the factory creates the :class:`KernKoaState`
with the settings and the catalog, the add-on and auth layers fill in theirs,
and the task layer adds how a ``_celery`` method is started. Views reach it
through :func:`current_state`, other code through :func:`state_of`.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from flask import Flask
from flask import current_app
from flask import has_app_context
from werkzeug.wrappers import Response

from ..catalog.exposure import Endpoint
from ..catalog.resolution import Catalog
from ..core.settings import Settings

if t.TYPE_CHECKING:  # the layers above fill these in
    from ..auth.layer import AuthLayer
    from ..tasks.celeryapp import KernKoaCelery
    from .addons import Addons

#: The key of the state in Flask's ``app.extensions``.
STATE_KEY = "kernkoa"

#: Sends a bound ``_celery`` call to a worker and answers the trigger:
#: ``(endpoint, route, args, kwargs) -> response``.
TaskStarter = t.Callable[[Endpoint, str, list[t.Any], dict[str, t.Any]], Response]


@dataclass(eq=False)
class KernKoaState:
    """The per-app state of KernKoa."""

    #: The app's settings, parsed once.
    settings: Settings
    #: The controllers, by URL path (the route cache).
    catalog: Catalog
    #: The enabled add-ons (set when they are installed).
    addons: Addons | None = None
    #: The per-request access decision (set when it is installed).
    auth: AuthLayer | None = None
    #: Starts ``_celery`` methods (set by the task layer).
    start_task: TaskStarter | None = None
    #: The Celery app, made on first use by the task layer.
    celery: KernKoaCelery | None = None


def state_of(app: Flask) -> KernKoaState:
    """The :class:`KernKoaState` of ``app``."""
    state: KernKoaState = app.extensions[STATE_KEY]  # no t.cast: a call per request
    return state


def current_state() -> KernKoaState:
    """The :class:`KernKoaState` of the app handling the current request."""
    state: KernKoaState = current_app.extensions[STATE_KEY]
    return state


def install_state(app: Flask, settings: Settings, catalog: Catalog) -> KernKoaState:
    """Give ``app`` its :class:`KernKoaState`."""
    state = app.extensions[STATE_KEY] = KernKoaState(settings, catalog)
    return state


_default_settings: Settings | None = None


def current_settings() -> Settings:
    """The settings of the current app, or those of ``config.py`` outside one."""
    global _default_settings
    if has_app_context():
        return current_state().settings
    if _default_settings is None:
        _default_settings = Settings.load()
    return _default_settings
