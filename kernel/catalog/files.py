"""Catalog files by name: every part of the name checked, the file kept inside
its folder, the module loaded by the kernel's :class:`~kernel.catalog.loader.ModuleLoader`.

What ``load`` (:mod:`kernel.api.load`) and the add-on loader
(:mod:`kernel.web.addons`) share.
"""

from __future__ import annotations

import types
from pathlib import Path

from ..core.containment import stays_inside
from ..core.errors import CatalogLoadError
from ..core.errors import FileOutsideFolder
from ..core.settings import Settings
from .loader import ModuleLoader
from .loader import shared_loader
from .routing import SEGMENT


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


def load_module_file(loader: ModuleLoader, file: Path) -> types.ModuleType:
    """The module of ``file``, loaded by ``loader``.

    :raises CatalogLoadError: when it disappeared, leads outside the folder or
        fails to import.
    """
    try:
        loaded = loader.load(file)
    except FileNotFoundError:
        raise CatalogLoadError(f"{file} disappeared") from None
    except FileOutsideFolder as error:
        raise CatalogLoadError(str(error.detail)) from None
    if loaded.module is None:
        raise CatalogLoadError(f"{file} failed to import:\n{loaded.error}")
    return loaded.module


def class_named(module: types.ModuleType, name: str, file: Path) -> type:
    """The class ``name`` that ``module`` (loaded from ``file``) defines.

    :raises CatalogLoadError: when it defines none.
    """
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
    return load_module_file(addon_loader(settings), file)
