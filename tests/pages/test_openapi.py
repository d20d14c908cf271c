"""/_kernkoa/openapi.json lists every status the kernel can send, and the links of tasks."""

from __future__ import annotations

import json
import re
import secrets
import typing as t
from html import unescape as html_unescape

import pytest
from flask import Flask
from openapi_spec_validator import validate

from tests.support.catalogs import ControllerTree

CATALOG = '''
from kernkoa import public, requires


class C:
    def named(self, n: int):
        return n

    def legacy(self, params=None):
        return "ok"

    def work_celery(self, task, n: int = 1):
        return n

    @requires("admin")
    def guarded(self):
        return "admin"

    @public
    def open_door(self):
        return "open"
'''


@pytest.fixture
def document(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> dict[str, t.Any]:
    tree.write("c.py", CATALOG)
    doc = make_app().test_client().get("/_kernkoa/openapi.json").get_json()
    validate(doc)
    return t.cast(dict[str, t.Any], doc)


def _statuses(doc: dict[str, t.Any], path: str, method: str) -> set[str]:
    return set(doc["paths"][path][method]["responses"])


def test_each_controller_operation_lists_every_status(document: dict[str, t.Any]) -> None:
    kernel_errors = {"400", "404", "405", "413", "422", "500"}
    assert _statuses(document, "/c/C/named", "get") == {"200", "415"} | kernel_errors
    # Any body reaches params: never a 415.
    assert _statuses(document, "/c/C/legacy", "post") == {"200"} | kernel_errors
    assert _statuses(document, "/c/C/work_celery", "post") == {
        "200", "202", "409", "415", "503"} | kernel_errors
    # @requires without an auth add-on: 401 for everyone, 403 for a scope.
    assert {"401", "403"} <= _statuses(document, "/c/C/guarded", "get")
    assert "401" not in _statuses(document, "/c/C/open_door", "get")
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                for status, response in operation["responses"].items():
                    if status >= "400":
                        assert response["content"]["application/json"]["schema"] == {
                            "$ref": "#/components/schemas/Error"}


def test_status_operations_list_409_and_their_links(document: dict[str, t.Any]) -> None:
    assert _statuses(document, "/status/{id}", "delete") >= {"200", "404", "405", "409", "503"}
    assert _statuses(document, "/status/{id}", "get") >= {"200", "404", "405", "422", "503"}
    accepted = document["paths"]["/c/C/work_celery"]["post"]["responses"]["202"]
    assert accepted["links"]["status"] == {"operationId": "task_status",
                                           "parameters": {"id": "$response.body#/id"}}
    assert accepted["links"]["cancel"]["operationId"] == "task_cancel"


def test_bodies_are_objects_except_for_params(document: dict[str, t.Any]) -> None:
    named = document["paths"]["/c/C/named"]["post"]["requestBody"]["content"]
    assert named["application/json"]["schema"]["type"] == "object"
    legacy = document["paths"]["/c/C/legacy"]["post"]["requestBody"]["content"]
    assert "type" not in legacy["application/json"]["schema"]


def test_auth_statuses_come_with_an_auth_addon(tree: ControllerTree,
                                               make_app: t.Callable[..., Flask],
                                               tmp_path: t.Any) -> None:
    tree.write("c.py", CATALOG)
    key = tmp_path / "hmackey"
    key.write_text(secrets.token_hex(32))
    app = make_app(ADDONS=["jwt_auth"], HMACKEY_FILE=str(key))
    doc = app.test_client().get("/_kernkoa/openapi.json").get_json()
    assert {"401", "429"} <= _statuses(doc, "/c/C/named", "get")
    assert "401" not in _statuses(doc, "/c/C/open_door", "get")
    assert {"401", "403"} <= _statuses(doc, "/status/{id}", "get")


def _contents(doc: dict[str, t.Any]) -> t.Iterator[tuple[str, dict[str, t.Any]]]:
    """Every request body's and answer's content map, with where it is."""
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if "requestBody" in operation:
                yield f"{method} {path} body", operation["requestBody"]["content"]
            for status, response in operation["responses"].items():
                if "content" in response:
                    yield f"{method} {path} {status}", response["content"]


def test_cbor_is_listed_beside_json_both_ways(document: dict[str, t.Any]) -> None:
    both = 0
    for where, content in _contents(document):
        if "application/json" in content:
            assert content["application/cbor"] == content["application/json"], where
            both += 1
        else:
            assert "application/cbor" not in content, where
    named = document["paths"]["/c/C/named"]
    assert {"application/json", "application/cbor"} <= set(named["post"]["requestBody"]["content"])
    for status in ("200", "400", "422", "500"):
        assert "application/cbor" in named["post"]["responses"][status]["content"]
    task = document["paths"]["/c/C/work_celery"]["post"]["responses"]["202"]["content"]
    assert task["application/cbor"]["schema"] == {"$ref": "#/components/schemas/TaskAccepted"}
    status = document["paths"]["/status/{id}"]["get"]["responses"]["200"]["content"]
    assert status["application/cbor"]["schema"] == {"$ref": "#/components/schemas/TaskStatus"}
    assert both > 20


def test_the_docs_page_types_fields_as_the_json_body_schema(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("c.py", CATALOG)
    client = make_app().test_client()
    doc = client.get("/_kernkoa/openapi.json").get_json()
    html = client.get("/_kernkoa/docs").get_data(as_text=True)
    for path in ("/c/C/named", "/c/C/work_celery"):
        properties = doc["paths"][path]["post"]["requestBody"]["content"]["application/cbor"][
            "schema"]["properties"]
        form = html[html.index(f'data-url="{path}"'):]
        for name, schema in properties.items():
            found = re.search(f'name="{name}"[^>]*data-schema="([^"]*)"', form)
            assert found is not None, name
            shown = json.loads(html_unescape(found.group(1)))
            assert shown == {k: v for k, v in schema.items() if k != "default"}


def test_triggers_take_an_idempotency_key(document: dict[str, t.Any]) -> None:
    trigger = document["paths"]["/c/C/work_celery"]["post"]
    headers = {p["name"]: p for p in trigger["parameters"] if p["in"] == "header"}
    assert set(headers) == {"Prefer", "Idempotency-Key"}
    assert headers["Idempotency-Key"]["schema"]["maxLength"] == 257
    assert "Idempotency-Key" in trigger["responses"]["422"]["description"]
    plain = document["paths"]["/c/C/named"]["get"]
    assert all(p["in"] != "header" for p in plain.get("parameters", []))
