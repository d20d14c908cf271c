r"""What a parameter may hold: the constraints written into its annotation.

A controller states them with ``typing.Annotated`` and the markers of the
``annotated-types`` package (``Gt``, ``Ge``, ``Lt``, ``Le``, ``Interval``,
``MultipleOf``, ``MinLen``, ``MaxLen``, ``Len``), a compiled regular
expression for a pattern, and ``annotated_types.doc(...)`` for a description::

    def rate(self, stars: Annotated[int, Ge(1), Le(5)],
             code: Annotated[str, MaxLen(8), re.compile(r"^[A-Z0-9]+$")]): ...

The binder checks them on the converted value (a 422 naming the field and the
rule), and the OpenAPI document carries them as JSON Schema keywords. Each
rule means exactly what its keyword means, so the two cannot disagree: number
rules apply to numbers (never to booleans), length rules to strings (in
characters) and lists (in items), patterns to strings.

A pattern must match the whole value, as HTML's ``pattern`` attribute does
(``re.fullmatch``; the document says ``^(?:pattern)$``): Python's ``$`` also
matches before a final line break, which JSON Schema's does not, and a whole
match leaves no such gap. Python and JSON Schema (ECMA-262) read most of a
pattern alike; they differ on ``.``, ``\s``, ``\d`` and ``\w`` for
characters beyond ASCII, so a pattern that must mean the same to every client
spells its classes out (``[A-Za-z0-9_]``, ``[^ \t\n\r\f\v]``).

Other metadata is left alone, as ``Annotated`` intends.
"""

from __future__ import annotations

import math
import re
import typing as t
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields

import annotated_types as at

from ..core.errors import ConstraintError
from ..core.errors import ConversionError

Number = int | float


def _is_number(value: t.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True)
class Rules:
    """The constraints on one value; every field unset means "no rule"."""

    gt: Number | None = None
    ge: Number | None = None
    lt: Number | None = None
    le: Number | None = None
    multiple_of: tuple[Number, ...] = ()
    min_length: int | None = None
    max_length: int | None = None
    patterns: tuple[re.Pattern[str], ...] = ()
    description: str | None = None
    #: Whether any rule is set: told once, since every converted value asks.
    _any: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_any", any(
            getattr(self, f.name) not in (None, ()) for f in fields(self)
            if f.init and f.name != "description"))

    def __bool__(self) -> bool:
        return self._any

    def check(self, value: t.Any) -> None:
        """Refuse a value that breaks a rule.

        :raises ConversionError: saying which rule, as the client reads it.
        """
        if not self:
            return
        if _is_number(value):
            self._check_number(value)
        elif isinstance(value, (str, list)):
            self._check_length(value)
            # After the length: a MaxLen bounds what the pattern has to scan.
            if isinstance(value, str):
                for pattern in self.patterns:
                    if pattern.fullmatch(value) is None:
                        raise ConversionError(f"must match the pattern {pattern.pattern}")

    def allows_length(self, length: int) -> bool:
        """Whether a string or list of ``length`` passes the length rules."""
        return ((self.min_length is None or length >= self.min_length)
                and (self.max_length is None or length <= self.max_length))

    def _check_number(self, value: Number) -> None:
        if self.gt is not None and not value > self.gt:
            raise ConversionError(f"must be greater than {self.gt}")
        if self.ge is not None and not value >= self.ge:
            raise ConversionError(f"must be at least {self.ge}")
        if self.lt is not None and not value < self.lt:
            raise ConversionError(f"must be less than {self.lt}")
        if self.le is not None and not value <= self.le:
            raise ConversionError(f"must be at most {self.le}")
        for step in self.multiple_of:
            if not _is_multiple(value, step):
                raise ConversionError(f"must be a multiple of {step}")

    def _check_length(self, value: str | list[t.Any]) -> None:
        unit = "character" if isinstance(value, str) else "item"
        if self.min_length is not None and len(value) < self.min_length:
            raise ConversionError(f"must have at least {_plural(self.min_length, unit)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise ConversionError(f"must have at most {_plural(self.max_length, unit)}")

    def schema(self, json_type: str | None) -> dict[str, t.Any]:
        """The JSON Schema keywords of these rules for a value of ``json_type``
        (``"string"``, ``"array"``, ...; ``None`` when any type is accepted)."""
        schema: dict[str, t.Any] = {}
        numeric = json_type in (None, "integer", "number")
        for name, keyword in (("gt", "exclusiveMinimum"), ("ge", "minimum"),
                              ("lt", "exclusiveMaximum"), ("le", "maximum")):
            bound = getattr(self, name)
            if bound is not None and numeric:
                schema[keyword] = bound
        extra: list[dict[str, t.Any]] = []
        if numeric:
            extra += [{"multipleOf": step} for step in self.multiple_of]
        for kind, prefix in (("string", "Length"), ("array", "Items")):
            if json_type in (None, kind):
                if self.min_length is not None:
                    schema["min" + prefix] = self.min_length
                if self.max_length is not None:
                    schema["max" + prefix] = self.max_length
        if json_type in (None, "string"):
            extra += [{"pattern": f"^(?:{p.pattern})$"} for p in self.patterns]
        # One keyword of each kind per schema: the first inline, the rest in allOf.
        # A pattern stays apart from the length keywords: tools that fold a length
        # into a pattern's quantifiers (fuzzers do) get unanchored patterns wrong.
        if extra and not (self.patterns and (self.min_length or self.max_length)):
            schema.update(extra.pop(0))
        if extra:
            schema["allOf"] = extra
        if self.description:
            schema["description"] = self.description
        return schema

    def merge(self, other: Rules) -> Rules:
        """Both sets of rules at once (the stricter bound of each kind)."""
        return _merge(self, other)


#: No constraint at all.
NO_RULES = Rules()


def _is_multiple(value: Number, step: Number) -> bool:
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    # As JSON Schema validators judge floats: the quotient is a whole number.
    quotient = value / step
    return math.isfinite(quotient) and quotient == int(quotient)


def _stricter(a: Number | None, b: Number | None, pick: t.Callable[..., Number]) -> Number | None:
    return b if a is None else a if b is None else pick(a, b)


def _merge(a: Rules, b: Rules) -> Rules:
    return Rules(
        gt=_stricter(a.gt, b.gt, max), ge=_stricter(a.ge, b.ge, max),
        lt=_stricter(a.lt, b.lt, min), le=_stricter(a.le, b.le, min),
        multiple_of=a.multiple_of + b.multiple_of,
        min_length=t.cast(int | None, _stricter(a.min_length, b.min_length, max)),
        max_length=t.cast(int | None, _stricter(a.max_length, b.max_length, min)),
        patterns=a.patterns + b.patterns,
        description=b.description or a.description,
    )


def _bound(marker: t.Any, name: str) -> Number:
    value = getattr(marker, name)
    if not _is_number(value) or not math.isfinite(value):
        raise ConstraintError(f"{marker!r}: the bound must be a finite number")
    return t.cast(Number, value)


def _length(marker: t.Any, name: str) -> int:
    value = getattr(marker, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConstraintError(f"{marker!r}: the length must be a whole number, 0 or more")
    return value


def _pattern(pattern: re.Pattern[t.Any]) -> re.Pattern[str]:
    if not isinstance(pattern.pattern, str) or pattern.flags & ~re.UNICODE:
        # JSON Schema patterns have no flags: the document could not say the same thing.
        raise ConstraintError(f"{pattern!r}: a pattern must be a str pattern without flags")
    return t.cast(re.Pattern[str], pattern)


def _rule_of(marker: t.Any) -> Rules | None:
    """The rules of one metadata item, or ``None`` when it is not a constraint."""
    if isinstance(marker, at.Gt):
        return Rules(gt=_bound(marker, "gt"))
    if isinstance(marker, at.Ge):
        return Rules(ge=_bound(marker, "ge"))
    if isinstance(marker, at.Lt):
        return Rules(lt=_bound(marker, "lt"))
    if isinstance(marker, at.Le):
        return Rules(le=_bound(marker, "le"))
    if isinstance(marker, at.MultipleOf):
        step = _bound(marker, "multiple_of")
        if step <= 0:
            raise ConstraintError(f"{marker!r}: the step must be greater than 0")
        return Rules(multiple_of=(step,))
    if isinstance(marker, at.MinLen):
        return Rules(min_length=_length(marker, "min_length"))
    if isinstance(marker, at.MaxLen):
        return Rules(max_length=_length(marker, "max_length"))
    if isinstance(marker, re.Pattern):
        return Rules(patterns=(_pattern(marker),))
    if isinstance(marker, at.DocInfo):
        return Rules(description=marker.documentation)
    return None


def rules_of(metadata: t.Iterable[t.Any]) -> Rules:
    """The rules of ``Annotated`` metadata; grouped markers (``Interval``,
    ``Len``) count as the markers they stand for.

    :raises ConstraintError: for a marker the kernel cannot check as written.
    """
    rules = NO_RULES
    for marker in metadata:
        parts = list(marker) if isinstance(marker, at.GroupedMetadata) else [marker]
        for part in parts:
            found = _rule_of(part)
            if found is not None:
                rules = rules.merge(found)
    return rules


def unwrap(annotation: t.Any) -> tuple[t.Any, Rules]:
    """An annotation without ``Annotated[...]``, and the rules its metadata holds."""
    rules = NO_RULES
    while t.get_origin(annotation) is t.Annotated:
        rules = rules_of(annotation.__metadata__).merge(rules)
        annotation = annotation.__origin__
    return annotation, rules
