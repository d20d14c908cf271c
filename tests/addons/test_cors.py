"""cors add-on: off by default, explicit origins, preflight answered before auth."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kernel.core.errors import AddonError
from tests.support.auth import CONTROLLERS
from tests.support.auth import KEY
from tests.support.auth import bearer
from tests.support.auth import token
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

SITE = "https://app.example.org"
PREFLIGHT = {"Origin": SITE, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "Authorization, Content-Type"}


@pytest.fixture
def client(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> FlaskClient:
    tree.write("shop.py", CONTROLLERS)
    return make_app(ADDONS=["cors", "jwt_auth"], HMACKEY=KEY, CORS_ORIGINS=[SITE],
                    AUTH_DEFAULT="required").test_client()


def test_off_by_default(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop.py", CONTROLLERS)
    response = make_app().test_client().get("/shop/Open", headers={"Origin": SITE})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_is_answered_before_auth(client: FlaskClient) -> None:
    response = client.options("/shop/Reports", headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Vary"] == "Origin"


def test_actual_request_carries_the_headers(client: FlaskClient) -> None:
    headers = {"Origin": SITE, **bearer(token(scope="reports"))}
    response = client.get("/shop/Reports", headers=headers)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert "Location" in response.headers["Access-Control-Expose-Headers"]
    # Refusals are readable by the page too, and still refusals.
    refused = client.get("/shop/Reports", headers={"Origin": SITE})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == SITE


def test_other_origins_get_nothing(client: FlaskClient) -> None:
    evil = {**PREFLIGHT, "Origin": "https://evil.example"}
    assert_error(client.options("/shop/Reports", headers=evil), 403, "cors_refused")
    response = client.get("/shop/Reports/summary", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    for bad in ({"Access-Control-Request-Method": "TRACE"},
                {"Access-Control-Request-Headers": "X-Secret"}):
        assert_error(client.options("/shop/Reports", headers={**PREFLIGHT, **bad}), 403)


def test_settings_are_checked(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    with pytest.raises(AddonError, match="not scheme://host"):
        make_app(ADDONS=["cors"], CORS_ORIGINS=["https://a.example/path"])
    with pytest.raises(AddonError, match="CORS_ALLOW_CREDENTIALS"):
        make_app(ADDONS=["cors"], CORS_ORIGINS=["*"], CORS_ALLOW_CREDENTIALS=True)
