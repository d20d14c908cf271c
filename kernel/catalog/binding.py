"""From a controller method's signature to the arguments of one call.

A :class:`Binder` is built once per method and reused for every request:

- a parameter named ``params`` gets KernKoa's params (``None`` when empty);
- other named parameters are bound from the field of that name, converted by
  their annotation and checked against its constraints
  (:mod:`kernel.catalog.conversion`: text is always converted, a JSON value must
  already have the parameter's type), defaults honoured;
- ``**kwargs`` receives the remaining fields;
- leftover path segments fill the positional parameters in order (``*args``
  takes any more).

A JSON body that is not an object cannot hold fields: sent to a method that
takes any field besides ``params`` it is a 422, as a body of a media type the
kernel reads no fields from (neither JSON nor a form) is a 415.

Every problem is collected and raised at once as a :class:`ParameterError` (422).
"""

from __future__ import annotations

import inspect
import typing as t
from dataclasses import dataclass

from ..core.errors import ConversionError
from ..core.errors import ParameterError
from ..core.errors import RouteNotFound
from ..core.errors import UnsupportedBody
from .conversion import Converter
from .conversion import JsonConversion
from .conversion import converter_for

if t.TYPE_CHECKING:
    from werkzeug.datastructures import FileStorage
    from werkzeug.datastructures import MultiDict

#: The name of the parameter that receives KernKoa's params.
PARAMS_NAME = "params"

_EMPTY = inspect.Parameter.empty


class FieldSource(t.Protocol):
    """Where a call's fields come from: a request (:class:`kernel.web.params.FieldSource`),
    or the fields handed to ``exeTask``. The binder reads nothing else, so it
    stays free of Flask."""

    @property
    def has_body(self) -> bool:
        """Whether a body was sent at all."""

    @property
    def body_is_readable(self) -> bool:
        """Whether the body is of a media type fields are read from (JSON or a form)."""

    @property
    def mimetype(self) -> str:
        """The body's media type."""

    @property
    def json_type(self) -> str | None:
        """The JSON type of a JSON body (``"object"``, ``"array"``...), else ``None``."""

    @property
    def query(self) -> MultiDict[str, str]:
        """The query-string fields."""

    @property
    def files(self) -> MultiDict[str, FileStorage]:
        """The uploaded files."""

    def sources(self) -> tuple[dict[str, t.Any], MultiDict[str, t.Any], MultiDict[str, str]]:
        """The JSON fields, the form fields and the query fields."""

    def json_object_fields(self) -> dict[str, t.Any] | None:
        """The body's JSON object when its keys are the call's only fields (no
        query string, no form, no files), else ``None``."""

    def body_field_names(self) -> set[str]:
        """The names of the fields the body holds."""

    def lookup(self, name: str) -> tuple[str, t.Any] | None:
        """``(source, value)`` of the field ``name``, by precedence, or ``None``."""

    def params(self, urlpath: str) -> t.Any:
        """KernKoa's ``params`` of the call (``None`` when it carries no fields)."""


@dataclass(frozen=True)
class Slot:
    """One parameter of a controller method, as the binder sees it."""

    name: str
    kind: inspect._ParameterKind
    converter: Converter
    default: t.Any

    @property
    def required(self) -> bool:
        """Whether the request must provide it."""
        return self.default is _EMPTY

    @property
    def positional(self) -> bool:
        """Whether leftover path segments may fill it."""
        return self.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )


def _hints(func: t.Callable[..., t.Any]) -> dict[str, t.Any]:
    try:
        # include_extras: Annotated[...] keeps its constraints.
        return t.get_type_hints(func, include_extras=True)
    except Exception:  # an annotation naming something undefined: fall back to raw ones
        return dict(getattr(func, "__annotations__", {}))


#: How a message names each JSON type.
_JSON_TYPE_NAMES = {"array": "an array", "string": "a string", "number": "a number",
                    "boolean": "true or false", "null": "null"}


def _check_body(fields: FieldSource, errors: list[dict[str, str]]) -> None:
    """Refuse a body that cannot hold fields, sent to a method that takes fields.

    :raises UnsupportedBody: for a media type the kernel does not read (415).
    """
    if not fields.body_is_readable:
        raise UnsupportedBody(detail=f"media type {fields.mimetype!r}")
    kind = fields.json_type
    if kind is not None and kind != "object":
        # "": the body as a whole, as an empty JSON Pointer names it.
        errors.append({"name": "", "source": "json",
                       "message": "expected a JSON object of fields, got "
                                  + _JSON_TYPE_NAMES[kind]})


class Binder:
    """Binds requests to the parameters of one controller method.

    :param func: the plain function defined on the controller class.
    :param skip: leading parameters the kernel fills itself (``self``, and for
        ``_celery`` methods the task handle).
    """

    def __init__(self, func: t.Callable[..., t.Any], skip: int = 1) -> None:
        signature = inspect.signature(func)
        hints = _hints(func)
        parameters = list(signature.parameters.values())
        #: Names of the parameters the kernel fills itself (``self``, ``task``):
        #: no request field may take them, not even through ``**kwargs``.
        self.reserved = frozenset(p.name for p in parameters[:skip])
        parameters = parameters[skip:]
        self.slots: list[Slot] = []
        self.takes_params = False
        self.kwargs_name: str | None = None
        self.varargs: Slot | None = None
        for parameter in parameters:
            slot = Slot(
                parameter.name,
                parameter.kind,
                converter_for(hints.get(parameter.name, _EMPTY)),
                parameter.default,
            )
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                self.kwargs_name = parameter.name
            elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                self.varargs = slot
            else:
                self.takes_params |= parameter.name == PARAMS_NAME
                self.slots.append(slot)
        self._path_slots = [s for s in self.slots if s.positional and s.name != PARAMS_NAME]
        #: True when arguments must be passed by position (positional-only or ``*args``).
        self._by_position = self.varargs is not None or any(
            s.kind is inspect.Parameter.POSITIONAL_ONLY for s in self.slots
        )
        self._open = self.takes_params or self.kwargs_name is not None
        self._declared = frozenset(s.name for s in self.slots)
        #: True when the method takes nothing at all from the request.
        self._takes_nothing = not self.slots and not self._open and self.varargs is None
        #: True when ``params`` is the only field the method takes: then any body
        #: reaches it (``params.json`` of any JSON type, ``request.data``).
        self.takes_any_body = (self.takes_params and self.kwargs_name is None
                               and self._declared == {PARAMS_NAME})
        #: True when the method takes no field at all: a body that holds no
        #: fields (a file, an image, a webhook's payload) is its own to read
        #: (``request.get_data()``); fields sent to it are still refused.
        self.takes_no_fields = not self.slots and not self._open
        #: ``(name, JSON conversion, required)`` of every slot when a JSON object body
        #: alone can bind the method (named fields only: no ``params``,
        #: ``**kwargs``, ``*args``, files or positional-only parameters): such a
        #: request is bound by :meth:`_bind_json_object`, with the same checks
        #: as the general path, in one pass. ``None`` otherwise.
        self._json_plan: tuple[tuple[str, JsonConversion, bool], ...] | None = None
        if self.slots and not self._open and not self._by_position and not any(
                s.converter.wants_file for s in self.slots):
            self._json_plan = tuple((s.name, s.converter.for_json(), s.required)
                                    for s in self.slots)

    @property
    def requires_upload(self) -> bool:
        """Whether a request must carry an uploaded file (only a body can)."""
        return any(s.required and s.converter.wants_file for s in self.slots)

    @property
    def max_path_args(self) -> int | None:
        """How many leftover path segments the method takes (``None``: any number)."""
        return None if self.varargs is not None else len(self._path_slots)

    def bind(
        self, fields: FieldSource, path_args: tuple[str, ...], urlpath: str
    ) -> tuple[list[t.Any], dict[str, t.Any]]:
        """The positional and keyword arguments for one call.

        :raises RouteNotFound: when there are more path segments than parameters.
        :raises ParameterError: when fields are missing, unconvertible or unexpected.
        """
        if self._takes_nothing and not path_args and not fields.has_body:
            # Nothing to bind and no body whose fields would be refused.
            return [], {}
        plan = self._json_plan
        if plan is not None and not path_args:
            body = fields.json_object_fields()
            if body is not None:
                return [], self._bind_json_object(plan, body)
        limit = self.max_path_args
        if limit is not None and len(path_args) > limit:
            raise RouteNotFound(detail=f"the method takes {limit} path argument(s)")
        errors: list[dict[str, str]] = []
        if fields.has_body and not self.takes_any_body and not (
                self.takes_no_fields and not fields.body_is_readable):
            _check_body(fields, errors)
        values: dict[str, t.Any] = {}
        for slot, segment in zip(self._path_slots, path_args, strict=False):
            values[slot.name] = self._convert(slot, "path", [segment], errors)
        # Each source read once; JSON fields win over form fields over the query.
        json_fields, form, query = fields.sources()
        for slot in self.slots:
            name = slot.name
            if name in values:
                continue
            if name == PARAMS_NAME:
                values[name] = fields.params(urlpath)
                continue
            found: tuple[str, t.Any] | None
            if slot.converter.wants_file:
                files = fields.files.getlist(name)
                found = ("form", files) if files else None
            elif name in json_fields:
                found = ("json", json_fields[name])
            elif name in form:
                found = ("form", form.getlist(name))
            elif name in query:
                found = ("query", query.getlist(name))
            else:
                found = None
            if found is not None:
                values[name] = self._convert(slot, found[0], found[1], errors)
            elif slot.required:
                errors.append({"name": name, "source": "request",
                               "message": "this field is required"})
        extra_kwargs = self._leftover(fields, errors)
        if errors:
            raise ParameterError(errors)
        return self._arrange(values, path_args, extra_kwargs)

    def _bind_json_object(self, plan: tuple[tuple[str, JsonConversion, bool], ...],
                          body: dict[str, t.Any]) -> dict[str, t.Any]:
        """The keyword arguments from a JSON object body that holds every field
        of the call: what :meth:`bind` gives for it, the same errors in the
        same order (the body's media type and type need no check: it is an
        object of a type fields are read from).

        :raises ParameterError: when fields are missing, unconvertible or unexpected.
        """
        values: dict[str, t.Any] = {}
        errors: list[dict[str, str]] = []
        for name, converter, required in plan:
            if name in body:
                try:
                    values[name] = converter(body[name])
                except ConversionError as error:
                    errors.append({"name": name, "source": "json", "message": str(error)})
            elif required:
                errors.append({"name": name, "source": "request",
                               "message": "this field is required"})
        # A keys view compares with the set without building one.
        if not body.keys() <= self._declared:
            for name in sorted(body.keys() - self._declared):
                errors.append({"name": name, "source": "body",
                               "message": "the method takes no such field"})
        if errors:
            raise ParameterError(errors)
        return values

    @staticmethod
    def _convert(slot: Slot, source: str, raw: t.Any, errors: list[dict[str, str]]) -> t.Any:
        try:
            return slot.converter(source, raw)
        except ConversionError as error:
            errors.append({"name": slot.name, "source": source, "message": str(error)})
            return None

    def _leftover(
        self, fields: FieldSource, errors: list[dict[str, str]]
    ) -> dict[str, t.Any]:
        # A field named like a declared parameter never lands in **kwargs, even
        # when a path segment filled that parameter, and never fills ``params``.
        if self.kwargs_name is not None:
            rest: dict[str, t.Any] = {}
            for name in list(fields.query) + list(fields.body_field_names()):
                if name in self.reserved:
                    if not any(e["name"] == name for e in errors):
                        errors.append({"name": name, "source": "request",
                                       "message": "this name belongs to the method itself "
                                                  "and cannot be sent as a field"})
                elif name not in self._declared and name not in rest:
                    found = fields.lookup(name)
                    if found is not None:
                        source, raw = found
                        rest[name] = raw if source == "json" else raw[0]
                    else:
                        rest[name] = fields.files[name]
            return rest
        if not self._open and fields.has_body:
            for name in sorted(fields.body_field_names() - self._declared):
                errors.append({"name": name, "source": "body",
                               "message": "the method takes no such field"})
        return {}

    def _arrange(
        self, values: dict[str, t.Any], path_args: tuple[str, ...], extra: dict[str, t.Any]
    ) -> tuple[list[t.Any], dict[str, t.Any]]:
        if not self._by_position:
            values.update(extra)
            return [], values
        args: list[t.Any] = []
        kwargs: dict[str, t.Any] = dict(extra)
        for slot in self.slots:
            if slot.positional:
                args.append(values.get(slot.name, slot.default))
            elif slot.name in values:
                kwargs[slot.name] = values[slot.name]
        if self.varargs is not None:
            surplus = path_args[len(self._path_slots):]
            errors: list[dict[str, str]] = []
            args.extend(self._convert(self.varargs, "path", [s], errors) for s in surplus)
            if errors:
                raise ParameterError(errors)
        return args, kwargs
