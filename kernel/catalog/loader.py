"""Loads catalog files by path into their own module objects, and reloads them when they change.

A file ``catalog/controller/shop/cart.py`` becomes the module
``<namespace>.controller.shop.cart``; each folder on the way is registered as a
package, so relative imports between catalog files work and two files with the
same name in different folders never collide. ``sys.path`` is never touched.

When reloading is on, every access costs one ``stat``: a changed file
(``mtime_ns``, size or inode: editors save by renaming) is executed into a
fresh module object, one loader at a time per file. A file that fails to
import is remembered with its error until it changes again. Every load checks
that the file opened lies inside the catalog (a symlink swapped in later must
not lead out of it).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import sys
import threading
import traceback
import types
import typing as t
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from ..core.containment import read_inside
from ..core.errors import ControllerLoadError
from ..core.files import Signature
from ..core.files import file_signature

log = logging.getLogger("kernkoa")

#: Told of every execution of a catalog file: its path under the catalog root
#: ("controller/shop/cart.py"), whether an earlier version was loaded before,
#: whether it failed.
LoadListener = t.Callable[[str, bool, bool], None]


@dataclass
class LoadedModule:
    """One version of one catalog file: its module, or the error it raised."""

    file: Path
    signature: Signature
    module: types.ModuleType | None
    #: The formatted traceback when the file failed to import.
    error: str | None = None
    #: Per-version cache for whoever uses the module (the dispatcher keeps
    #: its resolved endpoints here, so they go away with the old code).
    cache: dict[t.Any, t.Any] = field(default_factory=dict)

    def require(self) -> types.ModuleType:
        """The module, or :class:`ControllerLoadError` if the file did not import."""
        if self.module is None:
            raise ControllerLoadError(detail=self.error)
        return self.module


def namespace_for(catalog_root: Path) -> str:
    """The top-level module name for a catalog root, unique per root folder."""
    digest = hashlib.sha1(str(catalog_root).encode()).hexdigest()[:8]
    return f"kernkoa_catalog_{digest}"


class ModuleLoader:
    """Loads and caches the Python files of one catalog root.

    :param catalog_root: the folder holding ``controller/``, ``model/``...
    :param reload: check each file for changes on every access.
    """

    def __init__(self, catalog_root: Path, reload: bool = True) -> None:
        self.root = catalog_root
        self.reload = reload
        self.namespace = namespace_for(catalog_root)
        self._loaded: dict[Path, LoadedModule] = {}
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        #: Called after each execution of a file (see :data:`LoadListener`).
        self.listeners: list[LoadListener] = []

    def module_name(self, file: Path) -> str:
        """The dotted module name of a catalog file."""
        parts = file.relative_to(self.root).with_suffix("").parts
        return ".".join((self.namespace, *parts))

    def owns(self, module_name: str) -> bool:
        """Whether a module of that name was loaded from this catalog."""
        return module_name == self.namespace or module_name.startswith(self.namespace + ".")

    def load(self, file: Path) -> LoadedModule:
        """The current version of ``file``, loading or reloading it as needed.

        :raises FileNotFoundError: when the file is gone.
        :raises FileOutsideFolder: when it now leads outside the catalog.
        """
        loaded = self._loaded.get(file)
        if loaded is not None and not self.reload:
            return loaded
        signature = file_signature(file)
        if loaded is not None and loaded.signature == signature:
            return loaded
        with self._lock_for(file):
            loaded = self._loaded.get(file)
            signature = file_signature(file)
            if loaded is None or loaded.signature != signature:
                reloaded = loaded is not None
                loaded = self._execute(file, signature)
                self._loaded[file] = loaded
                for listener in self.listeners:
                    listener(file.relative_to(self.root).as_posix(), reloaded,
                             loaded.module is None)
            return loaded

    def _lock_for(self, file: Path) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(file, threading.Lock())

    def _execute(self, file: Path, signature: Signature) -> LoadedModule:
        source = read_inside(file, self.root)  # before anything is registered
        name = self.module_name(file)
        self._ensure_packages(file.parent)
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        previous = sys.modules.get(name)
        sys.modules[name] = module
        try:
            # Compiled from source every time: a .pyc keyed on whole seconds
            # would hide an edit made twice within one second.
            code = compile(source, str(file), "exec", dont_inherit=True)
            exec(code, module.__dict__)
        except (Exception, SystemExit) as error:  # a controller file may even call sys.exit
            if previous is not None:
                sys.modules[name] = previous
            else:
                sys.modules.pop(name, None)
            text = "".join(traceback.format_exception(error))
            log.error("Catalog file %s failed to load:\n%s", file, text)
            return LoadedModule(file, signature, None, error=text)
        return LoadedModule(file, signature, module)

    def _ensure_packages(self, folder: Path) -> None:
        relative = folder.relative_to(self.root).parts
        for depth in range(len(relative) + 1):
            name = ".".join((self.namespace, *relative[:depth]))
            if name in sys.modules:
                continue
            path = self.root.joinpath(*relative[:depth])
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [str(path)]
            package = importlib.util.module_from_spec(spec)
            package.__path__ = [str(path)]
            sys.modules[name] = package


# One loader per folder per process: every app, ``load`` outside an app and the
# add-ons share it, so a file is executed once per version, under one name.
_loaders: dict[tuple[Path, bool], ModuleLoader] = {}
_loaders_lock = threading.Lock()


def shared_loader(root: Path, reload: bool) -> ModuleLoader:
    """The process-wide :class:`ModuleLoader` of ``root``."""
    with _loaders_lock:
        loader = _loaders.get((root, reload))
        if loader is None:
            loader = _loaders[(root, reload)] = ModuleLoader(root, reload=reload)
        return loader
