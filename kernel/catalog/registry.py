"""Every routable URL of a catalog, found with the same rules that serve requests.

The listing walks ``catalog/controller/``, loads each file with the kernel's
loader and keeps what :mod:`kernel.catalog.exposure` allows, then checks each URL with
the router itself, so it can never list a route that would not be served.
"""

from __future__ import annotations

import inspect
import typing as t
from dataclasses import dataclass
from pathlib import Path

from ..core.containment import stays_inside
from ..core.errors import RouteNotFound
from .exposure import Endpoint
from .exposure import find_class
from .exposure import find_method
from .resolution import Catalog
from .routing import DEFAULT_METHOD
from .routing import SEGMENT


@dataclass(frozen=True)
class Route:
    """One routable controller method."""

    #: The method's canonical URL path.
    url: str
    file: Path
    endpoint: Endpoint
    #: Shorter URLs that answer with the same method (``/module/Class`` for
    #: ``index``, ``/`` for ``INDEX_ROUTE``), as the router resolves them.
    short_urls: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """The first line of the method's docstring."""
        doc = inspect.getdoc(self.endpoint.func) or ""
        return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class BrokenFile:
    """A controller file that failed to import."""

    file: Path
    error: str


def controller_files(root: Path) -> t.Iterator[Path]:
    """Every ``.py`` file under ``root`` that a URL can reach, sorted.

    Left out: names that are not identifiers, files inside a folder that a
    module of the same name shadows (``a.py`` beside ``a/``), and files whose
    real path leaves ``root`` (symlinks): the router never serves those either.
    """
    for file in sorted(root.rglob("*.py")):
        parts = file.relative_to(root).with_suffix("").parts
        if not all(SEGMENT.fullmatch(part) for part in parts):
            continue
        if any(root.joinpath(*parts[:depth]).with_suffix(".py").is_file()
               for depth in range(1, len(parts))):
            continue
        if not stays_inside(file, root):
            continue
        yield file


def scan(catalog: Catalog) -> tuple[list[Route], list[BrokenFile]]:
    """List the routes of ``catalog``, and the files that failed to load."""
    routes: list[Route] = []
    broken: list[BrokenFile] = []
    root = catalog.router.root
    for file in controller_files(root):
        try:
            loaded = catalog.loader.load(file)
        except (FileNotFoundError, RouteNotFound):
            continue  # gone, or swapped for a symlink out, since the folder was listed
        if loaded.module is None:
            broken.append(BrokenFile(file, loaded.error or "failed to load"))
            continue
        prefix = "/".join(file.relative_to(root).with_suffix("").parts)
        for class_name, method_name in _exposed_names(loaded.module, catalog):
            url = f"/{prefix}/{class_name}/{method_name}"
            try:
                _, endpoint = catalog.resolve(url)
            except RouteNotFound:
                continue  # shadowed by another file, or under a reserved prefix
            routes.append(Route(url, file, endpoint, short_urls(catalog, url)))
    return routes, broken


def short_urls(catalog: Catalog, url: str) -> tuple[str, ...]:
    """The shorter URLs the router resolves to the method at ``url``."""
    parts = url.strip("/").split("/")
    candidates = ["/"]
    if parts[-1] == DEFAULT_METHOD:
        candidates.insert(0, "/" + "/".join(parts[:-1]))
    found = []
    for candidate in candidates:
        try:
            target = catalog.router.resolve(candidate)
        except RouteNotFound:
            continue
        if target.route == url and not target.args:
            found.append(candidate)
    return tuple(found)


def _exposed_names(module: t.Any, catalog: Catalog) -> t.Iterator[tuple[str, str]]:
    for class_name in list(vars(module)):
        try:
            cls = find_class(module, class_name)
        except RouteNotFound:
            continue
        for method_name in sorted({name for klass in cls.__mro__ for name in vars(klass)}):
            try:
                find_method(cls, method_name, catalog.loader.owns)
            except RouteNotFound:
                continue
            yield class_name, method_name
