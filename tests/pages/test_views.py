"""/_kernkoa/endpoints, /info, /openapi.json and /docs on a catalog written by the test."""

from __future__ import annotations

import json
import os
import subprocess
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from kernel.catalog.conversion import BOOL_TEXT_SCHEMA
from kernel.catalog.listing import LOAD_ERROR_HIDDEN
from tests.support.auth import KEY
from tests.support.auth import bearer
from tests.support.auth import token
from tests.support.catalogs import ControllerTree
from tests.support.processes import BIN

CART = '''
    from typing import Optional

    from kernkoa import methods


    class Cart:
        """The shopping cart."""

        def add(self, item: int, qty: int = 1, note: Optional[str] = None,
                tags: list[str] = []):
            """Add an item to the cart.

            The quantity defaults to one.
            """
            return {"item": item, "qty": qty, "note": note, "tags": tags}

        def show(self, params):
            return "cart"

        def anything(self, *rest, **extra):
            """Takes whatever comes."""
            return extra

        def report_celery(self, task, weeks: int = 3):
            """Build a long report."""

        @methods("PUT", "DELETE")
        def flag(self, on: bool, ratio: float | None = None):
            return on

        def _hidden(self):
            return "never listed"


    class _Private:
        def secret(self):
            return "never listed"
'''


@pytest.fixture
def catalog(tree: ControllerTree) -> ControllerTree:
    """A catalog with a cart, a top-level module and a broken file."""
    tree.write("shop/cart.py", CART)
    tree.write("hello.py", '''
        class Hello:
            def index(self, name: str = "world"):
                """Greets."""
                return "hello " + name
    ''')
    tree.write("broken.py", 'raise ValueError("the file is broken on purpose")\n')
    return tree


def _client(make_app: t.Callable[..., Flask], **settings: t.Any) -> FlaskClient:
    return make_app(**settings).test_client()


def _by_url(body: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    return {route["url"]: route for route in body["routes"]}


def test_endpoints_list_every_routable_method(catalog: ControllerTree,
                                              make_app: t.Callable[..., Flask]) -> None:
    response = _client(make_app).get("/_kernkoa/endpoints")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    routes = _by_url(response.get_json())
    assert sorted(routes) == [
        "/hello/Hello/index",
        "/shop/cart/Cart/add",
        "/shop/cart/Cart/anything",
        "/shop/cart/Cart/flag",
        "/shop/cart/Cart/report_celery",
        "/shop/cart/Cart/show",
    ]
    add = routes["/shop/cart/Cart/add"]
    assert add["short_urls"] == []
    assert routes["/hello/Hello/index"]["short_urls"] == ["/hello/Hello"]
    assert add["file"] == "controller/shop/cart.py"
    assert (add["class"], add["method"], add["kind"]) == ("Cart", "add", "sync")
    assert add["summary"] == "Add an item to the cart."
    assert add["doc"] == "Add an item to the cart.\n\nThe quantity defaults to one."
    assert add["http_methods"] == ["GET", "HEAD", "POST"]
    assert add["folder"] == "/shop"
    assert len(add["version"]["hash"]) == 12 and add["version"]["size"] > 0
    params = {p["name"]: p for p in add["parameters"]}
    assert list(params) == ["item", "qty", "note", "tags"]
    item = params["item"]
    assert (item["annotation"], item["required"], item["has_default"], item["source"]) == (
        "int", True, False, "field")
    assert (params["qty"]["default"], params["qty"]["required"]) == (1, False)
    assert params["note"]["annotation"] == "str | None"
    assert params["tags"]["annotation"] == "list[str]" and params["tags"]["many"]


def test_parameter_sources_and_http_methods(catalog: ControllerTree,
                                            make_app: t.Callable[..., Flask]) -> None:
    routes = _by_url(_client(make_app).get("/_kernkoa/endpoints").get_json())
    sources = {p["name"]: p["source"] for p in routes["/shop/cart/Cart/anything"]["parameters"]}
    assert sources == {"rest": "path", "extra": "kwargs"}
    assert routes["/shop/cart/Cart/show"]["parameters"][0]["source"] == "params"
    task = routes["/shop/cart/Cart/report_celery"]
    # The task handle is the kernel's, never a request field.
    assert [p["name"] for p in task["parameters"]] == ["weeks"]
    assert (task["kind"], task["http_methods"]) == ("celery", ["POST"])
    assert routes["/shop/cart/Cart/flag"]["http_methods"] == ["DELETE", "PUT"]


def test_broken_file_is_listed_with_its_error_in_debug_only(
        catalog: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    body = _client(make_app).get("/_kernkoa/endpoints").get_json()
    assert body["broken"] == [{
        "file": "controller/broken.py",
        "error": LOAD_ERROR_HIDDEN,
        "version": body["broken"][0]["version"],
    }]
    debug = _client(make_app, DEBUG=True).get("/_kernkoa/endpoints").get_json()
    assert debug["broken"][0]["error"] == "ValueError: the file is broken on purpose"
    assert "Traceback" in debug["broken"][0]["traceback"]


def test_a_load_error_message_is_never_listed_outside_debug(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    # An import error's message may quote what the file holds, a password among it.
    tree.write("shop/db.py", 'raise ConnectionError("login failed for password=hunter2")\n')
    tree.write("shop/ok.py", "class Ok:\n    def index(self):\n        return 1\n")
    client = _client(make_app)
    for page in ("endpoints", "openapi.json", "docs", "endpoints/shop/db/X/y", "info"):
        response = client.get(f"/_kernkoa/{page}")
        assert b"hunter2" not in response.data, page
        assert b"ConnectionError" not in response.data, page
    assert client.get("/_kernkoa/endpoints/shop/db/X/y").get_json()["error"]["message"] == (
        "controller/shop/db.py failed to load.")
    assert "shop/db.py" in client.get("/_kernkoa/docs").data.decode()
    debug = _client(make_app, DEBUG=True)
    for page in ("endpoints", "openapi.json", "docs", "endpoints/shop/db/X/y"):
        assert b"hunter2" in debug.get(f"/_kernkoa/{page}").data, page


def test_one_endpoint(catalog: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    client = _client(make_app)
    one = client.get("/_kernkoa/endpoints/shop/cart/Cart/add")
    assert one.status_code == 200
    assert one.get_json()["summary"] == "Add an item to the cart."
    # A URL the router completes ("index") names the same route.
    assert client.get("/_kernkoa/endpoints/hello/Hello").get_json()["url"] == "/hello/Hello/index"
    for unknown in ("shop/cart/Cart/nope", "shop/cart/Cart/_hidden", "shop/cart/_Private/secret",
                    "nowhere/X/y"):
        response = client.get(f"/_kernkoa/endpoints/{unknown}")
        assert response.status_code == 404, unknown
        assert response.get_json()["error"]["code"] == "not_found"
    broken = client.get("/_kernkoa/endpoints/broken/Any/thing")
    assert broken.status_code == 500
    assert broken.get_json()["error"]["message"] == "controller/broken.py failed to load."


def test_listing_follows_edits(catalog: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    client = _client(make_app)
    assert client.get("/_kernkoa/endpoints/hello/Hello/bye").status_code == 404
    catalog.write("hello.py", '''
        class Hello:
            def bye(self):
                """Waves."""
                return "bye"
    ''')
    assert client.get("/_kernkoa/endpoints/hello/Hello/bye").get_json()["summary"] == "Waves."


def test_info(catalog: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    body = _client(make_app).get("/_kernkoa/info").get_json()
    assert body["version"] == "0.1.0"
    assert body["libraries"]["Flask"] == "3.1.3"
    assert body["reload"] is True
    assert body["features"]["pages"] is True
    assert body["python"]["version"].count(".") == 2
    assert body["broker"] == body["result_backend"] == {"kind": "embedded"}


def test_info_tells_paths_and_addresses_to_authenticated_callers_only(
        catalog: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    app = make_app(BROKER_URL="redis://:pw@cache.internal:6379/1", ADDONS=["jwt_auth"],
                   HMACKEY=KEY)
    client = app.test_client()
    anonymous = client.get("/_kernkoa/info")
    assert anonymous.status_code == 200
    body = anonymous.get_json()
    assert body["broker"] == body["result_backend"] == {"kind": "redis"}
    assert "catalog" not in body
    for secret in (str(catalog.root).encode(), b"cache.internal", b"6379"):
        assert secret not in anonymous.data
        assert secret not in client.get("/_kernkoa/docs").data
    signed_in = client.get("/_kernkoa/info", headers=bearer(token(sub="ops"))).get_json()
    assert signed_in["broker"] == signed_in["result_backend"] == {
        "kind": "redis", "host": "cache.internal", "port": 6379, "path": "/1"}
    assert signed_in["catalog"] == str(catalog.root)
    assert b"pw@" not in client.get("/_kernkoa/info", headers=bearer(token(sub="ops"))).data


def test_info_never_shows_broker_credentials() -> None:
    from kernel.pages.info import public_url

    assert public_url("redis://user:s3cret@db.example:6380/2") == {
        "kind": "redis", "host": "db.example", "port": 6380, "path": "/2"}
    assert "s3cret" not in json.dumps(public_url("amqp://guest:s3cret@mq//"))
    assert public_url("filesystem://") == {"kind": "filesystem"}
    assert public_url("") is None


def test_openapi_document_is_valid_and_typed(catalog: ControllerTree,
                                             make_app: t.Callable[..., Flask]) -> None:
    response = _client(make_app).get("/_kernkoa/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    add = doc["paths"]["/shop/cart/Cart/add"]
    assert set(add) == {"get", "post"}
    query = {p["name"]: p for p in add["get"]["parameters"]}
    assert query["item"]["required"] is True
    assert query["item"]["schema"] == {"type": "integer"}
    assert query["qty"]["schema"] == {"type": "integer", "default": 1}
    # Query values are text: an empty one is None, one value is a list of one.
    assert query["note"]["schema"] == {"type": "string"}
    assert query["tags"]["schema"] == {"anyOf": [{"type": "array", "items": {"type": "string"}},
                                                 {"type": "string"}], "default": []}
    assert add["get"]["summary"] == "Add an item to the cart."
    body = add["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["item"] and body["additionalProperties"] is False
    # JSON is typed: null only for Optional, an array for a list.
    assert body["properties"]["note"] == {"type": ["string", "null"]}
    assert body["properties"]["tags"] == {"type": "array", "items": {"type": "string"},
                                          "default": []}
    assert add["get"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert "Error" in doc["components"]["schemas"]
    flag = doc["paths"]["/shop/cart/Cart/flag"]
    assert set(flag) == {"put", "delete"}
    assert {p["name"]: p["schema"] for p in flag["delete"]["parameters"]} == {
        "on": BOOL_TEXT_SCHEMA,
        "ratio": {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 0}]}}
    task = doc["paths"]["/shop/cart/Cart/report_celery"]
    assert set(task) == {"post"}
    accepted = task["post"]["responses"]["202"]
    assert accepted["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TaskAccepted"}
    assert "Location" in accepted["headers"]
    assert "broken.py" in doc["info"]["description"]


def test_openapi_of_the_shipped_catalog_is_valid(client: FlaskClient) -> None:
    validate(client.get("/_kernkoa/openapi.json").get_json())


def test_docs_page_escapes_and_groups(tree: ControllerTree,
                                      make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop/evil.py", '''
        class Evil:
            def run(self, q: str = "<b>"):
                """<script>alert(1)</script>"""
                return q
    ''')
    tree.write("top.py", '''
        class Top:
            def index(self):
                return "top"
    ''')
    response = _client(make_app).get("/_kernkoa/docs")
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    page = response.data.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.index("<h2>/</h2>") < page.index("<h2>/shop</h2>")
    assert 'action="/shop/evil/Evil/run"' in page
    # A default with quotes and markup stays inside its placeholder attribute.
    assert 'placeholder="default: &#34;&lt;b&gt;&#34;"' in page
    assert "://" not in page.replace("http://www.w3.org", "")  # nothing from other hosts


def test_pages_under_base_prefix(catalog: ControllerTree,
                                 make_app: t.Callable[..., Flask]) -> None:
    client = _client(make_app, base="/api", RESERVED_PREFIX="_k")
    assert client.get("/api/_k/endpoints").status_code == 200
    assert client.get("/_kernkoa/endpoints").status_code == 404
    page = client.get("/api/_k/docs").data.decode()
    assert 'action="/api/shop/cart/Cart/add"' in page
    assert 'src="/api/_k/static/docs.js"' in page
    with client.get("/api/_k/static/docs.js") as script:
        assert script.status_code == 200
    assert client.get("/api/_k/openapi.json").get_json()["servers"] == [{"url": "/api"}]


def test_pages_switched_off(catalog: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    client = _client(make_app, PAGES=False)
    for page in ("endpoints", "info", "openapi.json", "docs"):
        with client.get(f"/_kernkoa/{page}") as response:
            assert response.status_code == 404, page
            assert response.get_json()["error"]["code"] == "not_found"


def test_routes_command_prints_the_same_listing(catalog: ControllerTree) -> None:
    env = {**os.environ, "KERNKOA_CATALOG": str(catalog.root)}
    table = subprocess.run([str(BIN / "kernkoa"), "routes"], env=env, capture_output=True,
                           text=True, timeout=60, check=True)
    assert "/shop/cart/Cart/add" in table.stdout
    assert "Add an item to the cart." in table.stdout
    assert "controller/broken.py" in table.stderr
    machine = subprocess.run([str(BIN / "kernkoa"), "routes", "--json"], env=env,
                             capture_output=True, text=True, timeout=60, check=True)
    body = json.loads(machine.stdout)
    assert "/shop/cart/Cart/add" in _by_url(body)
    assert body["broken"][0]["error"] == "ValueError: the file is broken on purpose"
