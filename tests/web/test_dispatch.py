"""The catch-all view and the catalog it resolves in: resolve, check, bind, call."""

from __future__ import annotations

import sys
import typing as t

import pytest
from flask import Flask

from kernel.catalog.resolution import Catalog
from kernel.core.errors import ControllerLoadError
from kernel.core.errors import RouteNotFound
from kernel.web.state import state_of
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

SHOP = """
from kernkoa import *


class Cart:
    def add(self, item: int, qty: int = 1):
        return {"item": item, "qty": qty, "path": request.path}

    def index(self):
        return "cart"
"""


def kernel_of(app: Flask) -> Catalog:
    """The :class:`Catalog` of ``app``."""
    return state_of(app).catalog


def test_resolve_caches_the_endpoint_per_file_version(make_app: t.Callable[..., Flask],
                                                      tree: ControllerTree) -> None:
    path = tree.write("shop/cart.py", SHOP)
    kernel = kernel_of(make_app())
    target, endpoint = kernel.resolve("shop/cart/Cart/add")
    assert target.file == path and endpoint.name == "add"
    assert kernel.resolve("/shop/cart/Cart/add")[1] is endpoint
    path.write_text(SHOP + "\n# edited\n")
    assert kernel.resolve("shop/cart/Cart/add")[1] is not endpoint


def test_resolve_errors(make_app: t.Callable[..., Flask], tree: ControllerTree) -> None:
    tree.write("shop/cart.py", SHOP)
    tree.write("broken.py", "def (:\n")
    kernel = kernel_of(make_app())
    with pytest.raises(RouteNotFound):
        kernel.resolve("shop/cart/Nope/add")
    with pytest.raises(ControllerLoadError):
        kernel.resolve("broken/C/m")


def test_deleted_then_moved_file_is_found_again(make_app: t.Callable[..., Flask],
                                                tree: ControllerTree) -> None:
    """A cached path whose file moved deeper is walked again, not served stale."""
    old = tree.write("shop.py", "class cart:\n    def Cart(self):\n        return 'old'\n")
    client = make_app().test_client()
    assert client.get("/shop/cart/Cart").data == b"old"
    old.unlink()
    tree.write("shop/cart.py", SHOP)
    assert client.get("/shop/cart/Cart").data == b"cart"


def test_full_request(make_app: t.Callable[..., Flask], tree: ControllerTree) -> None:
    tree.write("shop/cart.py", SHOP)
    client = make_app().test_client()
    assert client.get("/shop/cart/Cart/add?item=3").get_json() == {
        "item": 3, "qty": 1, "path": "/shop/cart/Cart/add"}
    assert client.post("/shop/cart/Cart/add", json={"item": 4, "qty": 2}).get_json()["qty"] == 2
    assert client.get("/shop/cart/Cart").data == b"cart"


def test_requests_leave_sys_path_alone(make_app: t.Callable[..., Flask],
                                       tree: ControllerTree) -> None:
    tree.write("shop/cart.py", SHOP)
    client = make_app().test_client()
    before = list(sys.path)
    for url in ("/shop/cart/Cart/add?item=1", "/shop/cart/Cart", "/nothing/x/y", "/../x/y/z"):
        client.get(url)
    assert sys.path == before


def test_shipped_catalog_answers(client: t.Any) -> None:
    assert client.get("/common/head/head").data == b"hola mundo"
    assert_error(client.get("/common/head/nothing"), 404)


def test_bad_body_is_checked_only_after_the_route(make_app: t.Callable[..., Flask],
                                                  tree: ControllerTree) -> None:
    tree.write("shop/cart.py", SHOP)
    client = make_app().test_client()
    assert_error(client.post("/nothing/x/y", data=b"{", content_type="application/json"), 404)
    response = client.put("/shop/cart/Cart/add", data=b"{", content_type="application/json")
    assert_error(response, 405)
