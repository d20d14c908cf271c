"""From a parameter's annotation to how its values are converted and described.

A :class:`Converter` knows, for one annotation (``str``, ``int``, ``float``,
``bool``, ``list[...]``, ``Optional[...]``, ``Literal[...]``,
``FileStorage``, with the constraints of ``Annotated[...]``), how a value is
read and which JSON Schema describes what it accepts. One rule holds for
every type:

- **text** (a query string, a form, a path segment) is always converted:
  ``?n=5`` is the integer 5, ``on``, ``yes``, ``1`` (any case) are true, an
  empty value is ``None`` for ``Optional[...]``, a field repeated or given
  once fills a ``list[...]``;
- **JSON** is typed, so a JSON value must already be of the parameter's
  type: a number for ``int`` (a whole one) and ``float``, a string for
  ``str``, ``true``/``false`` for ``bool``, an array for ``list[...]``,
  ``null`` only for ``Optional[...]``.

:meth:`Converter.schema` describes each way exactly (``text=True`` for query
parameters and form bodies, ``text=False`` for JSON bodies), from the same
objects that convert, so the OpenAPI document cannot drift from the binder.
"""

from __future__ import annotations

import functools
import json
import math
import types
import typing as t
from dataclasses import dataclass
from dataclasses import field

from werkzeug.datastructures import FileStorage

from ..core.errors import ConstraintError
from ..core.errors import ConversionError
from ..core.settings import FALSE_WORDS
from ..core.settings import TRUE_WORDS
from .constraints import NO_RULES
from .constraints import Rules
from .constraints import unwrap

Schema = dict[str, t.Any]


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
    word = text.lower() if text.isascii() else ""
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


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)


#: The text a ``bool`` reads, as JSON Schema says it: each word in any case.
BOOL_TEXT_SCHEMA: Schema = {"anyOf": [
    {"type": "boolean"},
    {"type": "string", "pattern": "^(?:" + "|".join(
        _any_case(w) for w in sorted(TRUE_WORDS | FALSE_WORDS)) + ")$"},
]}


@dataclass(frozen=True)
class Scalar:
    """How one value becomes an argument, from text or from JSON, and what it may hold."""

    #: Converts a value sent as text (query, form, path segment).
    from_text: t.Callable[[t.Any], t.Any]
    #: Converts a value sent as JSON.
    from_json: t.Callable[[t.Any], t.Any]
    #: The JSON Schema of the JSON values it accepts, before its rules.
    json_schema: Schema
    #: The JSON Schema of the text it accepts (``None``: the same).
    text_schema: Schema | None = None
    #: The constraints of its ``Annotated`` metadata.
    rules: Rules = NO_RULES

    def convert(self, value: t.Any, text: bool) -> t.Any:
        """Convert one value and check it against the rules.

        :raises ConversionError: when it does not fit.
        """
        converted = self.from_text(value) if text else self.from_json(value)
        self.rules.check(converted)
        return converted

    def schema(self, text: bool) -> Schema:
        """The JSON Schema of the values it accepts as text or as JSON, rules included."""
        base = self.text_schema if text and self.text_schema is not None else self.json_schema
        return {**base, **self.rules.schema(base.get("type"))}

    def with_rules(self, rules: Rules) -> Scalar:
        """The same conversion, with ``rules`` added to its own."""
        return Scalar(self.from_text, self.from_json, self.json_schema, self.text_schema,
                      self.rules.merge(rules))


#: The scalar types the binder converts.
_SCALARS: dict[t.Any, Scalar] = {
    str: Scalar(_identity, _str_json, {"type": "string"}),
    int: Scalar(_int_text, _int_json, {"type": "integer"}),
    float: Scalar(_float_text, _float_json, {"type": "number"}),
    bool: Scalar(_bool_text, _bool_json, {"type": "boolean"}, BOOL_TEXT_SCHEMA),
    FileStorage: Scalar(_file, _file, {"type": "string", "format": "binary"}),
}

#: Values pass unchanged for annotations the binder does not know (text stays text).
_ANY = Scalar(_identity, _identity, {}, {"type": "string"})

#: The JSON Schema type of each kind of ``Literal`` member.
_LITERAL_TYPES: dict[type, str] = {str: "string", int: "integer", bool: "boolean",
                                   type(None): "null"}


def _none_text(text: str) -> None:
    if text == "":
        return None
    raise ConversionError(f"expected an empty value, got {_show(text)}")


#: How text is read for each kind of ``Literal`` member.
_TEXT_READINGS: dict[type, t.Callable[[str], t.Any]] = {
    str: _identity, int: _int_text, bool: _bool_text, type(None): _none_text,
}


def _enum_schema(members: t.Sequence[t.Any]) -> Schema:
    schema: Schema = {"enum": list(members)}
    kinds = {_LITERAL_TYPES[type(m)] for m in members}
    if len(kinds) == 1:
        schema["type"] = kinds.pop()
    return schema


def _same(value: t.Any, member: t.Any) -> bool:
    # True == 1 in Python, never in JSON: the type must match too.
    return type(value) is type(member) and value == member


def _literal(annotation: t.Any) -> Scalar:
    """The :class:`Scalar` of ``Literal[...]``: one of the listed values exactly
    (text is read as each member's type; an empty one stands for ``None``)."""
    members = t.get_args(annotation)
    for member in members:
        if type(member) not in _LITERAL_TYPES:
            raise ConstraintError(f"{annotation!r}: Literal members must be str, int, bool "
                                  "or None")
    listed = ", ".join(_show_json(m) for m in members)

    def from_json(value: t.Any) -> t.Any:
        if any(_same(value, m) for m in members):
            return value
        raise ConversionError(f"expected one of {listed}, got {_show_json(value)}")

    def from_text(text: str) -> t.Any:
        for member in members:
            try:
                if _same(_TEXT_READINGS[type(member)](text), member):
                    return member
            except ConversionError:
                continue
        raise ConversionError(f"expected one of {listed}, got {_show(text)}")

    # Text: bools as the words any case reads, None as the empty value.
    text_members = [m for m in members if type(m) not in (bool, type(None))]
    text_schema = _enum_schema(text_members) if text_members else {}
    options = [text_schema] if text_members else []
    if any(type(m) is bool for m in members):
        options.append(BOOL_TEXT_SCHEMA)
    if None in members:
        options.append({"type": "string", "maxLength": 0})
    return Scalar(from_text, from_json, _enum_schema(members),
                  options[0] if len(options) == 1 else {"anyOf": options})


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
    return found.with_rules(rules)


#: Converts one field's JSON value into its argument (raises ConversionError).
JsonConversion = t.Callable[[t.Any], t.Any]


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
    #: The JSON conversion of a single value with no rule to check, or ``None``:
    #: what :meth:`__call__` does for such a value, without the rule checks
    #: that would find nothing (told once: every JSON field asks).
    _bare_json: t.Callable[[t.Any], t.Any] | None = field(init=False, repr=False,
                                                           compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wants_file", self.item.from_text is _file)
        bare = not self.many and not self.item.rules and not self.rules
        object.__setattr__(self, "_bare_json", self.item.from_json if bare else None)

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
            bare = self._bare_json
            if bare is not None:
                return bare(raw)
            if self.many and not isinstance(raw, list):
                raise ConversionError(f"expected a list, got {_show_json(raw)}")
            values = raw if self.many else [raw]
        if not self.many:
            value = self.item.convert(values[0], text)
        else:
            value = [self._item(v, text, i) for i, v in enumerate(values)]
        self.rules.check(value)
        return value

    def for_json(self) -> JsonConversion:
        """What converts a JSON value of this parameter: ``self("json", value)``,
        or the bare conversion itself when that is all it does (a single value,
        neither optional nor ruled: one call per field instead of two)."""
        bare = self._bare_json
        if bare is not None and not self.optional:
            return bare
        return functools.partial(self, "json")

    def _item(self, value: t.Any, text: bool, index: int) -> t.Any:
        try:
            return self.item.convert(value, text)
        except ConversionError as error:
            raise ConversionError(f"item {index}: {error}") from None

    def schema(self, text: bool = False, required: bool = False) -> Schema:
        """The JSON Schema of what this converter accepts.

        :param text: describe text (a query parameter, a form field) rather
            than a JSON value.
        :param required: the field must be sent (as text, a list then needs a
            value: an empty one cannot be told from a missing field).
        """
        if self.many:
            return self._list_schema(text, required)
        schema = self.item.schema(text)
        if not self.optional:
            return schema
        if not text:
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
            if isinstance(schema.get("type"), str):
                schema["type"] = [schema["type"], "null"]
            elif "type" not in schema and "enum" not in schema and schema:
                schema = {"anyOf": [schema, {"type": "null"}]}
            return schema
        if schema in ({}, {"type": "string"}):
            return schema  # the empty text is one of these already
        return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}

    def _list_schema(self, text: bool, required: bool) -> Schema:
        item = self.item.schema(text)
        array: Schema = {"type": "array", "items": item, **self.rules.schema("array")}
        if not text:
            if self.optional:
                array["type"] = ["array", "null"]
            return array
        if required:
            array["minItems"] = max(array.get("minItems", 0), 1)
        # Text cannot tell a list of one from its one value: both read the same.
        if self.rules.allows_length(1) and not self.wants_file:
            return {"anyOf": [array, item]}
        return array


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
        if inner.many:
            return Converter(True, optional, inner.item, annotation, inner.rules.merge(rules))
        return Converter(False, optional, inner.item.with_rules(rules), annotation)
    if origin is list or bare is list:
        args = t.get_args(bare)
        item = _scalar(args[0]) if args else _ANY
        return Converter(True, False, item, annotation, rules)
    # A single value: its rules and the annotation's are one set.
    return Converter(False, False, _scalar(bare).with_rules(rules), annotation)
