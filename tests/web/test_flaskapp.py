"""The kernel's Flask subclass (kernel/web/flaskapp.py) behaves as Flask does, only cheaper."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask import g
from flask import url_for
from flask.ctx import RequestContext
from werkzeug.routing import MapAdapter
from werkzeug.test import EnvironBuilder

from kernel.web.flaskapp import SYNC_CACHE_SIZE
from kernel.web.flaskapp import DeferredAdapter
from kernel.web.flaskapp import KernKoaFlask
from kernel.web.flaskapp import ShortcutRequestContext

CONTROLLER = """
from flask import g, url_for


class Cart:
    def add(self, item: int = 0):
        return {"item": item}

    def link(self):
        return url_for("dispatch", path="shop/cart/Cart/add", _external=True)

    def who(self):
        return {"identity": g.identity, "has": "identity" in g}
"""


@pytest.fixture
def kk_app(tree: t.Any, make_app: t.Callable[..., Flask]) -> KernKoaFlask:
    tree.write("shop/cart.py", CONTROLLER)
    return t.cast(KernKoaFlask, make_app())


def environ(path: str, host: str = "localhost", **extra: t.Any) -> dict[str, t.Any]:
    built = EnvironBuilder(path=path, headers={"Host": host}).get_environ()
    built.update(extra)
    return built


def shortcut_taken(context: RequestContext) -> bool:
    return type(context.url_adapter) is DeferredAdapter


def test_a_deferred_adapter_becomes_flasks_adapter(kk_app: KernKoaFlask) -> None:
    env = environ("/shop/cart/Cart/add", QUERY_STRING="a=1")
    ours = ShortcutRequestContext(kk_app, env)
    flasks = RequestContext(kk_app, env)
    assert shortcut_taken(ours)
    adapter = t.cast(DeferredAdapter, ours.url_adapter)
    assert "map" not in vars(adapter)
    assert isinstance(adapter, MapAdapter)
    assert adapter.build("dispatch", {"path": "a/B/c"}) == "/a/B/c"
    bound = Flask.create_url_adapter(kk_app, flasks.request)
    assert {k: v for k, v in vars(adapter).items() if k != "shortcut_match"} == vars(bound)
    assert adapter.match(return_rule=True) == adapter.shortcut_match
    with pytest.raises(AttributeError):
        adapter.no_such_attribute  # noqa: B018


def test_the_adapter_is_bound_only_when_asked_for(kk_app: KernKoaFlask,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bound: list[t.Any] = []
    original = Flask.create_url_adapter

    def binding(app: Flask, req: t.Any) -> t.Any:
        if req is not None:
            bound.append(req)
        return original(app, req)

    monkeypatch.setattr(Flask, "create_url_adapter", binding)
    client = kk_app.test_client()
    assert client.get("/shop/cart/Cart/add?item=2").get_json() == {"item": 2}
    assert bound == []
    # url_for needs it, and gets Flask's own adapter.
    assert client.get("/shop/cart/Cart/link").data == b"http://localhost/shop/cart/Cart/add"
    assert len(bound) == 1


def test_other_urls_take_flasks_path(kk_app: KernKoaFlask) -> None:
    for path in ("/status/abc", "/_kernkoa/health", "/shop/cart/Cart/add/", "/x.y/C/m"):
        assert not shortcut_taken(ShortcutRequestContext(kk_app, environ(path)))


@pytest.mark.parametrize("host", ["a..b", "a..b:8080", "x" * 64 + ".example"])
def test_a_host_werkzeug_cannot_bind_is_still_a_400(kk_app: KernKoaFlask, host: str) -> None:
    context = ShortcutRequestContext(kk_app, environ("/shop/cart/Cart/add", host=host))
    assert not shortcut_taken(context)
    assert type(context.request.routing_exception).__name__ == "BadHost"
    response = kk_app.test_client().get("/shop/cart/Cart/add", headers={"Host": host})
    assert response.status_code == 400


def test_a_server_name_werkzeug_cannot_bind_is_still_a_400(kk_app: KernKoaFlask) -> None:
    kk_app.config["SERVER_NAME"] = "a..b"
    context = ShortcutRequestContext(kk_app, environ("/shop/cart/Cart/add"))
    assert not shortcut_taken(context)
    assert type(context.request.routing_exception).__name__ == "BadHost"


def test_trusted_hosts_are_still_enforced(kk_app: KernKoaFlask) -> None:
    kk_app.config["TRUSTED_HOSTS"] = ["good.example"]
    client = kk_app.test_client()
    assert client.get("/shop/cart/Cart/add", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/shop/cart/Cart/add?item=1",
                      headers={"Host": "good.example"}).get_json() == {"item": 1}


def test_a_websocket_upgrade_is_left_to_werkzeug(kk_app: KernKoaFlask) -> None:
    env = environ("/shop/cart/Cart/add", HTTP_UPGRADE="websocket", HTTP_CONNECTION="Upgrade")
    context = ShortcutRequestContext(kk_app, env)
    assert not shortcut_taken(context)
    context.match_request()
    assert type(context.request.routing_exception).__name__ == "WebsocketMismatch"


def test_ensure_sync_is_remembered_for_plain_functions(kk_app: KernKoaFlask) -> None:
    def view() -> str:
        return "x"

    assert kk_app.ensure_sync(view) is view
    assert kk_app._sync_functions[view] is view


def test_ensure_sync_still_wraps_coroutine_functions(kk_app: KernKoaFlask,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def view() -> str:
        return "x"

    wrapped: list[t.Any] = []
    monkeypatch.setattr(kk_app, "async_to_sync", lambda func: wrapped.append(func) or str)
    assert kk_app.ensure_sync(view) is str
    assert kk_app.ensure_sync(view) is str
    assert wrapped == [view, view] and view not in kk_app._sync_functions


def test_ensure_sync_cache_is_bounded(kk_app: KernKoaFlask) -> None:
    functions = [eval("lambda: None") for _ in range(SYNC_CACHE_SIZE + 10)]
    for func in functions:
        assert kk_app.ensure_sync(func) is func
    assert len(kk_app._sync_functions) == SYNC_CACHE_SIZE
    unhashable = type("Unhashable", (), {"__hash__": None, "__call__": lambda self: 1})()
    assert kk_app.ensure_sync(unhashable) is unhashable


def test_identity_is_none_without_a_write(kk_app: KernKoaFlask) -> None:
    assert kk_app.test_client().get("/shop/cart/Cart/who").get_json() == {
        "identity": None, "has": False}
    with kk_app.app_context():
        assert g.identity is None and g.get("identity") is None
        g.identity = "someone"
        assert g.identity == "someone"
    with kk_app.test_request_context():
        assert url_for("dispatch", path="a/B/c") == "/a/B/c"
