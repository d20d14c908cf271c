"""``load``: models, controllers, print formats and add-ons, by name, from their folders.

=========================================  ==============================================
call                                       gives
=========================================  ==============================================
``load.model("model_message", "message")``  an instance of class ``model_message`` from
                                            ``catalog/model/message/model_message.py``
``load.controller(name, folder=None)``      an instance, from ``catalog/controller/``
``load.printFormat(name, folder=None)``     the class itself, from ``catalog/print/``
``load.addon(module, component)``           attribute ``component`` of
                                            ``system/addons/<module>.py``
=========================================  ==============================================

Files are loaded by path with the kernel's :class:`~kernel.catalog.loader.ModuleLoader`
(the one serving the current app's controllers, or one for ``config.py``'s
catalog outside an app), so models get the same namespacing and hot reload as
controllers: a changed model file is executed again on its next use. Every
name and folder segment must match :data:`kernel.catalog.routing.SEGMENT`, and the
file must lie inside its folder: nothing is ever imported from elsewhere.
Instances are built with no arguments, as KernKoa did.
"""

from __future__ import annotations

import typing as t

from flask import has_app_context

from ..catalog.files import catalog_file
from ..catalog.files import class_named
from ..catalog.files import load_addon_module
from ..catalog.files import load_module_file
from ..catalog.loader import ModuleLoader
from ..catalog.loader import shared_loader
from ..catalog.routing import SEGMENT
from ..core.errors import CatalogLoadError
from ..core.settings import Settings
from ..web.state import current_settings
from ..web.state import current_state


class Loader:
    """What controllers see as ``load``. Each call finds the current app's
    loader (or ``config.py``'s outside an app), so hot reload applies."""

    @staticmethod
    def _catalog() -> tuple[ModuleLoader, Settings]:
        if has_app_context():
            state = current_state()
            return state.catalog.loader, state.settings
        settings = current_settings()
        return shared_loader(settings.CATALOG, settings.RELOAD), settings

    def _catalog_class(self, kind: str, name: str, folder: str | None) -> type:
        loader, _ = self._catalog()
        file = catalog_file(loader.root / kind, name, folder)
        return class_named(load_module_file(loader, file), name, file)

    def model(self, name: str, folder: str | None = None) -> t.Any:
        """An instance of class ``name`` from ``catalog/model/<folder>/<name>.py``."""
        return self._catalog_class("model", name, folder)()

    def controller(self, name: str, folder: str | None = None) -> t.Any:
        """An instance of class ``name`` from ``catalog/controller/<folder>/<name>.py``."""
        return self._catalog_class("controller", name, folder)()

    def printFormat(self, name: str, folder: str | None = None) -> type:
        """The class ``name`` (not an instance) from ``catalog/print/<folder>/<name>.py``."""
        return self._catalog_class("print", name, folder)

    def addon(self, module: str, component: str) -> t.Any:
        """Attribute ``component`` of the add-on module ``system/addons/<module>.py``."""
        if not isinstance(component, str) or not SEGMENT.fullmatch(component):
            raise CatalogLoadError(f"{component!r} is not a valid add-on component name")
        _, settings = self._catalog()
        loaded = load_addon_module(settings, module)
        try:
            return getattr(loaded, component)
        except AttributeError:
            raise CatalogLoadError(f"add-on {module!r} has no {component!r}") from None

    def __repr__(self) -> str:
        return "<kernkoa load>"


#: The ``load`` object exported to controllers.
load = Loader()
