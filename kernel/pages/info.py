"""What ``/_kernkoa/info`` tells: versions, features, broker kind, catalog root.

Nothing secret leaves: broker and result-store URLs are reduced to their
scheme, host, port and path, never their user name or password. An anonymous
caller sees less still: the kinds of the broker and result store, not their
addresses, and not the catalog folder.
"""

from __future__ import annotations

import importlib.metadata
import platform
import typing as t
from urllib.parse import urlsplit

from ..core.settings import Settings
from ..core.version import __version__

#: Libraries whose installed versions are reported.
LIBRARIES = ("Flask", "Werkzeug", "Jinja2", "celery", "kombu", "redis")


def library_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`LIBRARIES` (``None`` when absent)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def public_url(url: str | None) -> dict[str, t.Any] | None:
    """A broker or backend URL reduced to what may be shown: no credentials.

    ``redis://:s3cret@db.example:6379/0`` gives
    ``{"kind": "redis", "host": "db.example", "port": 6379, "path": "/0"}``.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return {"kind": url.split(":", 1)[0] or "unknown"}
    # The first scheme names the transport ("sentinel://...;sentinel://..." too).
    kind = parts.scheme.split("+", 1)[0] or "unknown"
    shown: dict[str, t.Any] = {"kind": kind}
    if parts.hostname:
        shown["host"] = parts.hostname
    if port is not None:
        shown["port"] = port
    if parts.path and parts.path != "/":
        shown["path"] = parts.path
    return shown


def features(settings: Settings) -> dict[str, t.Any]:
    """Which parts of the kernel are switched on."""
    return {
        "debug": settings.DEBUG,
        "reload": settings.RELOAD,
        "pages": settings.PAGES,
        "addons": settings.ADDONS,
    }


def where_kept(store: dict[str, t.Any], private: bool) -> dict[str, t.Any]:
    """A broker or result-store description for this caller: only its ``kind``
    for an anonymous one, its address too for an authenticated one."""
    return store if private else {"kind": store["kind"]}


def info(settings: Settings, private: bool = False) -> dict[str, t.Any]:
    """The body of ``/_kernkoa/info``.

    :param private: the caller is authenticated: the catalog folder and the
        broker's and result store's addresses are included.
    """
    # Empty URLs mean the embedded, file-based broker and result store.
    broker = public_url(settings.BROKER_URL) or {"kind": "embedded"}
    results = public_url(settings.RESULT_BACKEND) or broker
    body = {
        "name": "KernKoa",
        "version": __version__,
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation()},
        "libraries": library_versions(),
        "features": features(settings),
        "broker": where_kept(broker, private),
        "result_backend": where_kept(results, private),
        "reload": settings.RELOAD,
        "reserved_prefix": settings.RESERVED_PREFIX,
    }
    if private:
        body["catalog"] = str(settings.CATALOG)
    return body
