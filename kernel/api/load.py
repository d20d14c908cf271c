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

import types
import typing as t
from pathlib import Path

from flask import current_app
from flask import has_app_context

from ..catalog.loader import ModuleLoader
from ..catalog.loader import shared_loader
from ..catalog.routing import SEGMENT
from ..core.containment import stays_inside
from ..core.errors import CatalogLoadError
from ..core.errors import FileOutsideFolder
from ..core.settings import Settings
from ..core.settings import current_settings


def addons_folder(settings: Settings) -> Path:
    """The folder of the add-on modules (``ADDONS_FOLDER``, from the project root)."""
    folder = Path(settings.ADDONS_FOLDER)
    root = Path(settings.path)
    return (root / folder).resolve()


def catalog_file(root: Path, name: str, folder: str | None = None) -> Path:
    """The file ``<root>/<folder>/<name>.py``, after checking every part of the name.

    ``folder`` may hold several segments separated by ``/``.

    :raises CatalogLoadError: for a name outside the identifier grammar, a
        file that does not exist, or one that leads outside ``root``.
    """
    if folder is not None and not isinstance(folder, str):
        raise CatalogLoadError(f"folder must be a string, not {type(folder).__name__}")
    parts = folder.strip("/").split("/") if folder else []
    for part in (*parts, name):
        if not isinstance(part, str) or not SEGMENT.fullmatch(part):
            raise CatalogLoadError(
                f"{part!r} is not a valid name: use letters, digits and '_', starting "
                "with a letter"
            )
    file = root.joinpath(*parts, f"{name}.py")
    if not file.is_file():
        raise CatalogLoadError(f"there is no file {file}")
    if not stays_inside(file, root):
        raise CatalogLoadError(f"{file} leads outside {root}")
    return file


def _load_module(loader: ModuleLoader, file: Path) -> types.ModuleType:
    try:
        loaded = loader.load(file)
    except FileNotFoundError:
        raise CatalogLoadError(f"{file} disappeared") from None
    except FileOutsideFolder as error:
        raise CatalogLoadError(str(error.detail)) from None
    if loaded.module is None:
        raise CatalogLoadError(f"{file} failed to import:\n{loaded.error}")
    return loaded.module


def _class_named(module: types.ModuleType, name: str, file: Path) -> type:
    cls = module.__dict__.get(name)
    if not isinstance(cls, type):
        raise CatalogLoadError(f"{file} defines no class {name!r}")
    return cls


def addon_loader(settings: Settings) -> ModuleLoader:
    """The loader of the add-on folder. Add-ons load once per process: their
    hooks are installed at start-up, so an edit needs a restart."""
    return shared_loader(addons_folder(settings), reload=False)


def load_addon_module(settings: Settings, module: str) -> types.ModuleType:
    """The add-on module ``<ADDONS_FOLDER>/<module>.py``.

    :raises CatalogLoadError: when it does not exist or fails to import.
    """
    file = catalog_file(addons_folder(settings), module)
    return _load_module(addon_loader(settings), file)


class Loader:
    """What controllers see as ``load``. Each call finds the current app's
    loader (or ``config.py``'s outside an app), so hot reload applies."""

    @staticmethod
    def _catalog() -> tuple[ModuleLoader, Settings]:
        if has_app_context():
            kernel = current_app.extensions["kernkoa"]
            return kernel.loader, kernel.settings
        settings = current_settings()
        return shared_loader(Path(settings.CATALOG), bool(settings.RELOAD)), settings

    def _catalog_class(self, kind: str, name: str, folder: str | None) -> type:
        loader, _ = self._catalog()
        file = catalog_file(loader.root / kind, name, folder)
        return _class_named(_load_module(loader, file), name, file)

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
