"""The catch-all shortcut (kernel/web/fastmatch.py) answers exactly what Werkzeug would."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.test import EnvironBuilder

from kernel.web.fastmatch import CatchAllShortcut
from kernel.web.flaskapp import KernKoaFlask
from kernel.web.state import state_of

CONTROLLER = """
class Cart:
    def add(self, item: int = 0):
        return {"item": item}
"""

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "get"]

#: Paths built from the characters and prefixes that matter to the matcher.
PATHS = st.lists(
    st.one_of(
        st.sampled_from(["status", "images", "pdfs", "_kernkoa", "static", "shop", "cart",
                         "Cart", "add", "endpoints", "info", "docs", "api", "", ".", "..",
                         "%2F", "a%20b", "x.y", "é", "42"]),
        st.text(alphabet="abZ09_-.%/", max_size=6),
    ),
    max_size=5,
).map(lambda parts: "/" + "/".join(parts))


#: Host headers, some of which Werkzeug refuses to bind the URL map to (BadHost).
HOSTS = st.one_of(
    st.none(),
    st.sampled_from(["localhost", "LOCALHOST:8080", "a..b", "x" * 64 + ".example", "é.example",
                     "bücher.example:80", "[::1]:5000", "", ".", "a.b."]),
    st.text(alphabet="ab.-:é", max_size=8),
)


def environ_for(path: str, method: str = "GET") -> dict[str, t.Any]:
    """A WSGI environ with exactly this PATH_INFO (no URL parsing on the way)."""
    environ = EnvironBuilder(path="/", method=method).get_environ()
    environ["PATH_INFO"] = path
    environ["REQUEST_URI"] = path
    return environ


def werkzeug_answer(app: Flask, environ: dict[str, t.Any]) -> t.Any:
    try:
        adapter = app.create_url_adapter(app.request_class(environ))
        assert adapter is not None
        rule, args = adapter.match(return_rule=True)
    except RequestRedirect as redirect:
        return ("redirect", redirect.new_url)
    except HTTPException as error:
        return ("error", type(error).__name__)
    return (rule, args)


def shortcut_answer(app: Flask, environ: dict[str, t.Any]) -> t.Any:
    shortcut = t.cast(KernKoaFlask, app).catch_all_shortcut
    assert shortcut is not None
    return shortcut.match(app.request_class(environ))


@pytest.fixture(params=["", "/api"], ids=["no-base", "base"])
def kk_app(request: pytest.FixtureRequest, tree: t.Any,
           make_app: t.Callable[..., Flask]) -> Flask:
    tree.write("shop/cart.py", CONTROLLER)
    return make_app(base=request.param)


def test_the_app_takes_the_shortcut(kk_app: Flask) -> None:
    assert isinstance(kk_app, KernKoaFlask)
    assert isinstance(kk_app.catch_all_shortcut, CatchAllShortcut)
    base = state_of(kk_app).settings.base.rstrip("/")
    environ = environ_for(f"{base}/shop/cart/Cart/add")
    rule, args = shortcut_answer(kk_app, environ)
    assert (rule, args) == werkzeug_answer(kk_app, environ)
    assert args == {"path": "shop/cart/Cart/add"}
    response = kk_app.test_client().get(f"{base}/shop/cart/Cart/add?item=3")
    assert response.get_json() == {"item": 3}


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, method=st.sampled_from(METHODS), prefix=st.sampled_from(["", "/api"]),
       host=HOSTS)
def test_the_shortcut_agrees_with_werkzeug(kk_app: Flask, path: str, method: str,
                                           prefix: str, host: str | None) -> None:
    environ = environ_for(prefix + path, method)
    if host is not None:
        environ["HTTP_HOST"] = host
    found = shortcut_answer(kk_app, environ)
    if found is not None:
        assert found == werkzeug_answer(kk_app, environ)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=HOSTS, server_name=st.sampled_from([None, "shop.example"]))
def test_the_shortcut_agrees_with_werkzeug_under_trusted_hosts(
        kk_app: Flask, host: str | None, server_name: str | None) -> None:
    kk_app.config.update(TRUSTED_HOSTS=["localhost", "shop.example"], SERVER_NAME=server_name)
    base = state_of(kk_app).settings.base.rstrip("/")
    environ = environ_for(f"{base}/shop/cart/Cart/add")
    if host is not None:
        environ["HTTP_HOST"] = host
    found = shortcut_answer(kk_app, environ)
    if found is not None:
        assert found == werkzeug_answer(kk_app, environ)


def test_trusted_hosts_keep_the_shortcut_for_trusted_hosts_only(kk_app: Flask) -> None:
    kk_app.config["TRUSTED_HOSTS"] = ["shop.example"]
    base = state_of(kk_app).settings.base.rstrip("/")
    environ = environ_for(f"{base}/shop/cart/Cart/add")
    environ["HTTP_HOST"] = "shop.example:8080"
    assert shortcut_answer(kk_app, environ) is not None
    environ["HTTP_HOST"] = "evil.example"
    assert shortcut_answer(kk_app, environ) is None
    assert werkzeug_answer(kk_app, environ) == ("error", "SecurityError")


def test_rules_added_later_win_over_the_shortcut(kk_app: Flask) -> None:
    base = state_of(kk_app).settings.base.rstrip("/")
    kk_app.add_url_rule(f"{base}/shop/special", "special", lambda: "special")
    kk_app.add_url_rule(f"{base}/shop/by/<int:n>", "by", lambda n: f"by {n}")
    environ = environ_for(f"{base}/shop/special")
    assert shortcut_answer(kk_app, environ) is None
    environ = environ_for(f"{base}/shop/by/4")
    assert shortcut_answer(kk_app, environ) is None
    client = kk_app.test_client()
    assert client.get(f"{base}/shop/special").data == b"special"
    assert client.get(f"{base}/shop/by/4").data == b"by 4"
    assert client.get(f"{base}/shop/cart/Cart/add?item=2").get_json() == {"item": 2}


def test_a_rule_starting_with_a_converter_turns_the_shortcut_off(kk_app: Flask) -> None:
    base = state_of(kk_app).settings.base.rstrip("/")
    kk_app.add_url_rule("/<int:n>", "number", lambda n: f"n {n}")
    environ = environ_for(f"{base}/shop/cart/Cart/add")
    assert shortcut_answer(kk_app, environ) is None


def test_werkzeug_still_decides_everything_else(kk_app: Flask) -> None:
    base = state_of(kk_app).settings.base.rstrip("/")
    client = kk_app.test_client()
    assert client.get(f"{base}/shop/cart/Cart/add/").status_code == 404
    assert client.get(f"{base}//shop/cart/Cart/add").status_code == 404
    assert client.get(f"{base}/shop%2Fcart/Cart/add").status_code == 404
    assert client.open(f"{base}/shop/cart/Cart/add", method="TRACE").status_code == 405
