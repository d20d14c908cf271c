"""What in a controller file may be called from a URL, and with which HTTP methods.

Deny by default. A class is routable only if the file itself defines it (never
a name it imported) and its name does not start with ``_``. A method is
routable only if it is a plain function, defined in the catalog, found in the
``__dict__`` of the class or of a catalog base class, and its name does not
start with ``_``. Properties, class and static methods, nested classes and
other attributes are never routable. Controllers need no base class.
"""

from __future__ import annotations

import inspect
import types
import typing as t
from dataclasses import dataclass

from ..core.errors import ConstraintError
from ..core.errors import RouteNotFound
from .access import AccessRule
from .access import declared_rule
from .binding import Binder

#: HTTP methods a controller method answers unless decorated.
DEFAULT_METHODS = frozenset({"GET", "HEAD", "POST"})

#: HTTP methods a ``_celery`` method answers unless decorated (starting work
#: from a GET could be fired by a prefetch or an ``<img>`` tag), and a method
#: needing an uploaded file (a GET cannot carry one).
POST_ONLY = frozenset({"POST"})

#: Suffix of the methods that run on a Celery worker.
CELERY_SUFFIX = "_celery"

_METHODS_ATTR = "__kernkoa_methods__"

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def methods(*verbs: str) -> t.Callable[[F], F]:
    """Set the HTTP methods a controller method answers, replacing the default.

    ``HEAD`` comes along with ``GET``::

        class Cart:
            @methods("PUT", "DELETE")
            def item(self, item_id: int): ...
    """
    allowed = {verb.upper() for verb in verbs}
    if "GET" in allowed:
        allowed.add("HEAD")

    def decorate(func: F) -> F:
        setattr(func, _METHODS_ATTR, frozenset(allowed))
        return func

    return decorate


@dataclass(frozen=True)
class Endpoint:
    """A routable controller method, with everything needed to call it."""

    cls: type
    func: types.FunctionType
    #: HTTP methods it answers.
    http_methods: frozenset[str]
    #: Whether it runs on a Celery worker.
    is_celery: bool
    binder: Binder
    #: Its access rule from ``@public``/``@requires``; ``None``: ``AUTH_DEFAULT``
    #: decides (it is per app, while endpoints are shared by every app of a catalog).
    access: AccessRule | None

    @property
    def name(self) -> str:
        """The method's name."""
        return self.func.__name__


def _routable_name(name: str) -> bool:
    return bool(name) and not name.startswith("_")


def find_class(module: types.ModuleType, name: str) -> type:
    """The routable class ``name`` defined in ``module``.

    :raises RouteNotFound: when there is none.
    """
    cls = module.__dict__.get(name) if _routable_name(name) else None
    if (
        not isinstance(cls, type)
        or cls.__module__ != module.__name__
        or cls.__qualname__ != name
    ):
        raise RouteNotFound(detail=f"{module.__name__} defines no routable class {name!r}")
    refusal = _why_not_instantiable(cls)
    if refusal is not None:
        raise RouteNotFound(detail=f"{module.__name__}.{name} is not routable: {refusal}")
    return cls


def _why_not_instantiable(cls: type) -> str | None:
    """Why the kernel cannot make an instance of ``cls`` per request as ``cls()``,
    or ``None`` when it can.

    Checked once per file version, so a URL naming a metaclass, an abstract
    class or one whose constructor needs arguments is a 404, not a 500 from
    the ``cls()`` of every request.
    """
    if issubclass(cls, type):
        return "it is a metaclass"
    if inspect.isabstract(cls):
        return "it is abstract"
    if getattr(cls, "_is_protocol", False):  # typing.Protocol classes refuse cls()
        return "it is a protocol"
    try:
        inspect.signature(cls).bind()
    except TypeError:
        return "its constructor needs arguments"
    except ValueError:
        return "its constructor has no readable signature"
    return None


def find_method(
    cls: type, name: str, in_catalog: t.Callable[[str], bool]
) -> types.FunctionType:
    """The routable plain function ``name`` of ``cls``.

    The name is looked up along the method resolution order as Python would;
    the definition found must be a plain function, defined in the catalog, on a
    class of the catalog. A method inherited from outside the catalog, or one
    that an outside class overrides, is never routable.

    :param in_catalog: tells whether a module name belongs to the catalog.
    :raises RouteNotFound: when there is none.
    """
    if _routable_name(name):
        for klass in cls.__mro__:
            if name in klass.__dict__:
                attr = klass.__dict__[name]
                if (
                    in_catalog(klass.__module__)
                    and isinstance(attr, types.FunctionType)
                    and in_catalog(attr.__module__)
                ):
                    return attr
                break
    raise RouteNotFound(detail=f"{cls.__name__} has no routable method {name!r}")


def build_endpoint(cls: type, func: types.FunctionType) -> Endpoint:
    """Make the :class:`Endpoint` of a routable method.

    :raises RouteNotFound: when the kernel could not call it: its signature
        cannot be read, it is ``async``, or it cannot take the leading
        arguments the kernel passes (the instance, and for a ``_celery``
        method the task handle), or a constraint of its annotations cannot
        be checked as written.
    """
    is_celery = func.__name__.endswith(CELERY_SUFFIX)
    skip = 2 if is_celery else 1
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as error:
        raise RouteNotFound(detail=f"{func.__qualname__} has no readable signature: {error}") \
            from None
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        # A WSGI kernel has no event loop to run it in: refused, never a 500 per call.
        raise RouteNotFound(detail=f"{func.__qualname__} is async; controller methods are "
                                   "plain functions")
    if not _takes_leading_positionals(signature, skip):
        raise RouteNotFound(detail=f"{func.__qualname__} cannot take the {skip} leading "
                                   "argument(s) the kernel passes")
    try:
        binder = Binder(func, skip=skip)
    except ConstraintError as error:
        # Served as written or not at all: a rule the kernel cannot check or describe.
        raise RouteNotFound(detail=f"{func.__qualname__}: {error}") from None
    default = POST_ONLY if is_celery or binder.requires_upload else DEFAULT_METHODS
    http_methods = getattr(func, _METHODS_ATTR, default)
    return Endpoint(cls, func, http_methods, is_celery, binder, declared_rule(cls, func))


def _takes_leading_positionals(signature: inspect.Signature, count: int) -> bool:
    """Whether a function of ``signature`` accepts ``count`` positional arguments
    filled by the kernel, by leading parameters of their own (``*args`` would
    swallow them, so it does not count)."""
    leading = list(signature.parameters.values())[:count]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return len(leading) == count and all(p.kind in positional for p in leading)
