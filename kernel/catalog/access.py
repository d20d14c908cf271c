"""Per-route access rules: the ``@requires`` and ``@public`` decorators, and what
the kernel's own views declare (:func:`guarded_by`).

A controller method or class says who may call it; ``AUTH_DEFAULT`` covers
the rest::

    @requires("reports:read")          # every method needs that scope...
    class Report:
        @public                         # ...except this one, open to anyone
        def summary(self): ...

        @requires("reports:write")      # needs both scopes
        def build_celery(self, task): ...

How a method's rule is found (the nearest decoration wins):

1. the method is ``@public``: open to anyone, even in a ``@requires`` class;
2. the method or its class is ``@requires(...)``: authentication needed, and
   every scope named on the method and on the class;
3. the class is ``@public``: open to anyone;
4. otherwise ``AUTH_DEFAULT``: ``"open"`` or ``"required"`` (authenticated, no scope).

The rules are enforced in one place, :mod:`kernel.auth.layer`, before any view runs.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:  # exposure builds endpoints with declared_rule: no import cycle
    from .exposure import Endpoint

#: Attribute marking a function or class as public.
PUBLIC_ATTR = "__kernkoa_public__"
#: Attribute holding the scopes a function or class requires.
SCOPES_ATTR = "__kernkoa_requires__"

#: Values of the ``AUTH_DEFAULT`` setting.
AUTH_DEFAULTS = ("open", "required")

T = t.TypeVar("T")


def requires(*scopes: str) -> t.Callable[[T], T]:
    """Require an authenticated caller holding every one of ``scopes`` (none: any
    authenticated caller), on a controller method or a whole class."""
    for scope in scopes:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise ValueError(f"a scope is a non-empty string without spaces, not {scope!r}")

    def decorate(obj: T) -> T:
        if obj.__dict__.get(PUBLIC_ATTR):
            raise TypeError(f"{obj!r} cannot be both @public and @requires")
        # Stacked @requires add up.
        setattr(obj, SCOPES_ATTR, frozenset(scopes) | obj.__dict__.get(SCOPES_ATTR, frozenset()))
        return obj

    return decorate


def public(obj: T) -> T:
    """Open a controller method or class to anyone, whatever ``AUTH_DEFAULT`` says."""
    if SCOPES_ATTR in obj.__dict__:
        raise TypeError(f"{obj!r} cannot be both @public and @requires")
    setattr(obj, PUBLIC_ATTR, True)
    return obj


@dataclass(frozen=True)
class AccessRule:
    """Who may call a route."""

    #: Anyone, without even looking at credentials.
    public: bool = False
    #: An authenticated caller is needed.
    required: bool = False
    #: Scopes that caller must hold.
    scopes: frozenset[str] = frozenset()
    #: Nobody passes, whatever the credentials: the rule that should apply
    #: could not be found, and a missing rule never opens a door.
    denied: bool = False

    def as_record(self) -> dict[str, t.Any]:
        """The rule as JSON-safe data, kept with a task when it is enqueued."""
        return {"public": self.public, "required": self.required,
                "scopes": sorted(self.scopes), "denied": self.denied}

    @classmethod
    def from_record(cls, data: object) -> AccessRule | None:
        """The rule :meth:`as_record` gave, or ``None`` when ``data`` is none
        (a task enqueued before rules were kept with tasks, or a damaged record)."""
        if not isinstance(data, dict):
            return None
        public, required, denied = data.get("public"), data.get("required"), data.get("denied")
        scopes = data.get("scopes")
        if not (isinstance(public, bool) and isinstance(required, bool)
                and isinstance(denied, bool) and isinstance(scopes, list)
                and all(isinstance(scope, str) for scope in scopes)):
            return None
        return cls(public=public, required=required, scopes=frozenset(scopes), denied=denied)


#: The three rules without scopes.
PUBLIC = AccessRule(public=True)
OPEN = AccessRule()
AUTHENTICATED = AccessRule(required=True)

#: The rule of a request whose rule cannot be computed: 401 without
#: credentials (so a client knows to send some), 403 with any.
DENIED = AccessRule(required=True, denied=True)


def default_rule(auth_default: str) -> AccessRule:
    """The rule of a route nothing decorates, by the ``AUTH_DEFAULT`` setting."""
    return AUTHENTICATED if auth_default == "required" else OPEN


def rule_for(endpoint: Endpoint, auth_default: str) -> AccessRule:
    """The :class:`AccessRule` of a controller method (see the module docstring)."""
    declared = endpoint.access
    return default_rule(auth_default) if declared is None else declared


def declared_rule(cls: type, func: t.Callable[..., t.Any]) -> AccessRule | None:
    """The rule that the decorators of ``func`` and ``cls`` give, or ``None`` when
    none applies (``AUTH_DEFAULT`` decides).

    Computed once per endpoint (:attr:`Endpoint.access`): endpoints live in the
    loader's per-version cache, so a reloaded file gets its rules anew.
    """
    if getattr(func, PUBLIC_ATTR, False):
        return PUBLIC
    method_scopes = getattr(func, SCOPES_ATTR, None)
    class_public = getattr(cls, PUBLIC_ATTR, False)
    class_scopes = None if class_public else getattr(cls, SCOPES_ATTR, None)
    if method_scopes is not None or class_scopes is not None:
        scopes = (method_scopes or frozenset()) | (class_scopes or frozenset())
        return AccessRule(required=True, scopes=scopes)
    if class_public:
        return PUBLIC
    return None


# --- What the kernel's own views declare ---------------------------------------------
#
# Controller methods declare their rule with the decorators above. The kernel's
# own views (the catch-all, /status/<id>, the pages) declare where their rule
# comes from with :func:`guarded_by`; the auth layer reads the declaration off
# the view function, so renaming a view cannot silently change who may call it.

#: Attribute holding a view function's access declaration.
VIEW_ACCESS_ATTR = "__kernkoa_view_access__"


class RouteOfPath:
    """The catch-all view: the rule of the controller method its URL path names."""


@dataclass(frozen=True)
class TaskOrigin:
    """Where a task came from, as far as its record tells.

    Either may be missing: a task whose record lost its route is refused,
    never opened.
    """

    #: The catalog route that started the task.
    route: str | None = None
    #: The rule that route had when the task was enqueued.
    recorded: AccessRule | None = None


@dataclass(frozen=True)
class RouteOfTask:
    """The views of one task (its status, its event stream): the rule of the route
    that started the task, as the controller file says now (else the recorded one).

    :param origin: the task's :class:`TaskOrigin` from the view's ``task_id``, or
        ``None`` when the id names no task (the view answers 404).
    """

    origin: t.Callable[[str], TaskOrigin | None]


class KernelPage:
    """The kernel's listing pages: ``AUTH_DEFAULT``, or authenticated callers only
    when ``PAGES_AUTH`` is on."""


#: What a kernel view may declare.
ViewAccess = AccessRule | RouteOfPath | RouteOfTask | KernelPage

#: The declarations without data.
ROUTE_OF_PATH = RouteOfPath()
KERNEL_PAGE = KernelPage()

V = t.TypeVar("V", bound=t.Callable[..., t.Any])


def guarded_by(declaration: ViewAccess) -> t.Callable[[V], V]:
    """Declare where the access rule of a kernel view comes from (views that
    declare nothing get ``AUTH_DEFAULT``)."""

    def decorate(view: V) -> V:
        setattr(view, VIEW_ACCESS_ATTR, declaration)
        return view

    return decorate


def view_access(view: t.Callable[..., t.Any] | None) -> ViewAccess | None:
    """The declaration of ``view``, or ``None`` when it declares none."""
    return t.cast("ViewAccess | None", getattr(view, VIEW_ACCESS_ATTR, None))
