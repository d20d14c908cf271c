"""What a controller file exposes: only its own classes and their plain public methods."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kernel.catalog.exposure import DEFAULT_METHODS
from kernel.catalog.exposure import POST_ONLY
from kernel.catalog.exposure import build_endpoint
from kernel.catalog.exposure import methods
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

CONTROLLER = """
import os
import json
from json import JSONEncoder
from flask import Response
from kernkoa import *
from .base import Base
from os.path import join


class Encoder(json.JSONEncoder):
    def own(self):
        return "own"


class Child(Base):
    def own(self):
        return "child"


class C:
    greeting = "class attribute"
    joined = join

    class Nested:
        def index(self):
            return "nested"

    def index(self):
        return "index"

    def plain(self):
        return "plain"

    def _private(self):
        return "private"

    def __call__(self):
        return "dunder"

    @property
    def prop(self):
        return "property"

    @staticmethod
    def static():
        return "static"

    @classmethod
    def klass(cls):
        return "classmethod"

    @methods("PUT")
    def put_only(self):
        return "put"

    @methods("GET", "DELETE")
    def get_or_delete(self):
        return "get or delete"

    def work_celery(self, task, params=None):
        return "never here"


Alias = C
_Hidden = C


class _Private:
    def index(self):
        return "private class"
"""

BASE = """
class Base:
    def inherited(self):
        return "from the catalog base"

    def own(self):
        return "base"
"""


@pytest.fixture
def client(make_app: t.Callable[..., Flask], tree: ControllerTree) -> FlaskClient:
    """A client of a catalog holding :data:`CONTROLLER` as ``/m``."""
    tree.write("m.py", CONTROLLER)
    tree.write("base.py", BASE)
    return make_app().test_client()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/m/C/plain", b"plain"),
        ("/m/C", b"index"),
        ("/m/C/index", b"index"),
        ("/m/Encoder/own", b"own"),
        ("/m/Child/own", b"child"),
        ("/m/Child/inherited", b"from the catalog base"),
    ],
)
def test_own_plain_methods_are_routable(client: FlaskClient, path: str, body: bytes) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.data == body


@pytest.mark.parametrize(
    "path",
    [
        "/m/os/getcwd",
        "/m/os/system",
        "/m/json/JSONEncoder",
        "/m/JSONEncoder/encode",
        "/m/Response/get_data",
        "/m/Response",
        "/m/join/x",
        "/m/helper/x",
        "/m/Base/inherited",  # imported, so not this file's class
        "/m/Alias/plain",
        "/m/_Hidden/plain",
        "/m/_Private",
        "/m/methods/x",
        "/m/config/url",
        "/m/C/prop",
        "/m/C/static",
        "/m/C/klass",
        "/m/C/Nested",
        "/m/C/Nested/index",
        "/m/C/greeting",
        "/m/C/joined",
        "/m/C/_private",
        "/m/C/__call__",
        "/m/C/__init__",
        "/m/C/__class__",
        "/m/C/__dict__",
        "/m/C/__init_subclass__",
        "/m/C/__eq__",
        "/m/C/mro",
        "/m/Encoder/encode",
        "/m/Encoder/default",
        "/m/Encoder/iterencode",
        "/m/C/nothing",
        "/m/Nothing",
    ],
)
def test_everything_else_is_404(client: FlaskClient, path: str) -> None:
    for send in (client.get, client.post):
        assert_error(send(path), 404, "not_found")


def test_base_class_defined_in_the_catalog_is_routable(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    tree.write("m.py", """
        class Base:
            def inherited(self):
                return "from the base"

            def own(self):
                return "base"

        class Child(Base):
            def own(self):
                return "child"
    """)
    client = make_app().test_client()
    assert client.get("/m/Child/inherited").data == b"from the base"
    assert client.get("/m/Child/own").data == b"child"
    assert client.get("/m/Base/own").data == b"base"


def test_base_class_in_another_catalog_file_is_routable_by_relative_import(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    tree.write("shop/base.py", BASE)
    tree.write("shop/cart.py", """
        from .base import Base

        class Cart(Base):
            pass
    """)
    client = make_app().test_client()
    assert client.get("/shop/cart/Cart/inherited").data == b"from the catalog base"
    assert_error(client.get("/shop/cart/Base/inherited"), 404)


def test_override_of_outside_method_in_catalog_class_is_routable(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    tree.write("m.py", """
        import json

        class Encoder(json.JSONEncoder):
            def encode(self, o=None):
                return "mine"
    """)
    client = make_app().test_client()
    assert client.get("/m/Encoder/encode").data == b"mine"
    assert_error(client.get("/m/Encoder/iterencode"), 404)


def test_a_catalog_method_an_outside_class_overrides_is_not_routable(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    tree.write("m.py", """
        import json

        class Mine:
            def encode(self, o=None):
                return "mine"

        class Mixed(json.JSONEncoder, Mine):
            pass
    """)
    client = make_app().test_client()
    # Python would call JSONEncoder.encode on a Mixed instance, not Mine.encode.
    assert_error(client.get("/m/Mixed/encode"), 404)
    assert client.get("/m/Mine/encode").data == b"mine"


def test_a_method_shadowed_by_an_attribute_is_not_routable(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    tree.write("m.py", """
        class Base:
            def thing(self):
                return "function"

        class Child(Base):
            thing = "not a function"
    """)
    client = make_app().test_client()
    assert_error(client.get("/m/Child/thing"), 404)
    assert client.get("/m/Base/thing").data == b"function"


def test_fresh_instance_per_request(make_app: t.Callable[..., Flask],
                                    tree: ControllerTree) -> None:
    tree.write("m.py", """
        class C:
            def __init__(self):
                self.count = 0

            def bump(self):
                self.count += 1
                return self.count
    """)
    client = make_app().test_client()
    assert [client.get("/m/C/bump").get_json() for _ in range(3)] == [1, 1, 1]


def test_class_needing_constructor_arguments_is_not_routable(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    tree.write("m.py", """
        class C:
            def __init__(self, needed):
                pass

            def m(self):
                return "unreachable"
    """)
    assert_error(make_app().test_client().get("/m/C/m"), 404)


def test_methods_decorator_sets_http_methods() -> None:
    @methods("put", "GET")
    def f(self: t.Any) -> None: ...

    class C:
        pass

    assert build_endpoint(C, f).http_methods == {"PUT", "GET", "HEAD"}  # type: ignore[arg-type]


def test_default_http_methods() -> None:
    class C:
        def m(self) -> None: ...

        def m_celery(self, task: t.Any) -> None: ...

    plain = build_endpoint(C, C.m)  # type: ignore[arg-type]
    celery = build_endpoint(C, C.m_celery)  # type: ignore[arg-type]
    assert plain.http_methods == DEFAULT_METHODS == {"GET", "HEAD", "POST"}
    assert (plain.is_celery, celery.is_celery) == (False, True)
    assert celery.http_methods == POST_ONLY == {"POST"}
    assert celery.name == "m_celery"


@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH"])
def test_405_with_allow_for_other_verbs(client: FlaskClient, verb: str) -> None:
    response = client.open("/m/C/plain", method=verb)
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_head_is_answered(client: FlaskClient) -> None:
    response = client.head("/m/C/plain")
    assert response.status_code == 200
    assert response.data == b""


def test_methods_decorator_over_http(client: FlaskClient) -> None:
    assert client.put("/m/C/put_only").data == b"put"
    for verb in ("GET", "POST", "DELETE"):
        response = client.open("/m/C/put_only", method=verb)
        assert_error(response, 405)
        assert response.headers["Allow"] == "PUT"
    assert client.delete("/m/C/get_or_delete").data == b"get or delete"
    assert client.get("/m/C/get_or_delete").data == b"get or delete"
    response = client.post("/m/C/get_or_delete")
    assert_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"DELETE", "GET", "HEAD"}


def test_options_lists_the_methods(client: FlaskClient) -> None:
    response = client.options("/m/C/put_only")
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == {"PUT", "OPTIONS"}
    response = client.options("/m/C/plain")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert_error(client.options("/m/C/nothing"), 404)


def test_celery_method_is_post_only_and_is_enqueued(client: FlaskClient) -> None:
    response = client.get("/m/C/work_celery")
    assert_error(response, 405)
    assert response.headers["Allow"] == "POST"
    response = client.post("/m/C/work_celery")
    assert response.status_code == 202
    assert response.headers["Location"].endswith("/status/" + response.get_json()["id"])
