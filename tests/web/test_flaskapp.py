"""The kernel's Flask subclass (kernel/web/flaskapp.py) behaves as Flask does, only cheaper."""

from __future__ import annotations

import typing as t

import pytest
from flask import Blueprint
from flask import Flask
from flask import after_this_request
from flask import g
from flask import request
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


def _hooked_app(cls: type[Flask], events: list[str]) -> Flask:
    """The same small app on ``cls``: app hooks, a blueprint with its own, a
    URL value preprocessor added later by the test when it wants one."""
    app = cls("hooked")
    app.before_request(lambda: events.append("before 1"))
    app.before_request(lambda: events.append("before 2"))

    def stop_early() -> str | None:
        return "stopped" if "stop" in g.get("query", "") else None

    @app.before_request
    def read_query() -> str | None:
        g.query = request.query_string.decode()
        return stop_early()

    def after(name: str) -> t.Callable[[t.Any], t.Any]:
        def hook(response: t.Any) -> t.Any:
            events.append(f"after {name}")
            response.headers.add("X-After", name)
            return response
        return hook

    app.after_request(after("1"))
    app.after_request(after("2"))
    app.teardown_request(lambda exc: events.append(f"teardown 1 {exc!r}"))
    app.teardown_request(lambda exc: events.append(f"teardown 2 {exc!r}"))

    @app.route("/plain", methods=["GET", "POST"])
    def plain() -> str:
        after_this_request(after("this request"))
        return "plain"

    @app.route("/fails")
    def fails() -> str:
        raise RuntimeError("boom")

    shop = Blueprint("shop", __name__)

    @shop.route("/item/<int:number>")
    def item(number: int) -> str:
        return f"item {number}"

    app.register_blueprint(shop, url_prefix="/shop")
    return app


def _run(app: Flask, events: list[str], path: str, method: str = "GET") -> list[t.Any]:
    events.clear()
    response = app.test_client().open(path, method=method)
    return [response.status_code, response.get_data(as_text=True),
            response.headers.getlist("X-After"), response.headers.get("Allow"), list(events)]


def _answers(cls: type[Flask], blueprint_hooks: bool) -> list[list[t.Any]]:
    events: list[str] = []
    app = _hooked_app(cls, events)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    runs = [_run(app, events, "/plain"), _run(app, events, "/plain?stop"),
            _run(app, events, "/plain", "OPTIONS"), _run(app, events, "/shop/item/3"),
            _run(app, events, "/fails")]
    if blueprint_hooks:
        # Added after requests were served: counted at once.
        bp = "shop"
        app.before_request_funcs.setdefault(bp, []).append(lambda: events.append("bp before"))
        app.after_request_funcs.setdefault(bp, []).append(
            lambda response: events.append("bp after") or response)
        app.teardown_request_funcs.setdefault(bp, []).append(
            lambda exc: events.append("bp teardown"))
        app.url_value_preprocessors.setdefault(bp, []).append(
            lambda endpoint, values: events.append(f"bp values {values}"))
        runs += [_run(app, events, "/shop/item/4"), _run(app, events, "/plain")]
    return runs


@pytest.mark.parametrize("blueprint_hooks", [False, True])
def test_request_steps_run_as_flasks_do(blueprint_hooks: bool) -> None:
    # Every hook, in Flask's order, with and without a blueprint's own hooks
    # (which send KernKoaFlask back to Flask's own steps).
    flasks, ours = _answers(Flask, blueprint_hooks), _answers(KernKoaFlask, blueprint_hooks)
    assert ours == flasks
    assert ours[0][-1][:3] == ["before 1", "before 2", "after this request"]
    if blueprint_hooks:
        assert "bp values {'number': 4}" in ours[-2][-1]
        assert "bp teardown" in ours[-2][-1]
        assert "bp after" not in ours[-1][-1]
