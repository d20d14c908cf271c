"""KernKoa's ``params``: fields from query, form and JSON, and legacy keys."""

from __future__ import annotations

import io
import json
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

ECHO = """
from kernkoa import *


class C:
    def echo(self, params=None):
        if params is None:
            return {"params": None}
        return {
            "type": type(params).__name__,
            "is_dict": isinstance(params, dict),
            "fields": dict(params),
            "keys": list(params),
            "query": params.query.to_dict(flat=False),
            "form": params.form.to_dict(flat=False),
            "json": params.json,
            "files": {k: f.filename for k, f in params.files.items()},
            "urlpath": params.urlpath,
            "method": params.method,
            "getlist_a": params.getlist("a"),
        }

    def legacy(self, params):
        return {
            "get": params["get"],
            "post": params["post"],
            "urlpath": params["urlpath"],
            "data": params["data"],
        }

    def legacy_get(self, params):
        return {key: params.get(key, "absent") for key in ("get", "urlpath", "nothing")}

    def missing(self, params):
        return params["nope"]

    def upload(self, params):
        f = params.files["doc"]
        return {"name": f.filename, "body": f.read().decode(), "fields": dict(params)}

    def kwargs(self, **kwargs):
        return {k: getattr(v, "filename", v) for k, v in kwargs.items()}

    def mixed(self, a: int, **rest):
        return {"a": a, "rest": rest}

    def both(self, a: int, params=None):
        return {"a": a, "params": dict(params)}
"""


@pytest.fixture
def client(make_app: t.Callable[..., Flask], tree: ControllerTree) -> FlaskClient:
    """A client of a catalog holding :data:`ECHO` as ``/p``."""
    tree.write("p.py", ECHO)
    return make_app().test_client()


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_params_is_none_without_fields(client: FlaskClient, method: str) -> None:
    response = client.open("/p/C/echo", method=method)
    assert response.status_code == 200
    if method != "HEAD":
        assert response.get_json() == {"params": None}


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"data": b"", "content_type": "application/json"},
        {"data": b"", "content_type": "application/x-www-form-urlencoded"},
        {"data": b"   ", "content_type": "application/json"},
    ],
)
def test_empty_bodies_leave_params_none(client: FlaskClient, kwargs: dict[str, t.Any]) -> None:
    assert client.post("/p/C/echo", **kwargs).get_json() == {"params": None}


def test_query_fields_first_value(client: FlaskClient) -> None:
    body = client.get("/p/C/echo?a=1&a=2&b=x").get_json()
    assert body["type"] == "Params" and body["is_dict"]
    assert body["fields"] == {"a": "1", "b": "x"}
    assert body["keys"] == ["a", "b"]
    assert body["getlist_a"] == ["1", "2"]
    assert body["query"] == {"a": ["1", "2"], "b": ["x"]}
    assert body["urlpath"] == "p/C/echo"
    assert body["method"] == "GET"
    assert body["json"] is None and body["form"] == {} and body["files"] == {}


def test_form_wins_over_query(client: FlaskClient) -> None:
    body = client.post("/p/C/echo?a=q&q=1", data={"a": ["f1", "f2"], "f": "1"}).get_json()
    assert body["fields"] == {"a": "f1", "q": "1", "f": "1"}
    assert body["getlist_a"] == ["q", "f1", "f2"]
    assert body["form"] == {"a": ["f1", "f2"], "f": ["1"]}
    assert body["method"] == "POST"


def test_json_wins_over_query(client: FlaskClient) -> None:
    body = client.post("/p/C/echo?a=q&q=1", json={"a": [1, 2], "j": {"k": None}}).get_json()
    assert body["fields"] == {"a": [1, 2], "q": "1", "j": {"k": None}}
    assert body["json"] == {"a": [1, 2], "j": {"k": None}}
    assert body["getlist_a"] == ["q", 1, 2]


@pytest.mark.parametrize("document", [[1, 2], "text", 3, False, None])
def test_non_object_json_is_kept_whole(client: FlaskClient, document: t.Any) -> None:
    body = client.post("/p/C/echo?x=1", data=json.dumps(document),
                       content_type="application/json").get_json()
    assert body["json"] == document
    assert body["fields"] == {"x": "1"}


def test_json_with_charset_parameter(client: FlaskClient) -> None:
    body = client.post("/p/C/echo", data=b'{"a": "\xc3\xa9"}',
                       content_type="application/json; charset=utf-8").get_json()
    assert body["fields"] == {"a": "é"}


@pytest.mark.parametrize("data", [b"{", b"{'a': 1}", b"[1,", b"\xff\xfe", b"NaNx"])
def test_invalid_json_is_400(client: FlaskClient, data: bytes) -> None:
    response = client.post("/p/C/echo", data=data, content_type="application/json")
    error = assert_error(response, 400, "bad_request")
    assert "JSON" in error["message"]


def test_deeply_nested_json_is_400_not_500(client: FlaskClient) -> None:
    data = b"[" * 100_000 + b"]" * 100_000
    assert_error(client.post("/p/C/echo", data=data, content_type="application/json"), 400)


def test_invalid_json_is_400_for_every_kind_of_method(client: FlaskClient) -> None:
    for path in ("/p/C/legacy", "/p/C/kwargs", "/p/C/mixed?a=1", "/p/C/both?a=1"):
        response = client.post(path, data=b"{", content_type="application/json")
        assert_error(response, 400)


def test_legacy_keys_when_no_such_field(client: FlaskClient) -> None:
    body = client.post("/p/C/legacy?q=1&q=2", data={"f": "1"}).get_json()
    assert body == {"get": {"q": "1"}, "post": {"f": "1"}, "urlpath": "p/C/legacy",
                    "data": None}
    body = client.post("/p/C/legacy?q=1", json={"j": 1}).get_json()
    assert body == {"get": {"q": "1"}, "post": {}, "urlpath": "p/C/legacy", "data": {"j": 1}}


def test_get_answers_the_legacy_keys_too(client: FlaskClient) -> None:
    body = client.get("/p/C/legacy_get?q=1").get_json()
    assert body == {"get": {"q": "1"}, "urlpath": "p/C/legacy_get", "nothing": "absent"}


def test_fields_named_like_legacy_keys_win(client: FlaskClient) -> None:
    body = client.get("/p/C/legacy?get=G&post=P&urlpath=U&data=D").get_json()
    assert body == {"get": "G", "post": "P", "urlpath": "U", "data": "D"}


def test_legacy_keys_are_not_fields(client: FlaskClient) -> None:
    body = client.get("/p/C/echo?a=1").get_json()
    assert "get" not in body["keys"] and "urlpath" not in body["keys"]


def test_unknown_key_is_a_keyerror_500(client: FlaskClient) -> None:
    assert_error(client.get("/p/C/missing?a=1"), 500, "internal_server_error")


def test_files_arrive_as_filestorage(client: FlaskClient) -> None:
    response = client.post("/p/C/upload", data={
        "doc": (io.BytesIO(b"file body"), "doc.txt"), "note": "n",
    })
    assert response.get_json() == {"name": "doc.txt", "body": "file body",
                                   "fields": {"note": "n"}}


def test_a_file_alone_makes_params(client: FlaskClient) -> None:
    body = client.post("/p/C/echo", data={"doc": (io.BytesIO(b"x"), "a.bin")}).get_json()
    assert body["files"] == {"doc": "a.bin"}
    assert body["fields"] == {}


def test_kwargs_receive_every_field(client: FlaskClient) -> None:
    assert client.get("/p/C/kwargs?a=1&a=2&b=x").get_json() == {"a": "1", "b": "x"}
    assert client.post("/p/C/kwargs?a=1", json={"a": 2, "c": [3]}).get_json() == {
        "a": 2, "c": [3]}
    response = client.post("/p/C/kwargs", data={"doc": (io.BytesIO(b"x"), "d.txt")})
    assert response.get_json() == {"doc": "d.txt"}


def test_kwargs_get_what_named_parameters_leave(client: FlaskClient) -> None:
    assert client.post("/p/C/mixed?a=1&b=2", data={"c": "3"}).get_json() == {
        "a": 1, "rest": {"b": "2", "c": "3"}}


def test_params_beside_named_parameters(client: FlaskClient) -> None:
    assert client.get("/p/C/both?a=5&b=6").get_json() == {"a": 5,
                                                            "params": {"a": "5", "b": "6"}}


def test_readme_echo_keeps_query_order(client: FlaskClient) -> None:
    body = client.get("/p/C/echo?z=1&a=2&m=3").get_json()
    assert body["keys"] == ["z", "a", "m"]
