"""Sessions keep Flask's behaviour with the cached serializer (kernel/web/sessions.py)."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask

from kernel.web.sessions import CachedSecureCookieSessionInterface

CONTROLLER = """
from kernkoa import *


class Cart:
    def put(self, item: str):
        session["item"] = item
        return "ok"

    def get(self):
        return session.get("item", "none")

    def clear(self):
        session.clear()
        return "cleared"

    def nothing(self):
        return "nothing"
"""


@pytest.fixture
def cart_app(tree: t.Any, make_app: t.Callable[..., Flask]) -> Flask:
    tree.write("shop.py", CONTROLLER)
    return make_app()


def test_the_kernel_uses_the_cached_interface(cart_app: Flask) -> None:
    assert isinstance(cart_app.session_interface, CachedSecureCookieSessionInterface)


def test_a_session_round_trips_in_a_signed_cookie(cart_app: Flask) -> None:
    client = cart_app.test_client()
    response = client.get("/shop/Cart/put?item=apple")
    assert "session=" in response.headers["Set-Cookie"]
    assert response.headers["Vary"] == "Cookie"
    assert client.get("/shop/Cart/get").data == b"apple"


def test_untouched_sessions_set_no_cookie_and_no_vary(cart_app: Flask) -> None:
    response = cart_app.test_client().get("/shop/Cart/nothing")
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_reading_an_empty_session_still_varies_on_cookie(cart_app: Flask) -> None:
    response = cart_app.test_client().get("/shop/Cart/get")
    assert response.data == b"none"
    assert response.headers["Vary"] == "Cookie"
    assert "Set-Cookie" not in response.headers


def test_clearing_a_session_deletes_its_cookie(cart_app: Flask) -> None:
    client = cart_app.test_client()
    client.get("/shop/Cart/put?item=apple")
    response = client.get("/shop/Cart/clear")
    assert "session=;" in response.headers["Set-Cookie"]
    assert client.get("/shop/Cart/get").data == b"none"


def test_a_tampered_cookie_gives_an_empty_session(cart_app: Flask) -> None:
    client = cart_app.test_client()
    client.get("/shop/Cart/put?item=apple")
    cookie = client.get_cookie("session")
    assert cookie is not None
    client.set_cookie("session", cookie.value[:-2] + "xx")
    assert client.get("/shop/Cart/get").data == b"none"


def test_a_new_secret_key_invalidates_old_cookies(cart_app: Flask) -> None:
    client = cart_app.test_client()
    client.get("/shop/Cart/put?item=apple")
    cart_app.secret_key = "another secret key, long enough to be a real one"
    assert client.get("/shop/Cart/get").data == b"none"


def test_a_fallback_key_still_reads_old_cookies(cart_app: Flask) -> None:
    client = cart_app.test_client()
    client.get("/shop/Cart/put?item=apple")
    old = cart_app.secret_key
    cart_app.secret_key = "another secret key, long enough to be a real one"
    cart_app.config["SECRET_KEY_FALLBACKS"] = [old]
    assert client.get("/shop/Cart/get").data == b"apple"
