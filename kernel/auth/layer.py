"""The auth layer: one decision per request, before any view runs.

Authentication is done by auth add-ons (``jwt_auth``, ``basic_auth``, or your
own); this module decides, once per request and in one place, whether the
request may go on:

1. find the route's :class:`~kernel.catalog.access.AccessRule` from what its
   view declares (:func:`~kernel.catalog.access.guarded_by`): the catch-all
   resolves the controller URL through
   :func:`~kernel.web.dispatch.resolve_for_request` (the view reuses the result,
   a failure included, so what the rule was not computed for never runs);
   ``/status/<id>`` declares the rule of the route that started the task, so a
   task's status is readable by whoever may run the task: the route's rule now
   when it still resolves, else the rule recorded with the task when it was
   enqueued, else :data:`~kernel.catalog.access.DENIED`; the health checks and
   the pages' assets are public; the listing pages follow ``PAGES_AUTH``;
   everything else (URLs that name nothing too) takes ``AUTH_DEFAULT``;
2. ``@public``: go on without looking at credentials;
3. otherwise authenticate with the add-on whose ``SCHEME`` matches the
   ``Authorization`` header: bad credentials are a 401 on any route;
4. a route that requires authentication gets 401 (with a
   ``WWW-Authenticate`` challenge per enabled scheme) when there is no
   identity, and 403 when the identity lacks a scope (or the rule is
   ``DENIED``: no identity passes).

A decision that cannot be computed is never replaced by a default: a result
store that cannot be read is a 503, a rule that cannot be found refuses.

The identity, when there is one, is ``flask.g.identity`` (:class:`Identity`).

An auth add-on is an add-on module with ``SCHEME`` (``"Bearer"``, ``"Basic"``)
and two hooks: ``authenticate(request) -> Identity`` (raising
:class:`AuthenticationRequired` for bad credentials) and
``challenge(error=None) -> str`` (its ``WWW-Authenticate`` value).
"""

from __future__ import annotations

import logging
import types
import typing as t
from dataclasses import dataclass
from dataclasses import field

from flask import Flask
from flask import Request
from flask import g
from flask import request

from ..catalog.access import AUTH_DEFAULTS
from ..catalog.access import AUTHENTICATED
from ..catalog.access import DENIED
from ..catalog.access import KERNEL_PAGE
from ..catalog.access import ROUTE_OF_PATH
from ..catalog.access import VIEW_ACCESS_ATTR
from ..catalog.access import AccessRule
from ..catalog.access import RouteOfTask
from ..catalog.access import default_rule
from ..catalog.exposure import Endpoint
from ..core.errors import AccessUndecidable
from ..core.errors import AuthConfigError
from ..core.errors import AuthenticationRequired
from ..core.errors import InsufficientScope
from ..core.errors import KernelError
from ..core.settings import Settings
from ..web.dispatch import resolve_for_request
from ..web.formbody import KernKoaRequest
from ..web.hooks import add_before_request
from ..web.state import KernKoaState
from ..web.state import state_of

log = logging.getLogger("kernkoa.auth")


@dataclass(frozen=True)
class Identity:
    """Who made the request, as an auth add-on established it."""

    #: User name (``sub`` claim for a token).
    name: str
    #: Scopes the caller holds.
    scopes: frozenset[str] = frozenset()
    #: The scheme that authenticated it (``Bearer``, ``Basic``).
    scheme: str = ""
    #: The token's verified claims, if any.
    claims: t.Mapping[str, t.Any] = field(default_factory=dict)


class AuthLayer:
    """The enabled auth add-ons of one app, and the per-request decision."""

    def __init__(self, settings: Settings, schemes: dict[str, types.ModuleType],
                 state: KernKoaState, views: t.Mapping[str, t.Callable[..., t.Any]]) -> None:
        self.auth_default = settings.AUTH_DEFAULT
        self.pages_auth = settings.PAGES_AUTH
        #: Auth add-on modules by lower-case scheme name.
        self.schemes = schemes
        self._default = default_rule(self.auth_default)
        self._warned = False
        #: The app's state (kept: saves a ``current_app`` lookup per request).
        self.state = state
        #: The app's view functions by endpoint, whose declarations say which
        #: rule applies (:func:`kernel.catalog.access.guarded_by`).
        self.views = views

    def challenges(self, error: str | None = None) -> list[str]:
        """One ``WWW-Authenticate`` value per enabled scheme."""
        return [module.challenge(error) for module in self.schemes.values()]

    def authenticate(self) -> Identity | None:
        """The identity the request's ``Authorization`` header proves, or ``None``
        when it carries none for an enabled scheme.

        :raises InvalidCredentials: when it carries bad ones.
        """
        if not self.schemes:
            return None  # no add-on could accept any header: skip reading it (per request)
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme = header.split(None, 1)[0].lower() if header.strip() else ""
        module = self.schemes.get(scheme)
        if module is None:
            return None
        try:
            return t.cast(Identity, module.authenticate(request))
        except AuthenticationRequired as error:
            if not error.challenges:
                error.challenges = self.challenges("invalid_token" if scheme == "bearer"
                                                   else None)
            raise

    def rule(self, req: Request | None = None) -> AccessRule:
        """The access rule of the current request's route (``req``: that request,
        when the caller already holds it), as its view declares."""
        if req is None:
            req = request._get_current_object()  # type: ignore[attr-defined]
        rule = req.url_rule
        endpoint = rule.endpoint if rule is not None else None
        # view_access's lookup, inlined: it runs on every request.
        declared = getattr(self.views.get(endpoint), VIEW_ACCESS_ATTR, None) \
            if endpoint else None
        if declared is ROUTE_OF_PATH:
            return self._route_rule(req, (req.view_args or {}).get("path", ""))
        if isinstance(declared, RouteOfTask):
            return self._task_rule(declared, str((req.view_args or {}).get("task_id", "")))
        if isinstance(declared, AccessRule):
            return declared
        if declared is KERNEL_PAGE and self.pages_auth:
            return AUTHENTICATED
        return self._default

    def _route_rule(self, req: Request, path: str) -> AccessRule:
        try:
            # The app serves KernKoaRequest (its request_class); hooks see a Request.
            _, endpoint = resolve_for_request(self.state, t.cast(KernKoaRequest, req), path)
        except KernelError:
            # Names nothing (or fails to load): the request keeps that failure
            # and the view answers it without resolving again, so nothing runs
            # under this rule. The default rule decides only between that
            # answer and a 401, so anonymous callers cannot map a closed site.
            return self._default
        return self._rule_of(endpoint)

    def _rule_of(self, endpoint: Endpoint) -> AccessRule:
        # rule_for with this app's default rule, made once (per request it
        # would be made again from AUTH_DEFAULT).
        declared = endpoint.access
        return self._default if declared is None else declared

    def _task_rule(self, declared: RouteOfTask, task_id: str) -> AccessRule:
        # A store that cannot be read raises BrokerUnavailable (503): no guess.
        origin = declared.origin(task_id)
        if origin is None:
            return self._default  # names no task: the view answers 404
        if origin.route is not None:
            current = self._current_rule(origin.route)
            if current is not None:
                return current
        # The route no longer loads (broken file, method renamed or removed):
        # the rule it had when the task was enqueued, if it was recorded.
        return DENIED if origin.recorded is None else origin.recorded

    def _current_rule(self, route: str) -> AccessRule | None:
        """The rule of ``route`` as its controller file says now, or ``None``
        when it does not resolve."""
        try:
            _, endpoint = self.state.catalog.resolve(route)
        except KernelError:
            return None
        return self._rule_of(endpoint)

    def check(self, req: Request) -> None:
        """The ``before_request`` step: let ``req`` go on, or raise 401/403.

        ``g.identity`` is ``None`` unless set here (the app's ``g`` class
        says so). Only where an add-on can set one is it reset per request, in
        case requests share an app context (tests, nested dispatch).
        """
        rule = self.rule(req)
        if self.schemes:
            g.identity = None
        if rule.public:
            return
        identity = self.authenticate() if self.schemes else None
        if identity is not None:
            g.identity = identity
        if not rule.required:
            return
        if identity is None:
            if not self.schemes and not self._warned and not rule.denied:
                # Once: a log line per request would let anyone flood the log.
                self._warned = True
                log.warning("%s requires authentication, but no auth add-on is enabled; "
                            "such routes answer 401 to everyone", request.path)
            raise AuthenticationRequired(challenges=self.challenges())
        if rule.denied:
            raise AccessUndecidable()
        missing = rule.scopes - identity.scopes
        if missing:
            bearer = self.schemes.get("bearer")
            challenge = bearer.challenge("insufficient_scope", sorted(rule.scopes)) \
                if bearer is not None and identity.scheme.lower() == "bearer" else None
            raise InsufficientScope(missing, challenge)


def current_identity() -> Identity | None:
    """The identity of the request being served, or ``None`` (anonymous)."""
    return t.cast("Identity | None", g.get("identity"))


def install_auth(app: Flask, settings: Settings) -> AuthLayer:
    """Check the auth settings and install the per-request decision into ``app``.

    Installed even when no auth add-on is enabled, so a ``@requires`` route
    fails closed (401) instead of silently open.

    :raises AuthConfigError: for an unknown ``AUTH_DEFAULT``, or ``required``
        with no auth add-on enabled.
    """
    if settings.AUTH_DEFAULT not in AUTH_DEFAULTS:
        raise AuthConfigError(f"AUTH_DEFAULT must be one of {', '.join(AUTH_DEFAULTS)}, "
                              f"not {settings.AUTH_DEFAULT!r}")
    state = state_of(app)
    addons = state.addons
    assert addons is not None, "install_addons comes first"
    schemes: dict[str, types.ModuleType] = {}
    for addon in addons.addons:
        scheme = getattr(addon.module, "SCHEME", None)
        if scheme and addon.hook("authenticate") is not None:
            if str(scheme).lower() in schemes:
                raise AuthConfigError(f"two auth add-ons handle the {scheme} scheme")
            schemes[str(scheme).lower()] = addon.module
    if settings.AUTH_DEFAULT == "required" and not schemes:
        raise AuthConfigError(
            "AUTH_DEFAULT is 'required' but no auth add-on is enabled: add jwt_auth or "
            "basic_auth to ADDONS (KERNKOA_ADDONS=jwt_auth), or set AUTH_DEFAULT=open")
    layer = state.auth = AuthLayer(settings, schemes, state, app.view_functions)
    # Folded into the query-limit hook when nothing was registered in between.
    add_before_request(app, layer.check)
    return layer
