"""Limits: fields, JSON depth, body size and path, each a setting with the JSON envelope."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from kernel.web.jsondepth import SPLIT_CHUNK
from kernel.web.jsondepth import json_depth
from kernel.web.jsondepth import json_depth_exceeds
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

ECHO = """
class E:
    def any(self, params):
        return {"n": len(params or {})}

    def deep(self, params):
        return {"ok": True}
"""


@pytest.fixture
def client(tree: ControllerTree, make_app):  # type: ignore[no-untyped-def]
    tree.write("echo.py", ECHO)
    return make_app(MAX_FIELDS=10, MAX_JSON_DEPTH=5, MAX_CONTENT_LENGTH=4096).test_client()


def test_fields_up_to_the_limit_pass(client) -> None:  # type: ignore[no-untyped-def]
    query = "&".join(f"f{i}=1" for i in range(10))
    assert client.get(f"/echo/E/any?{query}").get_json() == {"n": 10}
    assert client.post("/echo/E/any", data={f"f{i}": "1" for i in range(10)}).status_code == 200
    assert client.post("/echo/E/any", json={f"f{i}": 1 for i in range(10)}).status_code == 200


def test_too_many_query_fields(client) -> None:  # type: ignore[no-untyped-def]
    query = "&".join(f"f{i}=1" for i in range(11))
    assert_error(client.get(f"/echo/E/any?{query}"), 413, "too_many_fields")
    # Every route, not only controllers.
    assert_error(client.get(f"/status/x?{query}"), 413, "too_many_fields")


def test_too_many_urlencoded_fields(client) -> None:  # type: ignore[no-untyped-def]
    body = "&".join(f"f{i}=1" for i in range(11))
    response = client.post("/echo/E/any", data=body,
                           content_type="application/x-www-form-urlencoded")
    assert_error(response, 413, "too_many_fields")


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_form_text_past_max_form_memory_size(tree: ControllerTree, make_app,  # type: ignore[no-untyped-def]
                                             kind: str) -> None:
    tree.write("echo.py", ECHO)
    client = make_app(MAX_FORM_MEMORY_SIZE=1000).test_client()
    fits, too_long = "%41" * 200, "%41" * 400  # 600 and 1,200 bytes of escapes

    def send(value: str):  # type: ignore[no-untyped-def]
        if kind == "urlencoded":
            return client.post("/echo/E/any", data=f"a={value}",
                               content_type="application/x-www-form-urlencoded")
        return client.post("/echo/E/any", data={"a": value}, content_type="multipart/form-data")

    assert send(fits).get_json() == {"n": 1}
    error = assert_error(send(too_long), 413)
    if kind == "urlencoded":
        assert error["code"] == "form_too_large"


def test_json_containers_past_max_json_containers(tree: ControllerTree, make_app) -> None:  # type: ignore[no-untyped-def]
    tree.write("echo.py", ECHO)
    client = make_app(MAX_JSON_CONTAINERS=100).test_client()
    fits = b"[" + b"[]," * 98 + b"[]]"  # 100 arrays
    assert client.post("/echo/E/any", data=fits, content_type="application/json"
                       ).status_code == 200
    assert_error(client.post("/echo/E/any", data=b"[" + fits + b"]",
                             content_type="application/json"), 413, "json_too_large")
    # Brackets inside strings are no containers.
    text = json.dumps({"a": "[]{}" * 500}).encode()
    assert client.post("/echo/E/any", data=text, content_type="application/json"
                       ).get_json() == {"n": 1}


def test_too_many_multipart_parts(client) -> None:  # type: ignore[no-untyped-def]
    # Plain fields only: Werkzeug leaves the spooled files of parts it had
    # already read unclosed when it stops (a ResourceWarning at collection).
    data = {f"f{i}": "1" for i in range(11)}
    response = client.post("/echo/E/any", data=data, content_type="multipart/form-data")
    assert_error(response, 413)


def test_too_many_json_fields(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/echo/E/any", json={f"f{i}": 1 for i in range(11)})
    assert_error(response, 413, "too_many_fields")


def test_json_depth(client) -> None:  # type: ignore[no-untyped-def]
    ok = client.post("/echo/E/deep", data="[[[[[1]]]]]", content_type="application/json")
    assert ok.status_code == 200
    deep = client.post("/echo/E/deep", data="[[[[[[1]]]]]]", content_type="application/json")
    assert_error(deep, 400, "json_too_deep")
    # Brackets inside strings do not count.
    text = json.dumps({"a": "[[[[[[[[[[{{{{{{{{\\\"[[[["})
    assert client.post("/echo/E/deep", data=text,
                       content_type="application/json").status_code == 200


def test_deep_json_never_recurses(tree: ControllerTree, make_app) -> None:  # type: ignore[no-untyped-def]
    tree.write("echo.py", ECHO)
    client = make_app(MAX_JSON_DEPTH=100_000_000, MAX_JSON_CONTAINERS=100_000_000).test_client()
    # Far deeper than Python's recursion limit: still an envelope, never a crash.
    body = "[" * 200_000 + "]" * 200_000
    response = client.post("/echo/E/deep", data=body, content_type="application/json")
    assert_error(response, 400)


def test_body_too_large(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/echo/E/any", data=b"x" * 5000, content_type="text/plain")
    assert_error(response, 413)
    response = client.post("/echo/E/any", json={"a": "x" * 5000})
    assert_error(response, 413)


def test_path_limits_are_404_envelopes(tree: ControllerTree, make_app) -> None:  # type: ignore[no-untyped-def]
    tree.write("echo.py", ECHO)
    client = make_app(MAX_PATH_LENGTH=50, MAX_PATH_DEPTH=4).test_client()
    assert client.get("/echo/E/any").status_code == 200
    assert_error(client.get("/echo/E/any/" + "a" * 60), 404)
    assert_error(client.get("/echo/E/any/a/b"), 404)


@pytest.mark.parametrize(("text", "limit", "exceeds"), [
    (b"{}", 0, True), (b"{}", 1, False), (b'{"a": [1, {"b": []}]}', 4, False),
    (b'{"a": [1, {"b": []}]}', 3, True), (b'"[[[[["', 1, False), (b'["\\\\", [[]]]', 2, True),
    (b'["\\"]]]]", [[]]]', 3, False),
])
def test_json_depth_scanner(text: bytes, limit: int, exceeds: bool) -> None:
    assert json_depth_exceeds(text, limit) is exceeds


def reference_depth(data: bytes) -> int:
    """The depth ``json_depth`` must find, one byte at a time: a backslash escapes
    the byte after it, quotes open and close strings, brackets outside strings
    count."""
    depth = deepest = 0
    inside = escaped = False
    for byte in data:
        if escaped:
            escaped = False
        elif byte == ord("\\"):
            escaped = True
        elif byte == ord('"'):
            inside = not inside
        elif not inside and byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif not inside and byte in b"]}":
            depth -= 1
    return deepest


def nesting(value: object) -> int:
    """How deeply a parsed JSON value nests arrays and objects."""
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


#: Bytes that matter to the scanner, often, among a few that do not.
SCANNER_BYTES = st.lists(st.sampled_from([b"\\", b'"', b"[", b"]", b"{", b"}", b"a", b" ",
                                          b"\\\\", b'\\"', b'""']), max_size=60).map(b"".join)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(st.sampled_from('ab"\\[]{}'), max_size=6),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(st.sampled_from('k"\\[}'), max_size=3), children, max_size=3),
    max_leaves=20,
)


@settings(max_examples=600, deadline=None)
@given(SCANNER_BYTES)
def test_json_depth_matches_a_byte_by_byte_reading(data: bytes) -> None:
    assert json_depth(data) == reference_depth(data)
    for limit in range(4):
        assert json_depth_exceeds(data, limit) is (reference_depth(data) > limit)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_json_depth_is_exact_on_json(value: object, spaced: bool) -> None:
    text = json.dumps(value, indent=1 if spaced else None).encode()
    assert json_depth(text) == nesting(value)
    # Every prefix too: json.loads may recurse that deep before it finds the end missing.
    for cut in range(0, len(text), max(1, len(text) // 7)):
        assert json_depth(text[:cut]) == reference_depth(text[:cut])


def test_json_depth_splits_in_chunks() -> None:
    # Strings across chunk borders: a quote on each side of one, an odd count in each.
    body = b"[" + b'"' + b"[" * SPLIT_CHUNK + b'",' + b"[" * 3 + b'"]]]' + b"]" * 3 + b"]"
    assert json_depth(body) == reference_depth(body) == 4
