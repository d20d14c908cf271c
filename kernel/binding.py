"""From a controller method's signature to the arguments of one call.

A :class:`Binder` is built once per method and reused for every request:

- a parameter named ``params`` gets KernKoa's params (``None`` when empty);
- other named parameters are bound from the field of that name, converted by
  their annotation (``str``, ``int``, ``float``, ``bool``, ``list[...]``,
  ``Optional[...]``, ``Literal[...]``, ``FileStorage``), defaults honoured,
  and checked against the constraints of an ``Annotated[...]`` annotation
  (:mod:`kernel.constraints`);
- ``**kwargs`` receives the remaining fields;
- leftover path segments fill the positional parameters in order (``*args``
  takes any more).

Values are read by one rule for every type. Text (query string, form, path
segment) is always converted: ``?n=5`` is the integer 5. A JSON value must
already be of the parameter's JSON type: a number for ``int`` and ``float``
(a whole number for ``int``), a string for ``str``, ``true``/``false`` for
``bool``, an array for ``list[...]``, ``null`` only for ``Optional[...]``.
The OpenAPI schema of a parameter (:meth:`Converter.schema`) is built from
the same converter, so it says exactly that.

Every problem is collected and raised at once as a :class:`ParameterError` (422).
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing as t
from dataclasses import dataclass
from dataclasses import field

from werkzeug.datastructures import FileStorage

from .constraints import NO_RULES
from .constraints import ConstraintError
from .constraints import Rules
from .constraints import unwrap
from .errors import ConversionError
from .errors import ParameterError
from .errors import RouteNotFound
from .errors import UnsupportedBody
from .params import RequestFields
from .params import build_params
from .settings import FALSE_WORDS
from .settings import TRUE_WORDS

#: The name of the parameter that receives KernKoa's params.
PARAMS_NAME = "params"

_EMPTY = inspect.Parameter.empty


def _show(value: t.Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _show_json(value: t.Any) -> str:
    """A JSON value as the client wrote it, cut short for a message."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = _show(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_text(text: str) -> int:
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in ("+", "-") else stripped
    # ASCII digits only: int() would also take "1_000" and other scripts' digits.
    if digits.isascii() and digits.isdigit():
        try:
            return int(stripped, 10)
        except ValueError:  # more digits than Python converts
            pass
    raise ConversionError(f"expected an integer, got {_show(text)}")


def _int_json(value: t.Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # JSON has one number type: 3.0 is the integer 3, as JSON Schema counts it.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ConversionError(f"expected an integer, got {_show_json(value)}")


def _float_text(text: str) -> float:
    if text.isascii() and "_" not in text:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise ConversionError(f"expected a number, got {_show(text)}")


def _float_json(value: t.Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ConversionError(f"expected a number, got {_show_json(value)}")


def _bool_text(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS | FALSE_WORDS:
        return word in TRUE_WORDS
    raise ConversionError(f"expected true or false, got {_show(text)}")


def _bool_json(value: t.Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConversionError(f"expected true or false, got {_show_json(value)}")


def _str_json(value: t.Any) -> str:
    if isinstance(value, str):
        return value
    raise ConversionError(f"expected a string, got {_show_json(value)}")


def _file(value: t.Any) -> FileStorage:
    if isinstance(value, FileStorage):
        return value
    raise ConversionError("expected an uploaded file")


def _identity(value: t.Any) -> t.Any:
    return value


@dataclass(frozen=True)
class Scalar:
    """How one value becomes an argument, from text or from JSON, and what it may hold."""

    #: Converts a value sent as text (query, form, path segment).
    from_text: t.Callable[[t.Any], t.Any]
    #: Converts a value sent as JSON.
    from_json: t.Callable[[t.Any], t.Any]
    #: The JSON Schema of the values it accepts, before its rules.
    base_schema: dict[str, t.Any]
    #: The constraints of its ``Annotated`` metadata.
    rules: Rules = NO_RULES

    def convert(self, value: t.Any, text: bool) -> t.Any:
        """Convert one value and check it against the rules.

        :raises ConversionError: when it does not fit.
        """
        converted = self.from_text(value) if text else self.from_json(value)
        self.rules.check(converted)
        return converted

    def schema(self) -> dict[str, t.Any]:
        """The JSON Schema of the values it accepts, rules included."""
        return {**self.base_schema, **self.rules.schema(self.base_schema.get("type"))}


#: The scalar types the binder converts.
_SCALARS: dict[t.Any, Scalar] = {
    str: Scalar(_identity, _str_json, {"type": "string"}),
    int: Scalar(_int_text, _int_json, {"type": "integer"}),
    float: Scalar(_float_text, _float_json, {"type": "number"}),
    bool: Scalar(_bool_text, _bool_json, {"type": "boolean"}),
    FileStorage: Scalar(_file, _file, {"type": "string", "format": "binary"}),
}

#: Values pass unchanged for annotations the binder does not know.
_ANY = Scalar(_identity, _identity, {})

#: The JSON Schema type of each kind of ``Literal`` member.
_LITERAL_TYPES: dict[type, str] = {str: "string", int: "integer", bool: "boolean",
                                   type(None): "null"}


def _literal(annotation: t.Any) -> Scalar:
    """The :class:`Scalar` of ``Literal[...]``: one of the listed values exactly
    (from text: the text read as each member's type)."""
    members = t.get_args(annotation)
    for member in members:
        if type(member) not in _LITERAL_TYPES:
            raise ConstraintError(f"{annotation!r}: Literal members must be str, int, bool "
                                  "or None")
    listed = ", ".join(_show_json(m) for m in members)

    def same(value: t.Any, member: t.Any) -> bool:
        # True == 1 in Python, never in JSON: the type must match too.
        return type(value) is type(member) and value == member

    def from_json(value: t.Any) -> t.Any:
        if any(same(value, m) for m in members):
            return value
        raise ConversionError(f"expected one of {listed}, got {_show_json(value)}")

    def from_text(text: str) -> t.Any:
        for member in members:
            reading = _TEXT_READINGS[type(member)]
            try:
                if same(reading(text), member):
                    return member
            except ConversionError:
                continue
        raise ConversionError(f"expected one of {listed}, got {_show(text)}")

    types_ = sorted({_LITERAL_TYPES[type(m)] for m in members})
    schema: dict[str, t.Any] = {"enum": list(members)}
    if len(types_) == 1:
        schema["type"] = types_[0]
    return Scalar(from_text, from_json, schema)


def _none_text(text: str) -> None:
    if text == "":
        return None
    raise ConversionError(f"expected an empty value, got {_show(text)}")


#: How text is read for each kind of ``Literal`` member.
_TEXT_READINGS: dict[type, t.Callable[[str], t.Any]] = {
    str: _identity, int: _int_text, bool: _bool_text, type(None): _none_text,
}


def _scalar(annotation: t.Any) -> Scalar:
    """The :class:`Scalar` of one value for ``annotation``; values pass unchanged
    for annotations it does not know (``Any``, a class of the controller's, or an
    unhashable oddity such as ``x: []``)."""
    annotation, rules = unwrap(annotation)
    if t.get_origin(annotation) is t.Literal:
        found = _literal(annotation)
    else:
        try:
            found = _SCALARS.get(annotation, _ANY)
        except TypeError:
            found = _ANY
    return Scalar(found.from_text, found.from_json, found.base_schema, found.rules.merge(rules))


@dataclass(frozen=True)
class Converter:
    """How to turn a field's value(s) into one parameter's argument."""

    #: ``list[...]``: takes every value of the field.
    many: bool
    #: ``Optional[...]``: an empty value becomes ``None``.
    optional: bool
    #: Converts one value.
    item: Scalar
    #: The annotation, for listings.
    annotation: t.Any
    #: Constraints on the whole value (a list's length).
    rules: Rules = NO_RULES
    #: Whether the parameter takes uploaded files (read per field per request).
    wants_file: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wants_file", self.item.from_text is _file)

    def __call__(self, source: str, raw: t.Any) -> t.Any:
        """Convert a value as :meth:`RequestFields.lookup` returns it: the JSON
        value itself for ``json``, the list of the field's values otherwise."""
        text = source != "json"
        if text:
            if not self.many and self.optional and raw[0] == "":
                return None
            values = raw
        else:
            if raw is None and self.optional:
                return None
            if self.many and not isinstance(raw, list):
                raise ConversionError(f"expected a list, got {_show_json(raw)}")
            values = raw if self.many else [raw]
        if not self.many:
            value = self.item.convert(values[0], text)
        else:
            value = [self._item(v, text, i) for i, v in enumerate(values)]
        self.rules.check(value)
        return value

    def _item(self, value: t.Any, text: bool, index: int) -> t.Any:
        try:
            return self.item.convert(value, text)
        except ConversionError as error:
            raise ConversionError(f"item {index}: {error}") from None

    def schema(self) -> dict[str, t.Any]:
        """The JSON Schema of what this converter accepts from JSON (text is
        read as that type: ``?n=5`` is the integer 5)."""
        if self.many:
            schema: dict[str, t.Any] = {"type": "array", "items": self.item.schema()}
            schema.update(self.rules.schema("array"))
        else:
            schema = self.item.schema()
            schema.update(self.rules.schema(schema.get("type")))
        if self.optional:
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
            if isinstance(schema.get("type"), str):
                schema["type"] = [schema["type"], "null"]
        return schema


def converter_for(annotation: t.Any) -> Converter:
    """Build the :class:`Converter` of an annotation.

    :raises ConstraintError: when its constraints cannot be checked as written.
    """
    bare, rules = unwrap(annotation)
    origin = t.get_origin(bare)
    if origin in (t.Union, types.UnionType):
        members = [a for a in t.get_args(bare) if a is not type(None)]
        optional = len(members) < len(t.get_args(bare))
        inner = converter_for(members[0] if len(members) == 1 else t.Any)
        return Converter(inner.many, optional, inner.item, annotation, inner.rules.merge(rules))
    if origin is list or bare is list:
        args = t.get_args(bare)
        item = _scalar(args[0]) if args else _ANY
        return Converter(True, False, item, annotation, rules)
    scalar = _scalar(bare)
    # A single value: its rules and the annotation's are one set.
    return Converter(False, False, Scalar(scalar.from_text, scalar.from_json,
                                          scalar.base_schema, scalar.rules.merge(rules)),
                     annotation)


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


def _check_body(fields: RequestFields, errors: list[dict[str, str]]) -> None:
    """Refuse a body that cannot hold fields, sent to a method that takes fields.

    :raises UnsupportedBody: for a media type the kernel does not read (415).
    """
    if not fields.body_is_readable:
        raise UnsupportedBody(detail=f"media type {fields.request.mimetype!r}")
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

    @property
    def max_path_args(self) -> int | None:
        """How many leftover path segments the method takes (``None``: any number)."""
        return None if self.varargs is not None else len(self._path_slots)

    def bind(
        self, fields: RequestFields, path_args: tuple[str, ...], urlpath: str
    ) -> tuple[list[t.Any], dict[str, t.Any]]:
        """The positional and keyword arguments for one call.

        :raises RouteNotFound: when there are more path segments than parameters.
        :raises ParameterError: when fields are missing, unconvertible or unexpected.
        """
        if self._takes_nothing and not path_args and not fields.has_body:
            # Nothing to bind and no body whose fields would be refused.
            return [], {}
        limit = self.max_path_args
        if limit is not None and len(path_args) > limit:
            raise RouteNotFound(detail=f"the method takes {limit} path argument(s)")
        errors: list[dict[str, str]] = []
        if fields.has_body and not self.takes_any_body:
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
                values[name] = build_params(fields, urlpath)
                continue
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
                values[name] = self._convert(slot, *found, errors)
            elif slot.required:
                errors.append({"name": name, "source": "request",
                               "message": "this field is required"})
        extra_kwargs = self._leftover(fields, errors)
        if errors:
            raise ParameterError(errors)
        return self._arrange(values, path_args, extra_kwargs)

    @staticmethod
    def _convert(slot: Slot, source: str, raw: t.Any, errors: list[dict[str, str]]) -> t.Any:
        try:
            return slot.converter(source, raw)
        except ConversionError as error:
            errors.append({"name": slot.name, "source": source, "message": str(error)})
            return None

    def _leftover(
        self, fields: RequestFields, errors: list[dict[str, str]]
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
