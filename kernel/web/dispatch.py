"""The catch-all view: resolve the URL, check the method, bind, call, render.

Per request after the first: one dict lookup for the path, one ``stat`` of the
controller file when reloading is on (unchanged: the earlier answer stands),
then the call. Nothing is imported, listed or added to ``sys.path``.
"""

from __future__ import annotations

import typing as t

from flask import Request
from flask import current_app
from flask import request
from werkzeug.wrappers import Response

from ..catalog.exposure import Endpoint
from ..catalog.exposure import build_endpoint
from ..catalog.exposure import find_class
from ..catalog.exposure import find_method
from ..catalog.loader import LoadedModule
from ..catalog.loader import ModuleLoader
from ..catalog.loader import file_signature
from ..catalog.routing import Router
from ..catalog.routing import Target
from ..core.errors import KernelError
from ..core.errors import RouteNotFound
from ..core.lazy import LazyModule
from ..core.settings import Settings
from .allow import other_method
from .params import RequestFields
from .rendering import to_response

# The Celery stack (~15 MiB, ~150 ms per worker process) is imported with the
# first _celery trigger, not with the app: most processes never send a task.
_jobs = LazyModule("kernel.tasks.enqueue")
_status = LazyModule("kernel.tasks.views")


class Kernel:
    """The per-app state of KernKoa: settings, router and module loader.

    Reachable as ``current_app.extensions["kernkoa"]``.
    """

    def __init__(self, settings: Settings, router: Router, loader: ModuleLoader) -> None:
        self.settings = settings
        self.router = router
        self.loader = loader
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
        if len(self._answers) >= self.settings.ROUTE_CACHE_SIZE:
            self._answers.clear()  # a crawler of distinct URLs: start over
        self._answers[path] = (target, endpoint, loaded, str(target.file))
        return target, endpoint

    def _resolve(self, path: str) -> tuple[Target, Endpoint, LoadedModule]:
        target = self.router.resolve(path)
        try:
            loaded = self.loader.load(target.file)
        except FileNotFoundError:
            # The file went away since the path was cached: walk again.
            self.router.forget()
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

    def resolve_for_request(self, req: Request, path: str) -> tuple[Target, Endpoint]:
        """:meth:`resolve`, once per request: the auth layer resolves before the
        view, and the view reuses its answer (no second lookup or ``stat``).

        The answer is kept on the request object itself: reading ``flask.g``
        would cost a context lookup each time, and this runs twice per request.
        A failure is kept too: the auth layer decided on it, so the view must
        not resolve again and run a file that changed in between.

        :raises KernelError: as :meth:`resolve`, the same error both times.
        """
        found = getattr(req, "_kernkoa_resolved", None)
        if found is not None and found[0] == path:
            if found[2] is None:
                raise found[1]
            return found[1], found[2]
        try:
            # Whoever resolves first (the auth layer or the view), the raw URI
            # is checked before the router walks any folder.
            _refuse_hidden_segments(req.environ)
            target, endpoint = self.resolve(path)
        except KernelError as error:
            req._kernkoa_resolved = (path, error, None)  # type: ignore[attr-defined]
            raise
        req._kernkoa_resolved = (path, target, endpoint)  # type: ignore[attr-defined]
        return target, endpoint


def kernel() -> Kernel:
    """The :class:`Kernel` of the current app."""
    return t.cast(Kernel, current_app.extensions["kernkoa"])


def dispatch(path: str = "") -> Response:
    """The catch-all view: call the controller method that ``path`` names."""
    # One context lookup each for the request and the app: every proxy
    # access costs a context-variable read (~0.5 µs), and this runs per request.
    req = request._get_current_object()  # type: ignore[attr-defined]
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    kernel = t.cast(Kernel, app.extensions["kernkoa"])
    target, endpoint = kernel.resolve_for_request(req, path)
    if req.method not in endpoint.http_methods:
        return other_method(req.method, endpoint.http_methods)
    args, kwargs = endpoint.binder.bind(RequestFields(req, kernel.settings), target.args, path)
    if endpoint.is_celery:
        # Never run here: bound and checked above, then sent to a worker.
        task_id = _jobs.enqueue(endpoint, "/" + path.lstrip("/"), list(args), kwargs)
        return t.cast(Response, _status.task_started(task_id))
    instance = endpoint.cls()
    try:
        result = endpoint.func(instance, *args, **kwargs)
    except SystemExit as error:
        # A controller's sys.exit() would end the worker process (uWSGI) or drop
        # the connection (dev server): it is a failed request like any other.
        raise RuntimeError(f"the controller called sys.exit({error.code!r})") from error
    return to_response(result, app)


def _refuse_hidden_segments(environ: dict[str, t.Any]) -> None:
    """Refuse what Werkzeug's matcher hides from the ``path`` it hands over."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    # Only a "%" can start an encoded slash: most URIs skip the rest.
    if "%" in raw:
        raw_path = raw.split("?", 1)[0].lower()
        if "%2f" in raw_path or "%5c" in raw_path:
            raise RouteNotFound(detail="encoded slash in the path")
    # The matcher drops leading empty segments ("//m/C/m" arrives as "m/C/m").
    if "//" in environ.get("PATH_INFO", ""):
        raise RouteNotFound(detail="empty segment in the path")
