"""The auth layer's shortcuts: access rules cached per endpoint, checks folded into one hook.

Every decision must be the one the uncached layer made: a reloaded file gets
its new rules, ``@requires`` fails closed without an auth add-on, each app
applies its own ``AUTH_DEFAULT`` to shared endpoints, and the checks run in
their registration order (query limit, add-on hooks, auth).
"""

from __future__ import annotations

import os
import textwrap
import typing as t
from pathlib import Path

from flask import Flask

from kernel.catalog.access import PUBLIC
from kernel.catalog.access import AccessRule
from kernel.web.hooks import RequestGate
from kernel.web.state import state_of
from tests.support.auth import KEY
from tests.support.auth import bearer
from tests.support.auth import token
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

UNDECORATED = """
from kernkoa import *


class Doc:
    def index(self):
        return {"doc": True}
"""

REQUIRED = """
from kernkoa import *


class Doc:
    @requires("docs")
    def index(self):
        return {"doc": True}
"""

PUBLIC_DOC = """
from kernkoa import *


@requires("docs")
class Doc:
    @public
    def index(self):
        return {"doc": True}
"""


def rewrite(tree: ControllerTree, source: str) -> None:
    """Write a new version of ``doc.py`` the loader cannot mistake for the old one."""
    path = tree.write("doc.py", source)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_reloaded_controller_gets_its_new_rule(tree: ControllerTree,
                                               make_app: t.Callable[..., Flask]) -> None:
    rewrite(tree, UNDECORATED)
    client = make_app().test_client()
    assert client.get("/doc/Doc").get_json() == {"doc": True}
    rewrite(tree, REQUIRED)
    assert_error(client.get("/doc/Doc"), 401, "unauthorized")
    assert_error(client.get("/doc/Doc"), 401, "unauthorized")  # cached rule, same answer
    rewrite(tree, PUBLIC_DOC)
    assert client.get("/doc/Doc").get_json() == {"doc": True}
    rewrite(tree, UNDECORATED)
    assert client.get("/doc/Doc").get_json() == {"doc": True}


def test_rule_is_computed_once_per_endpoint(tree: ControllerTree,
                                            make_app: t.Callable[..., Flask]) -> None:
    rewrite(tree, PUBLIC_DOC)
    app = make_app()
    kernel = state_of(app).catalog
    _, first = kernel.resolve("doc/Doc/index")
    _, again = kernel.resolve("doc/Doc/index")
    assert first is again and first.access is PUBLIC
    rewrite(tree, REQUIRED)
    _, reloaded = kernel.resolve("doc/Doc/index")
    assert reloaded is not first
    assert reloaded.access == AccessRule(required=True, scopes=frozenset({"docs"}))


def test_requires_answers_401_without_auth_addon_every_time(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    rewrite(tree, REQUIRED)
    client = make_app().test_client()
    for _ in range(3):
        response = client.get("/doc/Doc")
        assert_error(response, 401, "unauthorized")
        assert "WWW-Authenticate" not in response.headers
    # Other methods and HEAD are decided the same way.
    assert client.head("/doc/Doc").status_code == 401
    assert client.post("/doc/Doc").status_code == 401


def test_each_app_applies_its_own_default_to_shared_endpoints(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    rewrite(tree, UNDECORATED)
    # Both apps serve the same catalog, so they share the loader and its endpoints.
    closed = make_app(ADDONS=["jwt_auth"], HMACKEY=KEY, AUTH_DEFAULT="required").test_client()
    opened = make_app().test_client()
    assert opened.get("/doc/Doc").status_code == 200
    assert_error(closed.get("/doc/Doc"), 401)
    assert closed.get("/doc/Doc", headers=bearer(token())).status_code == 200
    assert opened.get("/doc/Doc").status_code == 200


def test_kernel_checks_share_one_hook(tree: ControllerTree,
                                      make_app: t.Callable[..., Flask]) -> None:
    app = make_app()
    hooks = app.before_request_funcs[None]
    assert len(hooks) == 1 and isinstance(hooks[0], RequestGate)
    assert len(hooks[0].steps) == 2  # query limit, then the auth decision


def test_query_limit_still_comes_before_auth(tree: ControllerTree,
                                             make_app: t.Callable[..., Flask]) -> None:
    rewrite(tree, REQUIRED)
    client = make_app(MAX_FIELDS=2).test_client()
    assert_error(client.get("/doc/Doc?a=1&b=2&c=3"), 413, "too_many_fields")
    assert_error(client.get("/doc/Doc?a=1&b=2"), 401, "unauthorized")


def test_addon_flask_hook_keeps_its_place(tree: ControllerTree, tmp_path: Path,
                                          make_app: t.Callable[..., Flask]) -> None:
    # An add-on registering its own Flask hook in init_app runs after the query
    # limit and before the auth decision, as when every check was its own hook.
    rewrite(tree, REQUIRED)
    folder = tmp_path / "addons"
    folder.mkdir()
    (folder / "own_hook.py").write_text(textwrap.dedent("""
        CALLS = []

        def init_app(app, settings):
            app.before_request(lambda: CALLS.append("own"))

        def before_request():
            CALLS.append("hook")
    """))
    app = make_app(ADDONS_FOLDER=str(folder), ADDONS=["own_hook"], MAX_FIELDS=2)
    calls = state_of(app).addons.addons[0].module.CALLS
    client = app.test_client()
    assert_error(client.get("/doc/Doc?a=1&b=2&c=3"), 413)
    assert calls == []
    assert_error(client.get("/doc/Doc"), 401)
    assert calls == ["own", "hook"]
    hooks = app.before_request_funcs[None]
    assert [type(h) is RequestGate for h in hooks] == [True, False, True]
