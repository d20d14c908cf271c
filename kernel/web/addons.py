"""Add-ons: opt-in modules of ``system/addons/`` enabled by name in ``config.ADDONS``.

An add-on is a plain module. It may define any of these hooks (all optional):

``before_request()``
    Called before the controller, inside the request context. Returning
    anything but ``None`` ends the request with that value as the response
    (as Flask's ``before_request`` does), e.g. a 401 from an auth add-on;
    later add-ons and the controller are then skipped.
``after_request(response)``
    Called with the response; returns the response to send (``None`` keeps
    it). Runs for error responses too.
``init_app(app, settings)``
    Called once when the app is created, to read settings and check them;
    raising stops start-up with :class:`AddonError` (a clear message, never a
    prompt). Keep per-app state in ``app.extensions``: one add-on module
    serves every app of the process.
``on_task_start(*, task_id, name, **info)``
    Called in the worker when a ``_celery`` method starts. ``name`` is the
    task's route (``/folder/module/Class/method_celery``).
``on_task_finish(*, task_id, name, state, duration, error=None, **info)``
    Called in the worker when it ends; ``state`` is ``SUCCESS``, ``FAILURE``
    or ``REVOKED``, ``duration`` is in seconds, ``error`` the exception if any.

Task hooks must accept ``**info``: the kernel may pass more keywords later
(it passes ``retries``, how many times the task ran before this run).
``before_request`` and ``on_task_start`` hooks run in the order of
``config.ADDONS``; ``after_request`` and ``on_task_finish`` in reverse order,
so the first add-on wraps all the others. An exception in a request hook is an
error of the request (500); an exception in a task hook is logged and does not
touch the task.

Add-ons are loaded once per process, when the app is created: a name that does
not exist or a module that fails to import stops start-up with
:class:`AddonError`.
"""

from __future__ import annotations

import logging
import types
import typing as t
from dataclasses import dataclass

from flask import Flask
from flask import current_app
from flask import has_app_context
from werkzeug.wrappers import Response

from ..catalog.files import load_addon_module
from ..core.errors import AddonError
from ..core.errors import CatalogLoadError
from ..core.settings import Settings
from .hooks import add_before_request
from .state import STATE_KEY
from .state import current_settings
from .state import state_of

log = logging.getLogger("kernkoa")

#: The hook names an add-on may define.
HOOKS = ("init_app", "before_request", "after_request", "on_task_start", "on_task_finish",
         "authenticate", "challenge")



@dataclass(frozen=True)
class Addon:
    """One enabled add-on and the hooks it defines."""

    name: str
    module: types.ModuleType

    def hook(self, name: str) -> t.Callable[..., t.Any] | None:
        """The hook ``name``, or ``None`` when the add-on does not define it."""
        return t.cast("t.Callable[..., t.Any] | None", getattr(self.module, name, None))


class Addons:
    """The enabled add-ons of one app, in ``config.ADDONS`` order."""

    def __init__(self, addons: list[Addon]) -> None:
        self.addons = addons

    @classmethod
    def load(cls, settings: Settings) -> Addons:
        """Load every add-on that ``settings.ADDONS`` names.

        :raises AddonError: naming the add-on and what went wrong.
        """
        names = settings.ADDONS
        if isinstance(names, str):
            names = [part.strip() for part in names.split(",") if part.strip()]
        addons: list[Addon] = []
        for name in names:
            try:
                module = load_addon_module(settings, name)
            except CatalogLoadError as error:
                raise AddonError(f"add-on {name!r} in config.ADDONS cannot be loaded: {error}") \
                    from None
            for hook in HOOKS:
                value = getattr(module, hook, None)
                if value is not None and not callable(value):
                    raise AddonError(f"add-on {name!r}: {hook} is not callable")
            addons.append(Addon(name, module))
        return cls(addons)

    @property
    def names(self) -> list[str]:
        """The names of the enabled add-ons, in order."""
        return [addon.name for addon in self.addons]

    def _hooks(self, name: str, reverse: bool = False) -> list[t.Callable[..., t.Any]]:
        ordered = reversed(self.addons) if reverse else self.addons
        return [hook for addon in ordered if (hook := addon.hook(name)) is not None]

    def before_request(self) -> t.Any:
        """Run the ``before_request`` hooks; the first non-``None`` result ends the request."""
        for hook in self._hooks("before_request"):
            result = hook()
            if result is not None:
                return result
        return None

    def after_request(self, response: Response) -> Response:
        """Run the ``after_request`` hooks, last add-on first."""
        for hook in self._hooks("after_request", reverse=True):
            result = hook(response)
            if result is not None:
                response = result
        return response

    def task_started(self, task_id: str, name: str, **info: t.Any) -> None:
        """Run the ``on_task_start`` hooks; a failing hook is logged and skipped."""
        for hook in self._hooks("on_task_start"):
            _call_logged(hook, task_id=task_id, name=name, **info)

    def task_finished(self, task_id: str, name: str, state: str, duration: float,
                      error: BaseException | None = None, **info: t.Any) -> None:
        """Run the ``on_task_finish`` hooks, last add-on first; failures are logged."""
        for hook in self._hooks("on_task_finish", reverse=True):
            _call_logged(hook, task_id=task_id, name=name, state=state, duration=duration,
                         error=error, **info)


def _call_logged(hook: t.Callable[..., t.Any], **kwargs: t.Any) -> None:
    try:
        hook(**kwargs)
    except Exception:
        log.exception("add-on hook %s.%s failed", hook.__module__, hook.__name__)


def install_addons(app: Flask, settings: Settings) -> Addons:
    """Load the add-ons ``settings`` enable and wire their request hooks into ``app``.

    :raises AddonError: when one cannot be loaded.
    """
    addons = state_of(app).addons = Addons.load(settings)
    for addon in addons.addons:
        init = addon.hook("init_app")
        if init is not None:
            try:
                init(app, settings)
            except Exception as error:
                raise AddonError(f"add-on {addon.name!r} cannot start: {error}") from error
    if addons._hooks("before_request"):
        # Add-on hooks take no arguments: they read flask.request themselves.
        add_before_request(app, lambda _req: addons.before_request())
    if addons._hooks("after_request"):
        app.after_request(addons.after_request)
    if addons.names:
        log.info("add-ons enabled: %s", ", ".join(addons.names))
    return addons


_default_addons: Addons | None = None


def current_addons() -> Addons:
    """The add-ons of the current app, or those ``config.py`` enables outside an app
    (a worker without an app context)."""
    global _default_addons
    if has_app_context():
        state = current_app.extensions.get(STATE_KEY)
        if state is not None and state.addons is not None:
            return t.cast(Addons, state.addons)
    if _default_addons is None:
        _default_addons = Addons.load(current_settings())
    return _default_addons


def notify_task_start(task_id: str, name: str, **info: t.Any) -> None:
    """Tell the enabled add-ons that a task started (for the Celery integration)."""
    current_addons().task_started(task_id, name, **info)


def notify_task_finish(task_id: str, name: str, state: str, duration: float,
                       error: BaseException | None = None, **info: t.Any) -> None:
    """Tell the enabled add-ons that a task ended (for the Celery integration)."""
    current_addons().task_finished(task_id, name, state, duration, error=error, **info)
