"""Binding request fields and path segments to a controller method's parameters."""

from __future__ import annotations

import io
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kernel.catalog.binding import Binder
from kernel.catalog.conversion import converter_for
from kernel.core.errors import ConversionError
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

TYPED = """
from typing import Optional
from werkzeug.datastructures import FileStorage


class T:
    def integer(self, n: int):
        return {"n": n}

    def number(self, x: float):
        return {"x": x}

    def flag(self, on: bool):
        return {"on": on}

    def text(self, s: str):
        return {"s": s}

    def many(self, ids: list[int]):
        return {"ids": ids}

    def maybe(self, n: Optional[int] = 7):
        return {"n": n}

    def maybe_required(self, n: int | None):
        return {"n": n}

    def upload(self, doc: FileStorage):
        return {"name": doc.filename, "body": doc.read().decode()}

    def uploads(self, docs: list[FileStorage]):
        return {"names": [d.filename for d in docs]}

    def untyped(self, a, b="default"):
        return {"a": a, "b": b}

    def two(self, a: int, b: str):
        return {"a": a, "b": b}

    def nothing(self):
        return "nothing"

    def path(self, first, second="none"):
        return {"first": first, "second": second}

    def star(self, first, *rest):
        return {"first": first, "rest": list(rest)}

    def only_params(self, params=None):
        return "params"

    def positional_only(self, a, /, b: int = 0):
        return {"a": a, "b": b}

    def keyword_only(self, *, k: int):
        return {"k": k}

    def params_and_rest(self, params=None, **rest):
        return {"params": params, "rest": rest}

    def path_and_rest(self, a, *more, **rest):
        return {"a": a, "more": list(more), "rest": rest}
"""


@pytest.fixture
def client(make_app: t.Callable[..., Flask], tree: ControllerTree) -> FlaskClient:
    """A client of a catalog holding :data:`TYPED` as ``/b``."""
    tree.write("b.py", TYPED)
    return make_app().test_client()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/b/T/integer?n=42", {"n": 42}),
        ("/b/T/integer?n=-3", {"n": -3}),
        ("/b/T/number?x=2.5", {"x": 2.5}),
        ("/b/T/number?x=2", {"x": 2.0}),
        ("/b/T/flag?on=true", {"on": True}),
        ("/b/T/flag?on=0", {"on": False}),
        ("/b/T/flag?on=Off", {"on": False}),
        ("/b/T/text?s=hi", {"s": "hi"}),
        ("/b/T/many?ids=1&ids=2", {"ids": [1, 2]}),
        ("/b/T/many?ids=5", {"ids": [5]}),
        ("/b/T/maybe", {"n": 7}),
        ("/b/T/maybe?n=", {"n": None}),
        ("/b/T/maybe?n=3", {"n": 3}),
        ("/b/T/maybe_required?n=", {"n": None}),
        ("/b/T/untyped?a=1", {"a": "1", "b": "default"}),
        ("/b/T/untyped?a=1&b=2", {"a": "1", "b": "2"}),
        ("/b/T/positional_only?a=x&b=2", {"a": "x", "b": 2}),
        ("/b/T/keyword_only?k=4", {"k": 4}),
    ],
)
def test_query_fields_are_converted(client: FlaskClient, url: str,
                                    expected: dict[str, t.Any]) -> None:
    response = client.get(url)
    assert response.status_code == 200, response.data
    assert response.get_json() == expected


@pytest.mark.parametrize(
    ("path", "document", "expected"),
    [
        ("/b/T/integer", {"n": 42}, {"n": 42}),
        ("/b/T/integer", {"n": 3.0}, {"n": 3}),  # JSON has one number type
        ("/b/T/number", {"x": 1}, {"x": 1.0}),
        ("/b/T/flag", {"on": True}, {"on": True}),
        ("/b/T/text", {"s": "5"}, {"s": "5"}),
        ("/b/T/many", {"ids": [1, 2]}, {"ids": [1, 2]}),
        ("/b/T/maybe", {"n": None}, {"n": None}),
        ("/b/T/untyped", {"a": {"deep": [1]}}, {"a": {"deep": [1]}, "b": "default"}),
    ],
)
def test_json_fields_are_converted(client: FlaskClient, path: str, document: t.Any,
                                   expected: dict[str, t.Any]) -> None:
    response = client.post(path, json=document)
    assert response.status_code == 200, response.data
    assert response.get_json() == expected


@pytest.mark.parametrize(
    ("path", "document", "message"),
    [
        ("/b/T/integer", {"n": "42"}, 'expected an integer, got "42"'),
        ("/b/T/integer", {"n": True}, "expected an integer, got true"),
        ("/b/T/number", {"x": "1.5"}, 'expected a number, got "1.5"'),
        ("/b/T/flag", {"on": 1}, "expected true or false, got 1"),
        ("/b/T/flag", {"on": "true"}, 'expected true or false, got "true"'),
        ("/b/T/text", {"s": 5}, "expected a string, got 5"),
        ("/b/T/many", {"ids": [1, "2"]}, 'item 1: expected an integer, got "2"'),
        ("/b/T/many", {"ids": 3}, "expected a list, got 3"),
        ("/b/T/integer", {"n": None}, "expected an integer, got null"),
    ],
)
def test_json_values_must_have_the_parameters_type(client: FlaskClient, path: str,
                                                   document: t.Any, message: str) -> None:
    """One rule for every type: JSON is typed, so a JSON value is never converted."""
    error = assert_error(client.post(path, json=document), 422)
    assert error["fields"] == [{"name": next(iter(document)), "source": "json",
                                "message": message}]


def test_form_fields_are_converted(client: FlaskClient) -> None:
    assert client.post("/b/T/two", data={"a": "1", "b": "x"}).get_json() == {"a": 1, "b": "x"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field", "source"),
    [
        ("GET", "/b/T/integer?n=abc", {}, "n", "query"),
        ("GET", "/b/T/integer?n=1.5", {}, "n", "query"),
        ("POST", "/b/T/integer", {"json": {"n": 1.5}}, "n", "json"),
        ("POST", "/b/T/integer", {"json": {"n": True}}, "n", "json"),
        ("POST", "/b/T/integer", {"json": {"n": None}}, "n", "json"),
        ("GET", "/b/T/number?x=abc", {}, "x", "query"),
        ("POST", "/b/T/number", {"json": {"x": "1,5"}}, "x", "json"),
        ("GET", "/b/T/flag?on=maybe", {}, "on", "query"),
        ("POST", "/b/T/flag", {"json": {"on": 2}}, "on", "json"),
        ("POST", "/b/T/text", {"json": {"s": {"a": 1}}}, "s", "json"),
        ("POST", "/b/T/text", {"json": {"s": [1]}}, "s", "json"),
        ("GET", "/b/T/many?ids=1&ids=x", {}, "ids", "query"),
        ("POST", "/b/T/many", {"json": {"ids": [1, "x"]}}, "ids", "json"),
        ("GET", "/b/T/maybe?n=x", {}, "n", "query"),
        ("POST", "/b/T/upload", {"data": {"doc": "not a file"}}, "doc", "request"),
        ("GET", "/b/T/integer", {}, "n", "request"),
        ("GET", "/b/T/maybe_required", {}, "n", "request"),
        ("GET", "/b/T/untyped", {}, "a", "request"),
        ("GET", "/b/T/keyword_only", {}, "k", "request"),
        ("POST", "/b/T/nothing", {"data": {"surplus": "1"}}, "surplus", "body"),
        ("POST", "/b/T/nothing", {"json": {"surplus": 1}}, "surplus", "body"),
        ("POST", "/b/T/integer?n=1", {"json": {"n": 1, "other": 2}}, "other", "body"),
    ],
)
def test_422_names_the_field(client: FlaskClient, method: str, path: str,
                             kwargs: dict[str, t.Any], field: str, source: str) -> None:
    error = assert_error(client.open(path, method=method, **kwargs), 422,
                         "unprocessable_entity")
    assert {"name": field, "source": source} in [
        {"name": f["name"], "source": f["source"]} for f in error["fields"]
    ]
    assert all(f["message"] for f in error["fields"])


def test_422_lists_every_problem_at_once(client: FlaskClient) -> None:
    error = assert_error(client.post("/b/T/two?a=x", json={"c": 1}), 422)
    assert sorted(f["name"] for f in error["fields"]) == ["a", "b", "c"]


def test_extra_query_fields_are_ignored(client: FlaskClient) -> None:
    assert client.get("/b/T/nothing?_=123&utm_source=x").data == b"nothing"
    assert client.get("/b/T/integer?n=1&cachebust=2").get_json() == {"n": 1}


def test_surplus_body_fields_are_fine_with_params(client: FlaskClient) -> None:
    assert client.post("/b/T/only_params", data={"x": "1"}).data == b"params"


def test_a_method_needing_an_upload_answers_post_only(client: FlaskClient) -> None:
    """A GET cannot carry a file: it is a 405, never a 422 no request could avoid."""
    response = client.get("/b/T/upload?doc=x")
    assert_error(response, 405)
    assert response.headers["Allow"] == "POST"


def test_file_upload_binds_filestorage(client: FlaskClient) -> None:
    response = client.post("/b/T/upload", data={"doc": (io.BytesIO(b"body"), "a.txt")})
    assert response.get_json() == {"name": "a.txt", "body": "body"}
    response = client.post("/b/T/uploads", data={
        "docs": [(io.BytesIO(b"1"), "one.txt"), (io.BytesIO(b"2"), "two.txt")]})
    assert response.get_json() == {"names": ["one.txt", "two.txt"]}


def test_path_segments_are_positional_arguments(client: FlaskClient) -> None:
    assert client.get("/b/T/path/alpha").get_json() == {"first": "alpha", "second": "none"}
    assert client.get("/b/T/path/alpha/beta").get_json() == {"first": "alpha",
                                                             "second": "beta"}
    assert client.get("/b/T/star/a/b/c").get_json() == {"first": "a", "rest": ["b", "c"]}
    assert client.get("/b/T/path?first=q").get_json() == {"first": "q", "second": "none"}


def test_path_segment_wins_over_a_field_of_the_same_name(client: FlaskClient) -> None:
    assert client.get("/b/T/path/seg?first=q").get_json() == {"first": "seg",
                                                              "second": "none"}


@pytest.mark.parametrize(
    "path",
    ["/b/T/nothing/extra", "/b/T/only_params/extra", "/b/T/path/a/b/c", "/b/T/keyword_only/x"],
)
def test_surplus_path_segments_are_404(client: FlaskClient, path: str) -> None:
    assert_error(client.get(path), 404, "not_found")


def test_kwargs_never_take_params_or_a_path_bound_name(client: FlaskClient) -> None:
    body = client.get("/b/T/params_and_rest?params=EVIL&x=1").get_json()
    assert body == {"params": {"params": "EVIL", "x": "1"}, "rest": {"x": "1"}}
    body = client.get("/b/T/path_and_rest/seg/more?a=field&x=1").get_json()
    assert body == {"a": "seg", "more": ["more"], "rest": {"x": "1"}}


def test_numeric_path_segment_fills_a_typed_parameter(client: FlaskClient) -> None:
    assert client.get("/b/T/integer/42").get_json() == {"n": 42}


def test_typed_path_segment_that_does_not_convert_is_422(client: FlaskClient) -> None:
    error = assert_error(client.get("/b/T/integer/abc"), 422)
    assert error["fields"][0]["source"] == "path"


# --- Units ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "raw", "expected"),
    [
        (int, ["7"], 7),
        (float, [" 2.5 "], 2.5),
        (bool, ["YES"], True),
        (str, ["x"], "x"),
        (list[int], ["1", "2"], [1, 2]),
        (list, ["a", "b"], ["a", "b"]),
        (t.Optional[int], [""], None),  # noqa: UP045 - the typing spelling is supported too
        (int | None, ["3"], 3),
        (t.Any, ["kept"], "kept"),
    ],
)
def test_converter_from_query(annotation: t.Any, raw: list[str], expected: t.Any) -> None:
    assert converter_for(annotation)("query", raw) == expected


@pytest.mark.parametrize(
    ("annotation", "raw"),
    [(int, ["x"]), (float, ["x"]), (bool, ["2"]), (list[int], ["1", "y"])],
)
def test_converter_refuses(annotation: t.Any, raw: list[str]) -> None:
    with pytest.raises(ConversionError):
        converter_for(annotation)("query", raw)


def test_binder_skips_self_and_the_task_handle() -> None:
    def method(self: t.Any, task: t.Any, n: int) -> None: ...

    binder = Binder(method, skip=2)
    assert [slot.name for slot in binder.slots] == ["n"]
    assert binder.max_path_args == 1


def test_binder_with_unresolvable_annotation_falls_back() -> None:
    def method(self: t.Any, n: UndefinedName) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    assert [slot.name for slot in Binder(method).slots] == ["n"]


# --- Bodies that hold no fields ----------------------------------------------------


@pytest.mark.parametrize(("body", "kind"), [
    ("[1, 2]", "an array"), ('"text"', "a string"), ("5", "a number"),
    ("true", "true or false"), ("null", "null"),
])
def test_a_json_body_that_is_no_object_is_a_422(client: FlaskClient, body: str,
                                                kind: str) -> None:
    """The defaults never answer for a body that was ignored."""
    error = assert_error(client.post("/b/T/maybe", data=body,
                                     content_type="application/json"), 422)
    assert error["fields"] == [{"name": "", "source": "json",
                                "message": "expected a JSON object of fields, got " + kind}]
    assert_error(client.post("/b/T/nothing", data=body, content_type="application/json"), 422)


def test_a_method_taking_only_params_gets_any_json_body(make_app: t.Callable[..., Flask],
                                                        tree: ControllerTree) -> None:
    tree.write("p.py", """
        class P:
            def raw(self, params=None):
                return {"json": params.json, "fields": dict(params)}
    """)
    client = make_app().test_client()
    assert client.post("/p/P/raw", json=[1, 2]).get_json() == {"json": [1, 2], "fields": {}}
    assert client.post("/p/P/raw", json="text").get_json() == {"json": "text", "fields": {}}


def test_a_body_of_another_media_type_is_a_415(client: FlaskClient,
                                               make_app: t.Callable[..., Flask],
                                               tree: ControllerTree) -> None:
    for content_type in ["text/plain", "application/xml", ""]:
        assert_error(client.post("/b/T/maybe", data="n=3", content_type=content_type), 415,
                     "unsupported_media_type")
    tree.write("p.py", """
        from flask import request

        class P:
            def raw(self, params=None):
                return request.get_data(as_text=True)
    """)
    # A method whose only field is params reads the body itself.
    assert make_app().test_client().post("/p/P/raw", data="<x/>",
                                         content_type="application/xml").data == b"<x/>"


@pytest.mark.parametrize("body", [
    b"--b\r\n[]--b--\r\n",                                              # no part headers
    b'--b\r\nContent-Disposition: form-data; name="n\\"\r\n\r\n1\r\n--b--\r\n',  # no name
    # Werkzeug would read "ab", an HTML form encoder meant "a\b".
    b'--b\r\nContent-Disposition: form-data; name="a\\b"\r\n\r\n1\r\n--b--\r\n',
])
def test_a_malformed_multipart_body_is_a_400(client: FlaskClient, body: bytes) -> None:
    """Werkzeug reads these as no fields, a field named None or another name than the
    one sent: never a 200 or a 500."""
    assert_error(client.post("/b/T/nothing", data=body,
                             content_type="multipart/form-data; boundary=b"), 400)
    assert_error(client.post("/b/T/only_params", data=body,
                             content_type="multipart/form-data; boundary=b"), 400)


def test_a_json_string_holding_a_lone_surrogate_is_a_400(client: FlaskClient) -> None:
    """It is no text: the method could not even write it into its answer."""
    for body in ['{"s": "\\ud800"}', '{"\\udc00": "x"}', '["\\uDBFF"]']:
        assert_error(client.post("/b/T/only_params", data=body,
                                 content_type="application/json"), 400)
    # A pair is one character, and fine.
    assert client.post("/b/T/text", data='{"s": "\\ud83d\\ude00"}',
                       content_type="application/json").get_json() == {"s": "\U0001f600"}
