"""The catalog as data: one JSON-ready description per route and per broken file.

Everything here is derived from :func:`kernel.catalog.registry.scan`, which walks the
catalog with the rules that serve requests, so ``/_kernkoa/endpoints``,
``/_kernkoa/openapi.json``, ``/_kernkoa/docs`` and ``kernkoa routes`` all show
what the kernel really serves and can never drift from it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import types
import typing as t
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path

from ..core.errors import ControllerLoadError
from .binding import PARAMS_NAME
from .binding import Slot
from .conversion import converter_for
from .exposure import Endpoint
from .registry import BrokenFile
from .registry import Route
from .registry import scan
from .registry import short_urls
from .resolution import Catalog
from .schedules import schedule_of

#: Where a parameter's value comes from (the ``source`` key of a parameter).
#: ``field``: the query, form or JSON field of its name (or, when it is
#: ``positional``, a leftover path segment); ``path``: ``*args``, leftover
#: path segments only; ``params``: KernKoa's params object; ``kwargs``: every
#: remaining field.
SOURCES = ("field", "path", "params", "kwargs")

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class Listing:
    """The routes and broken files of a catalog, as :func:`build` found them."""

    routes: list[Route]
    broken: list[BrokenFile]
    #: The folder file paths are shown relative to (the catalog root).
    root: Path


def build(catalog: Catalog, root: Path) -> Listing:
    """Scan ``catalog``, whose folder is ``root`` (loading changed files, as a
    request would)."""
    routes, broken = scan(catalog)
    return Listing(routes, broken, root)


def annotation_text(annotation: t.Any) -> str | None:
    """A short readable form of an annotation (``int``, ``list[str]``, ``str | None``)."""
    if annotation is _EMPTY:
        return None
    if isinstance(annotation, str):
        return annotation
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not t.get_args(annotation):
        return annotation.__name__
    origin = t.get_origin(annotation)
    if origin in (t.Union, types.UnionType):
        return " | ".join(annotation_text(a) or "Any" for a in t.get_args(annotation))
    return repr(annotation).replace("typing.", "")


def default_value(default: t.Any) -> t.Any:
    """A default as JSON: itself when JSON can carry it, else its ``repr``."""
    try:
        json.dumps(default)
    except (TypeError, ValueError):
        return repr(default)
    return default


def _source(slot: Slot) -> str:
    if slot.name == PARAMS_NAME:
        return "params"
    if slot.kind is inspect.Parameter.VAR_KEYWORD:
        return "kwargs"
    if slot.kind is inspect.Parameter.VAR_POSITIONAL:
        return "path"
    return "field"


def all_slots(endpoint: Endpoint) -> list[Slot]:
    """The method's parameters in signature order, ``*args`` and ``**kwargs`` included."""
    binder = endpoint.binder
    slots = list(binder.slots)
    if binder.varargs is not None:
        slots.append(binder.varargs)
    if binder.kwargs_name is not None:
        names = {slot.name for slot in slots}
        for parameter in inspect.signature(endpoint.func).parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD and parameter.name not in names:
                slots.append(Slot(parameter.name, parameter.kind,
                                  converter_for(_EMPTY), _EMPTY))
    return slots


def describe_parameter(slot: Slot) -> dict[str, t.Any]:
    """One parameter as JSON: name, annotation, default, required, source, positional."""
    source = _source(slot)
    has_default = slot.default is not _EMPTY
    return {
        "name": slot.name,
        "annotation": annotation_text(slot.converter.annotation),
        "default": default_value(slot.default) if has_default else None,
        "has_default": has_default,
        # params, *args and **kwargs never make a request fail by their absence.
        "required": source == "field" and slot.required,
        "source": source,
        "positional": source == "path" or (source == "field" and slot.positional),
        "many": slot.converter.many,
        "file": slot.converter.wants_file,
    }


def file_version(file: Path) -> dict[str, t.Any]:
    """What identifies this version of a file: a short content hash, mtime and size."""
    data = file.read_bytes()
    stat = file.stat()
    return {
        "hash": hashlib.sha256(data).hexdigest()[:12],
        "mtime_ns": stat.st_mtime_ns,
        "modified": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
        "size": stat.st_size,
    }


def describe_route(route: Route, root: Path) -> dict[str, t.Any]:
    """One route as JSON (the items of ``/_kernkoa/endpoints``)."""
    endpoint = route.endpoint
    doc = inspect.getdoc(endpoint.func) or ""
    schedule = schedule_of(endpoint.func)
    module_parts = route.url.strip("/").split("/")[:-2]
    return {
        "url": route.url,
        "short_urls": list(route.short_urls),
        "folder": "/" + "/".join(module_parts[:-1]),
        "module": "/".join(module_parts),
        "file": route.file.relative_to(root).as_posix(),
        "class": endpoint.cls.__name__,
        "method": endpoint.name,
        "summary": route.summary,
        "doc": doc,
        "http_methods": sorted(endpoint.http_methods),
        "kind": "celery" if endpoint.is_celery else "sync",
        "parameters": [describe_parameter(slot) for slot in all_slots(endpoint)],
        "version": file_version(route.file),
        "schedule": None if schedule is None else schedule.describe(),
    }


def error_line(traceback_text: str) -> str:
    """The last line of a formatted traceback: the exception type and message."""
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed to load"


#: What a listing says of a load error outside debug mode.
LOAD_ERROR_HIDDEN = "failed to load (the error is in the server log, and shown here in debug mode)"


def shown_error(traceback_text: str, debug: bool) -> str | None:
    """The exception line of a load error, as a listing may show it: in debug mode
    only, since its message may hold a secret (a password in a connection string)."""
    return error_line(traceback_text) if debug else None


def describe_broken(broken: BrokenFile, root: Path, debug: bool) -> dict[str, t.Any]:
    """A controller file that failed to import.

    Its error (the exception line, and the traceback with the server's file
    paths and code) is shown in debug mode only; otherwise only that it failed.
    """
    entry: dict[str, t.Any] = {
        "file": broken.file.relative_to(root).as_posix(),
        "error": shown_error(broken.error, debug) or LOAD_ERROR_HIDDEN,
    }
    if debug:
        entry["traceback"] = broken.error
    try:
        entry["version"] = file_version(broken.file)
    except OSError:  # removed since the scan
        pass
    return entry


def as_json(listing: Listing, debug: bool) -> dict[str, t.Any]:
    """The whole listing as JSON: ``{"routes": [...], "broken": [...]}``."""
    return {
        "routes": [describe_route(route, listing.root) for route in listing.routes],
        "broken": [describe_broken(b, listing.root, debug) for b in listing.broken],
    }


def find(catalog: Catalog, root: Path, url: str, debug: bool = False) -> dict[str, t.Any]:
    """The description of the one route ``url`` names (any URL the router accepts).

    ``/shop/cart/Cart`` finds ``/shop/cart/Cart/index``; leftover path
    arguments are ignored. ``debug``: a load error's message may be shown.

    :raises RouteNotFound: when no route answers ``url``.
    :raises ControllerLoadError: when its controller file fails to import.
    """
    target = catalog.router.resolve(url)
    try:
        _, endpoint = catalog.resolve(target.route)
    except ControllerLoadError as error:
        name = target.file.relative_to(root).as_posix()
        # As in the listing: the exception line in debug mode only, the
        # traceback with it (the envelope's detail).
        shown = shown_error(error.detail or "", debug)
        raise ControllerLoadError(f"{name} failed to load" + (f": {shown}" if shown else "."),
                                  detail=error.detail) from None
    return describe_route(Route(target.route, target.file, endpoint,
                                short_urls(catalog, target.route)), root)
