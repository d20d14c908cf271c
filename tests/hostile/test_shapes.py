"""Hostile shapes: controller files holding every kind of class, descriptor and
callable, and request fields named like the kernel's own parameters.

None of them may turn a request into a 500: what the kernel cannot call is a
404 from the resolution, and a field that no parameter can take is a 422.
"""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

SHAPES = """
import abc
import dataclasses
import enum
import functools
import typing

from kernkoa import *


class Meta(type):
    def index(cls):
        return "meta"


class WithMeta(metaclass=Meta):
    def index(self):
        return "with meta"


class Abstract(abc.ABC):
    @abc.abstractmethod
    def index(self): ...


class Proto(typing.Protocol):
    def index(self):
        return "proto"


class Colour(enum.Enum):
    RED = 1

    def index(self):
        return "enum"


@dataclasses.dataclass
class Record:
    name: str

    def index(self):
        return "record"


class Point(typing.NamedTuple):
    x: int

    def index(self):
        return "point"


class Needs:
    def __init__(self, value):
        self.value = value

    def index(self):
        return "needs"


class Optional:
    def __init__(self, value=1):
        self.value = value

    def index(self):
        return "optional"


class Oops(Exception):
    def index(self):
        return "exception"


class Odd:
    def noself():
        return "no self"

    def kwself(*, self):
        return "kw self"

    def star(*args):
        return "star"

    async def coro(self):
        return "async"

    def gen(self):
        yield "gen"

    def weird(self, x: []):
        return x

    lam = lambda self: "lambda"  # noqa: E731
    part = functools.partialmethod(lambda self, x: x, 1)
    stat = staticmethod(lambda: "static")
    cls = classmethod(lambda c: "classmethod")
    builtin = len
    cached = functools.cached_property(lambda self: "cached")

    @functools.wraps(len)
    def wrapped(self):
        return "wrapped"

    def broken_sig(self):
        return "broken"
    broken_sig.__signature__ = 5

    def kw(self, **kwargs):
        return sorted(kwargs)

    def kw_celery(self, task, **kwargs):
        return sorted(kwargs)

    def params_kw(self, params=None, **kwargs):
        return sorted(kwargs)

    def pos(self, a, /, **kwargs):
        return [a, sorted(kwargs)]

    def varargs(self, *args, **kwargs):
        return [list(args), sorted(kwargs)]
"""

#: Classes the kernel cannot build as ``cls()``, one per kind.
UNBUILDABLE = ["Meta", "Abstract", "Proto", "Colour", "Record", "Point", "Needs", "Oops"]

#: Attributes of ``Odd`` that are no routable method.
NOT_METHODS = ["noself", "kwself", "star", "coro", "part", "stat", "cls", "builtin",
               "cached", "wrapped", "broken_sig"]

#: Names of the kernel's own parameters and of Python's usual ones.
COLLIDING = ["self", "task", "params", "args", "kwargs", "a", "cls"]

#: Methods taking fields by ``**kwargs`` (with the path segments they need).
OPEN_METHODS = ["kw", "params_kw", "pos/1", "varargs/1"]


@pytest.fixture
def client(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> FlaskClient:
    tree.write("shapes.py", SHAPES)
    return make_app(DEBUG=True).test_client()


@pytest.mark.parametrize("name", UNBUILDABLE)
def test_a_class_that_cannot_be_built_is_a_404(client: FlaskClient, name: str) -> None:
    error = assert_error(client.get(f"/shapes/{name}/index"), 404)
    assert "not routable" in error["detail"]


def test_classes_that_can_be_built_answer(client: FlaskClient) -> None:
    assert client.get("/shapes/WithMeta/index").data == b"with meta"
    assert client.get("/shapes/Optional/index").data == b"optional"


@pytest.mark.parametrize("name", NOT_METHODS)
def test_what_the_kernel_cannot_call_is_a_404(client: FlaskClient, name: str) -> None:
    assert_error(client.get(f"/shapes/Odd/{name}"), 404)


def test_callables_that_are_plain_functions_answer(client: FlaskClient) -> None:
    assert client.get("/shapes/Odd/lam").data == b"lambda"
    assert client.get("/shapes/Odd/gen").data == b"gen"


@pytest.mark.parametrize("method", OPEN_METHODS)
@pytest.mark.parametrize("source", ["query", "json", "form"])
def test_self_is_never_taken_from_the_request(client: FlaskClient, method: str,
                                              source: str) -> None:
    response = _send(client, f"/shapes/Odd/{method}", source, {"self": "1"})
    error = assert_error(response, 422)
    assert [f["name"] for f in error["fields"]] == ["self"]


def test_task_is_never_taken_from_the_request_by_a_celery_method(client: FlaskClient) -> None:
    error = assert_error(client.post("/shapes/Odd/kw_celery", json={"task": 1}), 422)
    assert [f["name"] for f in error["fields"]] == ["task"]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from([*OPEN_METHODS, "kw_celery"]),
       source=st.sampled_from(["query", "json", "form"]),
       fields=st.dictionaries(st.sampled_from(COLLIDING) | st.text(min_size=1, max_size=8),
                              st.text(max_size=8), max_size=4))
def test_colliding_field_names_never_make_a_500(client: FlaskClient, method: str, source: str,
                                                 fields: dict[str, str]) -> None:
    response = _send(client, f"/shapes/Odd/{method}", source, fields)
    assert response.status_code in (200, 202, 400, 413, 422), response.data
    reserved = {"self", "task"} if method == "kw_celery" else {"self"}
    if response.status_code in (200, 202):
        assert not reserved & fields.keys()
    if reserved & fields.keys():
        assert response.status_code == 422


def _send(client: FlaskClient, url: str, source: str, fields: dict[str, str]) -> t.Any:
    if source == "query":
        return client.post(url, query_string=fields)
    if source == "json":
        return client.post(url, json=fields)
    return client.post(url, data=fields)
