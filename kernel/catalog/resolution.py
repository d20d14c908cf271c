"""From a URL path to the controller method it names, remembered while its file is unchanged.

The :class:`Router` walks folders (a few ``stat`` calls) and the
:class:`~kernel.catalog.loader.ModuleLoader` executes files; a :class:`Catalog`
keeps each answer with the version of the file it came from, so a warm path
costs one dictionary lookup and one ``stat`` (none when ``RELOAD`` is off).
This is the kernel's one route cache.
"""

from __future__ import annotations

from ..core.errors import RouteNotFound
from ..core.files import file_signature
from .exposure import Endpoint
from .exposure import build_endpoint
from .exposure import find_class
from .exposure import find_method
from .loader import LoadedModule
from .loader import ModuleLoader
from .routing import Router
from .routing import Target


class Catalog:
    """The controllers of one app, by URL path.

    :param router: resolves paths to files, classes and methods.
    :param loader: loads controller files.
    :param cache_size: how many paths to remember (``ROUTE_CACHE_SIZE``).
    """

    def __init__(self, router: Router, loader: ModuleLoader, cache_size: int) -> None:
        self.router = router
        self.loader = loader
        self.cache_size = cache_size
        #: Path to its last answer, the file version it came from and the
        #: file's name: valid while the file's signature is that version's.
        self._answers: dict[str, tuple[Target, Endpoint, LoadedModule, str]] = {}

    def resolve(self, path: str) -> tuple[Target, Endpoint]:
        """The target and endpoint that ``path`` names.

        :raises RouteNotFound: when it names none.
        :raises ControllerLoadError: when its controller file fails to import.
        """
        known = self._answers.get(path)
        if known is not None:
            target, endpoint, loaded, filename = known
            try:
                if not self.loader.reload or file_signature(filename) == loaded.signature:
                    return target, endpoint
            except FileNotFoundError:
                pass
            self._answers.pop(path, None)
        target, endpoint, loaded = self._resolve(path)
        if len(self._answers) >= self.cache_size:
            self._answers.clear()  # a crawler of distinct URLs: start over
        self._answers[path] = (target, endpoint, loaded, str(target.file))
        return target, endpoint

    def _resolve(self, path: str) -> tuple[Target, Endpoint, LoadedModule]:
        target = self.router.resolve(path)
        try:
            loaded = self.loader.load(target.file)
        except FileNotFoundError:
            # The file went away between the walk and the load: walk once more.
            target = self.router.resolve(path)
            try:
                loaded = self.loader.load(target.file)
            except FileNotFoundError:
                raise RouteNotFound(detail=f"{target.file} disappeared") from None
        key = (target.class_name, target.method_name)
        endpoint = loaded.cache.get(key)
        if endpoint is None:
            module = loaded.require()
            cls = find_class(module, target.class_name)
            func = find_method(cls, target.method_name, self.loader.owns)
            endpoint = loaded.cache[key] = build_endpoint(cls, func)
        return target, endpoint, loaded
