"""The binder's one-pass binding of a JSON object body (``Binder._json_plan``).

It must answer exactly what the general path answers, the same arguments or
the same 422 with the same problems in the same order, for every body it
takes; every other request must reach the general path. And the plan
belongs to one version of a method: a reloaded file binds by its new signature.
"""

from __future__ import annotations

import json
import os
import typing as t
from typing import Annotated
from typing import Optional

import pytest
from annotated_types import Ge
from annotated_types import MaxLen
from flask import Flask
from flask import request

from kernel.catalog.binding import Binder
from kernel.core.errors import ParameterError
from kernel.core.settings import Settings
from kernel.web.params import GivenFields
from kernel.web.params import RequestFields
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error


class Shapes:
    """Methods of every shape the plan takes, and some it must leave alone."""

    def typed(self, a: int, b: str, c: bool) -> None:
        """Three plain fields, as the benchmark's POST."""

    def defaults(self, n: float = 1.5, maybe: Optional[int] = None,  # noqa: UP045
                 name: str | None = "x") -> None:
        """Defaults and optional values (``null`` is ``None``)."""

    def ruled(self, stars: Annotated[int, Ge(1)], code: Annotated[str, MaxLen(3)],
              ids: list[int]) -> None:
        """Rules and a list: converted through the converter itself."""

    def untyped(self, a, b="default") -> None:  # type: ignore[no-untyped-def]
        """No annotations: any JSON value."""

    def keyword_only(self, *, k: int) -> None:
        """A keyword-only field."""


#: Bodies, each sent to each method: fitting, missing, mistyped, surplus, ruled out.
BODIES: list[t.Any] = [
    {"a": 7, "b": "text", "c": True},
    {"a": 7.0, "b": "text", "c": False},
    {"a": "7", "b": 3, "c": "yes"},
    {"a": 7},
    {},
    {"a": 1, "b": "t", "c": True, "zz": 1, "aa": 2},
    {"n": 2, "maybe": None, "name": None},
    {"n": True, "maybe": "1"},
    {"stars": 0, "code": "toolong", "ids": [1, "2"]},
    {"stars": 5, "code": "ok", "ids": [1, 2]},
    {"stars": 5, "code": "ok", "ids": 3},
    {"a": [1, {"x": None}], "b": {"y": 1}},
    {"k": 4},
    {"k": None, "self": 1},
]


def bind(binder: Binder, fields: RequestFields) -> tuple[list[t.Any], dict[str, t.Any]] | list[
        dict[str, str]]:
    """The binding's arguments, or its 422 problems."""
    try:
        return binder.bind(fields, (), "m/Shapes/x")
    except ParameterError as error:
        return list(error.fields)


def general(func: t.Callable[..., t.Any]) -> Binder:
    """A binder of ``func`` without the plan: the general path always."""
    binder = Binder(func)
    binder._json_plan = None
    return binder


@pytest.mark.parametrize("name", ["typed", "defaults", "ruled", "untyped", "keyword_only"])
@pytest.mark.parametrize("query", ["", "a=9&k=1"])
def test_a_json_object_binds_as_the_general_path_binds_it(name: str, query: str) -> None:
    func = getattr(Shapes, name)
    planned = Binder(func)
    assert planned._json_plan is not None
    app = Flask(__name__)
    settings = Settings.load()
    for body in BODIES:
        data = json.dumps(body)
        with app.test_request_context(f"/?{query}", method="POST", data=data,
                                      content_type="application/json"):
            expected = bind(general(func), RequestFields(request, settings))
            found = bind(planned, RequestFields(request, settings))
        assert found == expected, (name, body)


@pytest.mark.parametrize("body", BODIES)
def test_fields_handed_over_by_code_bind_alike(body: dict[str, t.Any]) -> None:
    settings = Settings.load()
    for name in ("typed", "defaults", "ruled"):
        func = getattr(Shapes, name)
        expected = bind(general(func), GivenFields(body, settings))
        assert bind(Binder(func), GivenFields(body, settings)) == expected


def test_only_methods_of_named_fields_get_a_plan() -> None:
    class Other:
        def params(self, params=None) -> None:  # type: ignore[no-untyped-def]
            """KernKoa's params."""

        def rest(self, a: int, **rest: t.Any) -> None:
            """Extra fields."""

        def star(self, a, *more) -> None:  # type: ignore[no-untyped-def]
            """Path segments."""

        def positional(self, a: int, /) -> None:
            """Positional-only."""

        def nothing(self) -> None:
            """No field at all."""

    for name in ("params", "rest", "star", "positional", "nothing"):
        assert Binder(getattr(Other, name))._json_plan is None, name


CART = """
class Cart:
    def add(self, item: str, count: int = 1):
        return {"item": item, "count": count}
"""


def test_a_reloaded_method_binds_by_its_new_signature(tree: ControllerTree,
                                                      make_app: t.Callable[..., Flask]) -> None:
    path = tree.write("cart.py", CART)
    client = make_app().test_client()
    assert client.post("/cart/Cart/add", json={"item": "pen"}).get_json() == {
        "item": "pen", "count": 1}
    path.write_text(CART.replace("count: int = 1", "count: int, note: str = ''").replace(
        '"count": count}', '"count": count, "note": note}'))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    missing = assert_error(client.post("/cart/Cart/add", json={"item": "pen"}), 422)
    assert [field["name"] for field in missing["fields"]] == ["count"]
    answer = client.post("/cart/Cart/add", json={"item": "pen", "count": 2, "note": "n"})
    assert answer.get_json() == {"item": "pen", "count": 2, "note": "n"}
