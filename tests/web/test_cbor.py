"""kernel/web/cbor.py: the pre-scan, CBOR bodies bound as JSON ones, Accept: application/cbor."""

from __future__ import annotations

import io
import json
import typing as t
from pathlib import Path

import cbor2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from kernel.core.errors import BadRequestBody
from kernel.core.errors import JsonTooDeep
from kernel.core.errors import JsonTooLarge
from kernel.core.errors import UnsupportedCbor
from kernel.web.cbor import _AS_JSON
from kernel.web.cbor import BIGNUM_MAX_BYTES
from kernel.web.cbor import decode_cbor
from kernel.web.cbor import scan_cbor
from tests.support.catalogs import ControllerTree
from tests.support.servers import uwsgi_server

CONTROLLER = """
class C:
    def fields(self, n: int, name: str = "", tags: list[str] | None = None):
        return {"n": n, "name": name, "tags": tags}

    def anything(self, params):
        return {"json": None if params is None else params.json}

    def text(self):
        return "<p>html</p>"
"""

CBOR = {"Content-Type": "application/cbor"}
ACCEPT = {"Accept": "application/cbor"}


def decode(data: bytes, depth: int = 64, containers: int = 100_000) -> t.Any:
    return decode_cbor(data, depth, containers)


def head(major: int, arg: int) -> bytes:
    """A CBOR item header with an 8-byte argument (any length may be declared)."""
    return bytes([major << 5 | 27]) + arg.to_bytes(8, "big")


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, False, "x"], "b": {"c": ""}},
    [], {}, 0, -1, 2**64 - 1, -2**64, 2**200, -2**200, 1.5, "text", None,
])
def test_json_values_come_back_as_sent(value: t.Any) -> None:
    assert decode(cbor2.dumps(value)) == value


@pytest.mark.parametrize(("data", "value"), [
    # Indefinite lengths: a map, an array, a text in two chunks.
    (b"\xbf\x61a\x9f\x01\x02\xff\x61b\x7f\x61x\x61y\xff\xff", {"a": [1, 2], "b": "xy"}),
    # Tag 0: the RFC 3339 text itself; tag 1: the seconds themselves.
    (b"\xc0\x74" + b"2013-03-21T20:04:00Z", "2013-03-21T20:04:00Z"),
    (b"\xc1\x1a\x51\x4b\x67\xb0", 1363896240),
    (b"\xc1\xf9\x3c\x00", 1.0),
    # Tag 4: a float, as a JSON number with a fraction; huge exponents as json.loads does.
    (cbor2.dumps(cbor2.CBORTag(4, [-2, 27315])), 273.15),
    (cbor2.dumps(cbor2.CBORTag(4, [2**64 - 1, 1])), float("inf")),
    (cbor2.dumps(cbor2.CBORTag(4, [-2**64, 1])), 0.0),
    (cbor2.dumps(cbor2.CBORTag(4, [-2, 2**100])), 2**100 / 100),
])
def test_allowed_forms_bind_as_json_would(data: bytes, value: t.Any) -> None:
    assert decode(data) == value


def test_a_bignum_up_to_its_limit_is_an_int_and_past_it_is_refused() -> None:
    biggest = b"\xc2\x59" + BIGNUM_MAX_BYTES.to_bytes(2, "big") + b"\xff" * BIGNUM_MAX_BYTES
    assert decode(biggest) == 256**BIGNUM_MAX_BYTES - 1
    str(decode(biggest))  # it can be sent back as text (JSON)
    over = b"\xc2\x59" + (BIGNUM_MAX_BYTES + 1).to_bytes(2, "big") + b"\x01" * 1786
    with pytest.raises(UnsupportedCbor):
        decode(over)


@pytest.mark.parametrize(("data", "error"), [
    (b"\x01\x02", BadRequestBody),  # bytes after the item
    (b"\x82\x01", BadRequestBody),  # truncated
    (b"\x9f\x01", BadRequestBody),  # indefinite array without its break
    (b"\xff", BadRequestBody),  # a break alone
    (b"\x1c", BadRequestBody),  # reserved header
    (b"\x3f", BadRequestBody),  # an indefinite integer
    (b"\x62\xff\xfe", BadRequestBody),  # text that is not UTF-8
    (b"\x63\xed\xa0\x80", BadRequestBody),  # a lone surrogate
    (b"\x7f\x61a\x41b\xff", BadRequestBody),  # a byte chunk in a text
    (b"\x7f\x7f\xff\xff", BadRequestBody),  # an indefinite chunk
    (b"\xbf\x61a\xff", BadRequestBody),  # a key without its value
    (b"\xc1\x1b" + (2**63).to_bytes(8, "big"), None),  # seconds: bound as the number
    (head(2, 2**63) + b"ab", UnsupportedCbor),  # bytes are refused before their length
    (head(3, 2**63) + b"ab", BadRequestBody),
    (head(4, 2**63) + b"\x01", BadRequestBody),
    (head(5, 2**62) + b"\x01", BadRequestBody),
    (cbor2.dumps(cbor2.CBORTag(99, 1)), UnsupportedCbor),
    (cbor2.dumps(cbor2.CBORTag(5, [2**20, 1])), UnsupportedCbor),  # a bigfloat
    (b"\xd8\x1c\x81\xd8\x1d\x00", UnsupportedCbor),  # a shared value: a cycle
    (b"\xd9\x01\x02\x80", UnsupportedCbor),  # a set
    (b"\xc2\xc2\x41\x01", UnsupportedCbor),  # a tag on a tag
    (b"\xc0\x01", UnsupportedCbor),  # a date/time that is not text
    (b"\xc4\x82\x21\x61a", UnsupportedCbor),  # a decimal fraction of text
    (b"\x42ab", UnsupportedCbor),  # bytes
    (b"\xf7", UnsupportedCbor),  # undefined
    (b"\xf8\x63", UnsupportedCbor),  # simple(99)
    (b"\xa1\x01\x02", UnsupportedCbor),  # an integer key
    (b"\xa1\x80\x02", UnsupportedCbor),  # an array key
    (b"\x81" * 65 + b"\x01", JsonTooDeep),
    (b"\x9f" * 100_000 + b"\xff" * 100_000, JsonTooDeep),
    (b"\x99\x00\x03\x80\x80\x80", JsonTooLarge),
], ids=lambda value: value[:12].hex() if isinstance(value, bytes) else None)
def test_malformed_and_unsupported_cbor_is_refused(data: bytes, error: type | None) -> None:
    containers = 2 if error is JsonTooLarge else 100_000
    if error is None:
        decode(data, containers=containers)
        return
    with pytest.raises(error):
        decode(data, containers=containers)


def test_the_limits_are_exact() -> None:
    assert decode(b"\x81" * 64 + b"\x01") is not None
    assert scan_cbor(b"\x82\x80\x80", 64, 3).containers == 3


def test_the_scan_reads_each_byte_once_at_most() -> None:
    for data in (cbor2.dumps(list(range(5000))), b"\x9f" * 64 + b"\xff" * 64,
                 cbor2.dumps({str(i): [i, "x" * i] for i in range(300)})):
        assert scan_cbor(data, 64, 100_000).items <= len(data)


@pytest.fixture
def app(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> Flask:
    tree.write("cb.py", CONTROLLER)
    return make_app(MAX_FIELDS=3)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, path: str, value: t.Any, **headers: str) -> t.Any:
    return client.post(path, data=value if isinstance(value, bytes) else cbor2.dumps(value),
                       headers={**CBOR, **headers})


def test_map_keys_are_fields_and_the_answer_is_json_by_default(client: FlaskClient) -> None:
    response = post(client, "/cb/C/fields", {"n": 3, "tags": ["a", "b"]})
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == {"n": 3, "name": "", "tags": ["a", "b"]}


def test_params_json_holds_the_whole_value(client: FlaskClient) -> None:
    response = post(client, "/cb/C/anything", [1, {"a": None}], **ACCEPT)
    assert response.mimetype == "application/cbor"
    assert cbor2.loads(response.data) == {"json": [1, {"a": None}]}


def test_a_cbor_value_of_the_wrong_type_is_a_422_as_in_json(client: FlaskClient) -> None:
    response = post(client, "/cb/C/fields", {"n": "three"})
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"][0]["source"] == "json"
    assert post(client, "/cb/C/fields", [1]).status_code == 422


def test_an_empty_cbor_body_is_no_body(client: FlaskClient) -> None:
    assert client.post("/cb/C/fields", data=b"", headers=CBOR).status_code == 422


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"\x01\x02", 400, "bad_request"),
    (b"\xd8\x63\x01", 400, "unsupported_cbor"),
    (b"\x81" * 100 + b"\x01", 400, "json_too_deep"),
    (cbor2.dumps({"a": 1, "b": 2, "c": 3, "d": 4}), 413, "too_many_fields"),
])
def test_refusals_come_in_the_envelope_in_cbor_when_asked(client: FlaskClient, body: bytes,
                                                          status: int, code: str) -> None:
    as_json = post(client, "/cb/C/fields", body)
    assert as_json.status_code == status and as_json.get_json()["error"]["code"] == code
    as_cbor = post(client, "/cb/C/fields", body, **ACCEPT)
    assert as_cbor.status_code == status and as_cbor.mimetype == "application/cbor"
    assert cbor2.loads(as_cbor.data) == as_json.get_json()


@pytest.mark.parametrize(("accept", "mimetype"), [
    ("application/cbor", "application/cbor"),
    ("application/cbor, */*;q=0.1", "application/cbor"),
    ("application/json;q=0.5, application/cbor", "application/cbor"),
    ("*/*", "application/json"),
    ("", "application/json"),
    ("application/json, application/cbor", "application/json"),
    ("application/cbor;q=0.2, application/json", "application/json"),
])
def test_accept_picks_the_answer(client: FlaskClient, accept: str, mimetype: str) -> None:
    headers = {"Accept": accept} if accept else {}
    response = client.get("/cb/C/fields?n=1", headers=headers)
    assert response.mimetype == mimetype
    # Either encoding says it depends on Accept, so a shared cache keeps them apart.
    assert "Accept" in response.headers.getlist("Vary")


def test_html_stays_html_and_a_404_follows_accept(client: FlaskClient) -> None:
    assert client.get("/cb/C/text", headers=ACCEPT).mimetype == "text/html"
    missing = client.get("/cb/C/nothing", headers=ACCEPT)
    assert missing.status_code == 404 and cbor2.loads(missing.data)["error"]["status"] == 404
    assert "Accept" in missing.headers.getlist("Vary")


def test_a_cbor_body_to_a_method_taking_no_fields_is_no_415(client: FlaskClient) -> None:
    assert post(client, "/cb/C/text", {}).status_code in (200, 422)
    assert client.post("/cb/C/fields", data=b"x",
                       headers={"Content-Type": "application/x-cbor"}).status_code == 415


ROUND_TRIP = """
from flask import Response


class R:
    def as_dict(self, params):
        return {"got": params.json}

    def as_list(self, params):
        return [params.json]

    def as_int(self, n: int):
        return n * 2

    def as_float(self, x: float):
        return x / 2

    def as_bool(self, params):
        return params.json["flag"]

    def as_none(self, params):
        return None

    def as_str(self, params):
        return "<b>html</b>"

    def as_bytes(self, params):
        return bytes(range(4))

    def as_stream(self, params):
        yield "a"
        yield "b"

    def as_pair(self, params):
        return {"created": params.json}, 201

    def as_triple(self, params):
        return {"created": params.json}, 201, {"X-Made": "yes"}

    def as_response(self, params):
        return Response("plain", mimetype="text/plain")
"""

#: Route, CBOR body sent, status, media type and decoded answer expected.
TRIPS: list[tuple[str, t.Any, int, str, t.Any]] = [
    ("as_dict", {"a": [1, 2**70, -1.5, None, "é"]}, 200, "application/cbor",
     {"got": {"a": [1, 2**70, -1.5, None, "é"]}}),
    ("as_list", [True, {"k": "v"}], 200, "application/cbor", [[True, {"k": "v"}]]),
    ("as_int", {"n": 21}, 200, "application/cbor", 42),
    ("as_float", {"x": 3.0}, 200, "application/cbor", 1.5),
    ("as_bool", {"flag": False}, 200, "application/cbor", False),
    ("as_none", {}, 200, "application/cbor", None),
    ("as_str", {}, 200, "text/html", b"<b>html</b>"),
    ("as_bytes", {}, 200, "application/octet-stream", bytes(range(4))),
    ("as_stream", {}, 200, "text/html", b"ab"),
    ("as_pair", {"id": 7}, 201, "application/cbor", {"created": {"id": 7}}),
    ("as_triple", {"id": 8}, 201, "application/cbor", {"created": {"id": 8}}),
    ("as_response", {}, 200, "text/plain", b"plain"),
]


@pytest.mark.uwsgi
def test_every_return_type_round_trips_through_uwsgi(tree: ControllerTree,
                                                     tmp_path: Path) -> None:
    tree.write("rt.py", ROUND_TRIP)
    with uwsgi_server(tmp_path, {"KERNKOA_CATALOG": str(tree.root)}) as server:
        for route, sent, status, mimetype, expected in TRIPS:
            for accept in ("application/cbor", "*/*"):
                code, headers, body = server.request(
                    f"/rt/R/{route}", "POST", cbor2.dumps(sent),
                    {**CBOR, "Accept": accept})
                where = f"{route} Accept: {accept}"
                assert code == status, (where, body)
                shown = headers["Content-Type"].split(";")[0]
                if mimetype != "application/cbor":
                    assert (shown, body) == (mimetype, expected), where
                elif accept == "*/*":  # the same value, as JSON
                    assert shown == "application/json", where
                    assert json.loads(body) == expected, where
                else:
                    assert shown == mimetype and cbor2.loads(body) == expected, where
                if route == "as_triple":
                    assert headers["X-Made"] == "yes", where
        code, headers, body = server.request("/rt/R/as_dict", "POST", b"\xd8\x63\x01",
                                             {**CBOR, **ACCEPT})
        assert code == 400 and headers["Content-Type"] == "application/cbor"
        assert cbor2.loads(body)["error"]["code"] == "unsupported_cbor"


#: Heads and short items, for bodies that walk every path of the scan.
PIECES = [b"\x80", b"\x81", b"\x82", b"\x9f", b"\xa1", b"\xbf", b"\xff", b"\x61a", b"\x60",
          b"\x01", b"\x18\x30", b"\x38\x01", b"\xf4", b"\xf6", b"\xf7", b"\xf9\x3c\x00",
          b"\xc0", b"\xc1", b"\xc2", b"\xc4", b"\x41\x01", b"\x7f", b"\x5f", b"\x78\x02ab"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join))
def test_what_the_scan_accepts_cbor2_decodes_whole(data: bytes) -> None:
    try:
        shape = scan_cbor(data, 64, 100_000)
    except BadRequestBody:
        return
    assert shape.items <= len(data)
    stream = io.BytesIO(data)
    cbor2.CBORDecoder(stream, semantic_decoders=_AS_JSON).decode()
    assert stream.tell() == len(data)


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30)
    | st.builds(cbor2.CBORTag, st.just(1), st.integers(0, 2**40))
    | st.builds(cbor2.CBORTag, st.just(0), st.just("2013-03-21T20:04:00Z")),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=6),
    max_leaves=40))
def test_every_json_like_value_passes_the_scan(value: t.Any) -> None:
    assert scan_cbor(cbor2.dumps(value), 64, 100_000).items <= len(cbor2.dumps(value))
