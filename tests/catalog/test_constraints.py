"""Constraints in annotations: checked by the binder, described by the same converter."""

from __future__ import annotations

import re
import typing as t
from typing import Annotated
from typing import Literal

import pytest
from annotated_types import Ge
from annotated_types import Gt
from annotated_types import Interval
from annotated_types import Le
from annotated_types import Len
from annotated_types import Lt
from annotated_types import MaxLen
from annotated_types import MinLen
from annotated_types import MultipleOf
from annotated_types import doc
from flask import Flask
from flask.testing import FlaskClient

from kernel.catalog.constraints import NO_RULES
from kernel.catalog.constraints import ConstraintError
from kernel.catalog.constraints import Rules
from kernel.catalog.conversion import converter_for
from kernel.core.errors import ConversionError
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

Stars = Annotated[int, Ge(1), Le(5)]
Code = Annotated[str, MinLen(2), MaxLen(4), re.compile(r"[A-Z]+")]


@pytest.mark.parametrize(("annotation", "raw", "expected"), [
    (Stars, ["1"], 1),
    (Stars, ["5"], 5),
    (Annotated[float, Gt(0), Lt(1)], ["0.5"], 0.5),
    (Annotated[int, MultipleOf(5)], ["-10"], -10),
    (Annotated[float, MultipleOf(0.5)], ["1.5"], 1.5),
    (Annotated[int, Interval(ge=0, lt=3)], ["2"], 2),
    (Code, ["AB"], "AB"),
    (Annotated[str, Len(1, 3)], ["abc"], "abc"),
    (Annotated[list[int], MinLen(2)], ["1", "2"], [1, 2]),
    (list[Annotated[int, Ge(0)]], ["0", "7"], [0, 7]),
    (Annotated[int | None, Ge(1)], [""], None),
    (t.Optional[Stars], ["3"], 3),  # noqa: UP045 - the typing spelling is supported too
    (Literal["S", "M"], ["M"], "M"),
    (Literal[1, 2], ["2"], 2),
    (Literal[True], ["yes"], True),
    (Literal["a", None], [""], None),
    (list[Literal["x", "y"]], ["y", "x"], ["y", "x"]),
])
def test_text_within_the_rules_is_accepted(annotation: t.Any, raw: list[str],
                                          expected: t.Any) -> None:
    assert converter_for(annotation)("query", raw) == expected


@pytest.mark.parametrize(("annotation", "raw", "message"), [
    (Stars, ["0"], "must be at least 1"),
    (Stars, ["6"], "must be at most 5"),
    (Annotated[float, Gt(0)], ["0"], "must be greater than 0"),
    (Annotated[float, Lt(1)], ["1"], "must be less than 1"),
    (Annotated[int, MultipleOf(5)], ["7"], "must be a multiple of 5"),
    (Annotated[float, MultipleOf(0.5)], ["0.3"], "must be a multiple of 0.5"),
    (Code, ["A"], "must have at least 2 characters"),
    (Code, ["ABCDE"], "must have at most 4 characters"),
    (Code, ["ab"], "must match the pattern [A-Z]+"),
    # The whole value must match: Python's "$" would let a final line break through.
    (Annotated[str, re.compile(r"^[A-Z]+$")], ["AB\n"], "must match the pattern ^[A-Z]+$"),
    (Annotated[list[int], MaxLen(1)], ["1", "2"], "must have at most 1 item"),
    (list[Annotated[int, Ge(0)]], ["1", "-1"], "item 1: must be at least 0"),
    (Literal["S", "M"], ["XL"], "expected one of \"S\", \"M\", got 'XL'"),
    (Literal[1, 2], ["3"], "expected one of 1, 2, got '3'"),
])
def test_text_breaking_a_rule_names_it(annotation: t.Any, raw: list[str], message: str) -> None:
    with pytest.raises(ConversionError) as error:
        converter_for(annotation)("query", raw)
    assert str(error.value) == message


@pytest.mark.parametrize(("annotation", "value", "fits"), [
    (Stars, 3, True),
    (Stars, 9, False),
    (Stars, True, False),       # a boolean is no number, in JSON as in JSON Schema
    (Literal[1, 2], 1, True),
    (Literal[1, 2], True, False),
    (Literal[1, 2], "1", False),
    (Literal["a", None], None, True),
    (Code, "AB", True),
    (Code, 12, False),
])
def test_json_within_the_rules(annotation: t.Any, value: t.Any, fits: bool) -> None:
    convert = converter_for(annotation)
    if fits:
        assert convert("json", value) == value
    else:
        with pytest.raises(ConversionError):
            convert("json", value)


def test_rules_become_schema_keywords() -> None:
    assert converter_for(Stars).schema() == {"type": "integer", "minimum": 1, "maximum": 5}
    assert converter_for(Annotated[float, Gt(0), Lt(1), MultipleOf(0.25)]).schema() == {
        "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "multipleOf": 0.25}
    # A pattern whole-matches, and keeps apart from the lengths (see constraints.py).
    assert converter_for(Code).schema() == {
        "type": "string", "minLength": 2, "maxLength": 4, "allOf": [{"pattern": "^(?:[A-Z]+)$"}]}
    assert converter_for(Annotated[str, re.compile("[a-z]")]).schema() == {
        "type": "string", "pattern": "^(?:[a-z])$"}
    assert converter_for(Annotated[list[str], MinLen(1), MaxLen(3)]).schema() == {
        "type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}
    assert converter_for(list[Annotated[int, Ge(0)]]).schema() == {
        "type": "array", "items": {"type": "integer", "minimum": 0}}
    assert converter_for(Annotated[int, doc("How many.")]).schema() == {
        "type": "integer", "description": "How many."}
    assert converter_for(Literal["S", "M"]).schema() == {"type": "string", "enum": ["S", "M"]}
    assert converter_for(Literal["S", "M"] | None).schema() == {
        "type": ["string", "null"], "enum": ["S", "M", None]}
    assert converter_for(Literal[1, "a"]).schema() == {"enum": [1, "a"]}


def test_text_schemas_say_how_text_is_read() -> None:
    """As text an empty value is None, and one value stands for a list of one."""
    assert converter_for(Stars | None).schema(text=True) == {"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 5}, {"type": "string", "maxLength": 0}]}
    assert converter_for(list[int]).schema(text=True, required=True) == {"anyOf": [
        {"type": "array", "items": {"type": "integer"}, "minItems": 1}, {"type": "integer"}]}
    # A list that must hold two values cannot be sent as one.
    assert converter_for(Annotated[list[int], MinLen(2)]).schema(text=True) == {
        "type": "array", "items": {"type": "integer"}, "minItems": 2}
    assert converter_for(t.Any).schema(text=True) == {"type": "string"}
    assert converter_for(t.Any).schema() == {}


@pytest.mark.parametrize("annotation", [
    Annotated[str, re.compile("a", re.IGNORECASE)],
    Annotated[bytes, re.compile(b"a")],
    Annotated[int, Ge("1")],
    Annotated[int, Ge(float("inf"))],
    Annotated[int, MultipleOf(0)],
    Annotated[str, MinLen(-1)],
    Literal[1.5],
])
def test_a_rule_that_cannot_be_checked_as_written_is_refused(annotation: t.Any) -> None:
    with pytest.raises(ConstraintError):
        converter_for(annotation)


def test_other_metadata_is_left_alone() -> None:
    assert converter_for(Annotated[int, "a note", object()])("query", ["7"]) == 7


RATED = '''
import re
from typing import Annotated, Literal

from annotated_types import Ge, Le, MaxLen

from kernkoa import methods


class R:
    @methods("GET", "POST")
    def rate(self, stars: Annotated[int, Ge(1), Le(5)], size: Literal["S", "M"] = "S",
             tags: Annotated[list[str], MaxLen(2)] = []):
        return {"stars": stars, "size": size, "tags": tags}

    def flagged(self, code: Annotated[str, re.compile("a", re.I)]):
        return code
'''


@pytest.fixture
def client(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> FlaskClient:
    tree.write("r.py", RATED)
    return make_app().test_client()


def test_a_broken_rule_is_a_422_naming_the_field_and_the_rule(client: FlaskClient) -> None:
    assert client.get("/r/R/rate?stars=5&size=M&tags=a").get_json() == {
        "stars": 5, "size": "M", "tags": ["a"]}
    error = assert_error(client.post("/r/R/rate", json={"stars": 0, "size": "L",
                                                         "tags": ["a", "b", "c"]}), 422)
    assert error["fields"] == [
        {"name": "stars", "source": "json", "message": "must be at least 1"},
        {"name": "size", "source": "json", "message": 'expected one of "S", "M", got "L"'},
        {"name": "tags", "source": "json", "message": "must have at most 2 items"},
    ]


def test_the_document_carries_the_rules(client: FlaskClient) -> None:
    doc = client.get("/_kernkoa/openapi.json").get_json()
    rate = doc["paths"]["/r/R/rate"]
    query = {p["name"]: p["schema"] for p in rate["get"]["parameters"]}
    assert query["stars"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert query["size"] == {"type": "string", "enum": ["S", "M"], "default": "S"}
    body = rate["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["tags"] == {"type": "array", "items": {"type": "string"},
                                          "maxItems": 2, "default": []}


def test_a_rule_the_kernel_cannot_check_makes_the_method_unroutable(
        client: FlaskClient, tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    assert_error(client.get("/r/R/flagged?code=a"), 404)
    detail = make_app(DEBUG=True).test_client().get("/r/R/flagged").get_json()["error"]
    assert "without flags" in detail["detail"]
    assert "/r/R/flagged" not in client.get("/_kernkoa/openapi.json").get_json()["paths"]


@pytest.mark.parametrize("rules, active", [
    (NO_RULES, False), (Rules(description="only words"), False), (Rules(gt=0), True),
    (Rules(ge=0.5), True), (Rules(lt=-1), True), (Rules(le=0), True),
    (Rules(multiple_of=(3,)), True), (Rules(min_length=0), True), (Rules(max_length=4), True),
    (Rules(patterns=(re.compile("a+"),)), True), (NO_RULES.merge(Rules(le=2)), True),
    (NO_RULES.merge(Rules(description="x")), False),
])
def test_rules_are_told_set_or_not_once(rules: Rules, active: bool) -> None:
    # Every converted value asks whether there is a rule to check: the answer is
    # computed when the frozen rules are made, and takes no part in equality.
    assert bool(rules) is active
    assert rules == Rules(**{f: getattr(rules, f) for f in (
        "gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "patterns",
        "description")})
    assert "_any" not in repr(rules)
