"""The Flask subclass the kernel builds, and its request context.

Each request Flask does three things whose answer the kernel can know in
advance for a controller URL, costing about as much as the whole dispatch:

- binding the URL map to the request and matching it (``create_url_adapter``,
  ``match_request``): when :class:`~kernel.web.fastmatch.CatchAllShortcut` knows
  the route, the request context takes its answer, and the map is bound only
  if something uses the adapter (``url_for``, for one);
- ``ensure_sync`` on every hook and view, an ``inspect`` walk telling a
  coroutine function from a plain one: :class:`KernKoaFlask` remembers the
  answer per function;
- ``g.identity = None`` for every anonymous request: :class:`KernKoaGlobals`
  answers ``None`` until the auth layer sets an identity.

Flask's request steps (``preprocess_request``, ``dispatch_request``,
``process_response``, ``do_teardown_request``) also read the request through
its context proxy, and a name the proxy lacks (``request.blueprints``) costs a
raised and caught ``AttributeError`` each time. :class:`KernKoaFlask` takes the
request object once instead; where a blueprint registered a hook of a kind,
that step is Flask's own, unchanged.

Its requests are :class:`~kernel.web.formbody.KernKoaRequest`: a body past
``MAX_CONTENT_LENGTH`` is a 413 in every server, never a body cut short, and a
malformed form body is told from an empty one.

Its request context binds the request's id (:mod:`kernel.web.requestid`) to the
log context from before the first hook until after the last teardown, so every
log line of the request names it (``g.request_id`` reads it), and
:meth:`KernKoaFlask.wsgi_app` (:meth:`~KernKoaFlask.counted_wsgi_app` with
``METRICS`` on) sends it in ``X-Request-Id`` with every response the app
answers: errors, 404s, 413s and the kernel's pages too.

Everything else is Flask's own code path.
"""

from __future__ import annotations

import sys
import typing as t
from contextvars import Token
from functools import partial
from time import perf_counter

from flask import Flask
from flask import Request
from flask import request
from flask.ctx import RequestContext
from flask.ctx import _AppCtxGlobals
from flask.ctx import _sentinel
from flask.globals import request_ctx
from flask.signals import request_tearing_down
from werkzeug.routing import MapAdapter

from ..core.logs import REQUEST_ID
from ..core.metrics import UNRESOLVED
from ..core.metrics_batch import STARTED
from ..core.metrics_batch import RequestTally
from .fastmatch import CatchAllShortcut
from .fastmatch import VersionedMap
from .formbody import KernKoaRequest
from .metrics import route_label
from .requestid import HEADER as REQUEST_ID_HEADER
from .requestid import request_id_of

_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower()

#: The hook keys meaning "the app's own hooks, no blueprint's".
_APP_ONLY = frozenset({None})

#: Most functions whose ``ensure_sync`` answer is remembered (hooks and views
#: are registered once; the bound keeps a pathological app from growing it).
SYNC_CACHE_SIZE = 1024


class DeferredAdapter(MapAdapter):
    """A :class:`MapAdapter` bound to its request on first use.

    Given out by :meth:`KernKoaFlask.create_url_adapter` when the catch-all
    shortcut already knows the route: the request context never needs to
    match, and most controller requests never build a URL. The first attribute
    read binds the map as Flask would; from then on it is that adapter.
    The shortcut has checked that binding cannot fail.
    """

    def __init__(self, bind: t.Callable[[], MapAdapter | None],
                 shortcut_match: tuple[t.Any, dict[str, t.Any]]) -> None:
        # No MapAdapter.__init__: its attributes come from ``bind`` on first use.
        self._bind: t.Callable[[], MapAdapter | None] | None = bind
        #: The rule and view arguments the shortcut found.
        self.shortcut_match = shortcut_match

    def __getattr__(self, name: str) -> t.Any:
        # Python calls this only for attributes not set yet: bind, then answer.
        bind = self.__dict__.pop("_bind", None)
        if bind is None:
            raise AttributeError(name)
        self.__dict__.update(vars(bind()))
        return getattr(self, name)


class ShortcutRequestContext(RequestContext):
    """Flask's request context, taking the route from a :class:`DeferredAdapter`,
    and binding the request's id to the log context while it is pushed."""

    request: KernKoaRequest

    #: One token per push (stream_with_context pushes the same context again),
    #: made on the first.
    _request_id_tokens: list[Token[str | None]] | None = None

    def push(self) -> None:
        """Bind the request id, then push as Flask does."""
        token = REQUEST_ID.set(request_id_of(self.request.environ))
        if self._request_id_tokens is None:
            self._request_id_tokens = [token]
        else:
            self._request_id_tokens.append(token)
        super().push()

    def pop(self, exc: BaseException | None = _sentinel) -> None:  # type: ignore[assignment]
        """Pop as Flask does (teardown hooks still see the id), then unbind the id."""
        try:
            super().pop(exc)
        finally:
            if self._request_id_tokens:
                REQUEST_ID.reset(self._request_id_tokens.pop())

    def match_request(self) -> None:
        """Use the shortcut's answer when it had one, else Werkzeug's matcher."""
        adapter = self.url_adapter
        if type(adapter) is DeferredAdapter:
            self.request.url_rule, self.request.view_args = adapter.shortcut_match
            return
        super().match_request()


class KernKoaGlobals(_AppCtxGlobals):
    """``flask.g`` whose ``identity`` is ``None`` until the auth layer sets one."""

    #: The authenticated caller (:class:`kernel.auth.layer.Identity`), or ``None``.
    identity: t.Any = None

    @property
    def request_id(self) -> str | None:
        """The id of the request being served (on a worker: of the request that
        started the task), read from the log context: nothing to set per request."""
        return REQUEST_ID.get()


def _send_request_id(headers: list[tuple[str, str]], request_id: str) -> None:
    """Put ``request_id`` in the answer's headers, replacing any a view set (the
    id is sane: no header check needed)."""
    # Most answers carry none: a plain loop finds that without building a list.
    for name, _ in headers:
        if name.lower() == _REQUEST_ID_NAME:
            headers[:] = [h for h in headers if h[0].lower() != _REQUEST_ID_NAME]
            break
    headers.append((REQUEST_ID_HEADER, request_id))


class KernKoaFlask(Flask):
    """Flask, with the request context and per-function caches described above."""

    app_ctx_globals_class = KernKoaGlobals
    request_class = KernKoaRequest
    url_map_class = VersionedMap

    #: Set by the app factory once the catch-all rule exists.
    catch_all_shortcut: CatchAllShortcut | None = None

    #: Where :meth:`counted_wsgi_app` notes each request (``METRICS`` on).
    request_tally: RequestTally | None = None

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[t.Callable[..., t.Any], t.Callable[..., t.Any]] = {}

    def request_context(self, environ: dict[str, t.Any]) -> RequestContext:
        """A :class:`ShortcutRequestContext` for ``environ``."""
        return ShortcutRequestContext(self, environ)

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """Flask's adapter, or a :class:`DeferredAdapter` when the catch-all
        shortcut knows the route of ``request``."""
        shortcut = self.catch_all_shortcut
        if request is not None and shortcut is not None:
            found = shortcut.match(request)
            if found is not None:
                return DeferredAdapter(partial(Flask.create_url_adapter, self, request), found)
        return super().create_url_adapter(request)

    def wsgi_app(self, environ: dict[str, t.Any],
                 start_response: t.Callable[..., t.Any]) -> t.Any:
        """Flask's WSGI app, whose every answer carries the request's id in
        ``X-Request-Id`` (the kernel's, replacing any a view set), added to the
        headers as they are sent, after every hook: none can leave it out."""
        request_id = request_id_of(environ)

        def start_with_request_id(status: str, headers: list[tuple[str, str]],
                                  exc_info: t.Any = None) -> t.Any:
            _send_request_id(headers, request_id)
            return start_response(status, headers, exc_info)

        return super().wsgi_app(environ, start_with_request_id)

    def count_requests(self, tally: RequestTally) -> None:
        """Answer through :meth:`counted_wsgi_app` from now on, noting in ``tally``.
        Called before anything wraps :meth:`wsgi_app` (trusted proxies, add-ons):
        a wrapper keeps the callable it wrapped."""
        if getattr(self.wsgi_app, "__func__", None) is not KernKoaFlask.wsgi_app:
            raise RuntimeError("count_requests must come before any WSGI middleware")
        self.request_tally = tally
        self.wsgi_app = self.counted_wsgi_app  # type: ignore[method-assign]

    def counted_wsgi_app(self, environ: dict[str, t.Any],
                         start_response: t.Callable[..., t.Any]) -> t.Any:
        """:meth:`wsgi_app`, noting each request in :attr:`request_tally`: in
        flight while it runs, then its route, method, status and seconds. The
        one ``start_response`` wrapper sends the id and keeps the answer (a
        second wrapper per request cost as much as the rest of the counting)."""
        tally = t.cast(RequestTally, self.request_tally)
        note = tally.note
        note(STARTED)
        if not tally.flushing:
            tally.start_flushing()
        started = perf_counter()
        request_id = request_id_of(environ)
        # The request (reachable from the environ only while the app runs) and
        # the status line; labelled once the app returns.
        answer: tuple[Request | None, str] | None = None

        def start_counted(status: str, headers: list[tuple[str, str]],
                          exc_info: t.Any = None) -> t.Any:
            nonlocal answer
            answer = (environ.get("werkzeug.request"), status)
            _send_request_id(headers, request_id)
            return start_response(status, headers, exc_info)

        try:
            return Flask.wsgi_app(self, environ, start_counted)
        finally:
            seconds = perf_counter() - started
            if answer is None:  # the app raised before answering
                note((UNRESOLVED, environ.get("REQUEST_METHOD"), "500", seconds))
            else:
                request, status = answer
                note((UNRESOLVED if request is None else route_label(request),
                      environ.get("REQUEST_METHOD"), status, seconds))
            if not tally.interval:
                tally.flush()

    def preprocess_request(self) -> t.Any:
        """Flask's ``preprocess_request``: the app's before-request hooks in
        order, the first answer ending the request. Flask's own when a URL value
        preprocessor or a blueprint's before-request hook is registered."""
        if self.url_value_preprocessors or not self.before_request_funcs.keys() <= _APP_ONLY:
            return super().preprocess_request()
        for before_func in self.before_request_funcs.get(None, ()):
            rv = self.ensure_sync(before_func)()
            if rv is not None:
                return rv
        return None

    def dispatch_request(self) -> t.Any:
        """Flask's ``dispatch_request``, the request taken once from its context."""
        req = request._get_current_object()  # type: ignore[attr-defined]
        if req.routing_exception is not None:
            self.raise_routing_exception(req)
        rule = req.url_rule
        if getattr(rule, "provide_automatic_options", False) and req.method == "OPTIONS":
            return self.make_default_options_response()
        return self.ensure_sync(self.view_functions[rule.endpoint])(**req.view_args)

    def process_response(self, response: t.Any) -> t.Any:
        """Flask's ``process_response``: the request's own after-request
        functions, the app's in reverse order, then the session saved. Flask's
        own when a blueprint registered an after-request hook."""
        if not self.after_request_funcs.keys() <= _APP_ONLY:
            return super().process_response(response)
        ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
        for func in ctx._after_request_functions:
            response = self.ensure_sync(func)(response)
        for func in reversed(self.after_request_funcs.get(None, ())):
            response = self.ensure_sync(func)(response)
        if not self.session_interface.is_null_session(ctx._session):
            self.session_interface.save_session(self, ctx._session, response)
        return response

    def do_teardown_request(self, exc: BaseException | None = _sentinel,  # type: ignore[assignment]
                            ) -> None:
        """Flask's ``do_teardown_request``: the app's teardown hooks in reverse
        order, then the ``request_tearing_down`` signal. Flask's own when a
        blueprint registered a teardown hook."""
        if not self.teardown_request_funcs.keys() <= _APP_ONLY:
            return super().do_teardown_request(exc)
        if exc is _sentinel:
            exc = sys.exc_info()[1]
        for func in reversed(self.teardown_request_funcs.get(None, ())):
            self.ensure_sync(func)(exc)
        request_tearing_down.send(self, _async_wrapper=self.ensure_sync, exc=exc)
        return None

    def ensure_sync(self, func: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        """Flask's ``ensure_sync``, its answer remembered for plain functions."""
        try:
            known = self._sync_functions.get(func)
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)
        if known is not None:
            return known
        sync = super().ensure_sync(func)
        # Only a function that is already synchronous is kept: a coroutine
        # function gets Flask's fresh wrapper every time, as before.
        if sync is func and len(self._sync_functions) < SYNC_CACHE_SIZE:
            self._sync_functions[func] = sync
        return sync
