"""The catch-all view: resolve the URL, check the method, bind, call, render.

Per request after the first: one dict lookup for the path, one ``stat`` of the
controller file when reloading is on (unchanged: the earlier answer stands),
then the call. Nothing is imported, listed or added to ``sys.path``. A
``_celery`` method is bound here and handed to the task layer
(:attr:`KernKoaState.start_task <kernel.web.state.KernKoaState.start_task>`).
"""

from __future__ import annotations

import typing as t

from flask import current_app
from flask import request
from werkzeug.wrappers import Response

from ..catalog.access import ROUTE_OF_PATH
from ..catalog.access import guarded_by
from ..catalog.exposure import Endpoint
from ..catalog.routing import Target
from ..core.errors import BrokerUnavailable
from ..core.errors import KernelError
from ..core.errors import RouteNotFound
from .allow import other_method
from .formbody import KernKoaRequest
from .params import RequestFields
from .rendering import to_response
from .state import KernKoaState
from .state import state_of


def resolve_for_request(
    state: KernKoaState, req: KernKoaRequest, path: str
) -> tuple[Target, Endpoint]:
    """:meth:`Catalog.resolve <kernel.catalog.resolution.Catalog.resolve>`, once per
    request: the auth layer resolves before the view, and the view reuses its
    answer (no second lookup or ``stat``).

    The answer is kept on the request object itself: reading ``flask.g``
    would cost a context lookup each time, and this runs twice per request.
    A failure is kept too: the auth layer decided on it, so the view must
    not resolve again and run a file that changed in between.

    :raises KernelError: as ``resolve``, the same error both times.
    """
    found = req.kernkoa_resolved
    if found is not None and found[0] == path:
        if found[2] is None:
            raise found[1]
        return found[1], found[2]
    try:
        # Whoever resolves first (the auth layer or the view), the raw URI
        # is checked before the router walks any folder.
        _refuse_hidden_segments(req.environ)
        target, endpoint = state.catalog.resolve(path)
    except KernelError as error:
        req.kernkoa_resolved = (path, error, None)
        raise
    req.kernkoa_resolved = (path, target, endpoint)
    return target, endpoint


@guarded_by(ROUTE_OF_PATH)
def dispatch(path: str = "") -> Response:
    """The catch-all view: call the controller method that ``path`` names."""
    # One context lookup each for the request and the app: every proxy
    # access costs a context-variable read (~0.5 µs), and this runs per request.
    req = request._get_current_object()  # type: ignore[attr-defined]
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = state_of(app)
    target, endpoint = resolve_for_request(state, req, path)
    if req.method not in endpoint.http_methods:
        return other_method(req.method, endpoint.http_methods)
    args, kwargs = endpoint.binder.bind(RequestFields(req, state.settings), target.args, path)
    if endpoint.is_celery:
        # Never run here: bound and checked above, then sent to a worker.
        if state.start_task is None:
            raise BrokerUnavailable(detail="this app has no task layer")
        return state.start_task(endpoint, "/" + path.lstrip("/"), list(args), kwargs)
    instance = endpoint.cls()
    try:
        result = endpoint.func(instance, *args, **kwargs)
    except SystemExit as error:
        # A controller's sys.exit() would end the worker process (uWSGI) or drop
        # the connection (dev server): it is a failed request like any other.
        raise RuntimeError(f"the controller called sys.exit({error.code!r})") from error
    return to_response(result, app, req)


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
