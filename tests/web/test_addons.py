"""Add-ons: enabled by name, hooks in order, clear start-up errors."""

from __future__ import annotations

import logging
import re
import textwrap
import typing as t
from pathlib import Path

import pytest
from flask import Flask

from kernel import create_app
from kernel.core.errors import AddonError
from kernel.web.addons import notify_task_finish
from kernel.web.addons import notify_task_start
from kernel.web.state import state_of

if t.TYPE_CHECKING:
    from tests.support.catalogs import ControllerTree

RECORDER = """
from flask import g

calls = []

def before_request():
    calls.append(("before", {name!r}))

def after_request(response):
    calls.append(("after", {name!r}))
    response.headers["X-Seen-By-{name}"] = "yes"
    return response

def on_task_start(*, task_id, name, **info):
    calls.append(("task_start", {name!r}, task_id, name))

def on_task_finish(*, task_id, name, state, duration, error=None, **info):
    calls.append(("task_finish", {name!r}, task_id, state, type(error).__name__))
"""


@pytest.fixture
def addons(tmp_path: Path) -> Path:
    folder = tmp_path / "addons"
    folder.mkdir()
    for name in ("first", "second"):
        (folder / f"{name}.py").write_text(textwrap.dedent(RECORDER.format(name=name)))
    return folder


@pytest.fixture
def hello(tree: ControllerTree) -> None:
    tree.write("hello.py", """
        class hello:
            def index(self):
                return "hi"
    """)


def _calls(app: Flask, name: str) -> list[t.Any]:
    for addon in state_of(app).addons.addons:
        if addon.name == name:
            return t.cast(list[t.Any], addon.module.calls)
    raise LookupError(name)


def test_every_enabled_addon_sees_the_request(make_app: t.Callable[..., Flask], addons: Path,
                                              hello: None) -> None:
    app = make_app(ADDONS_FOLDER=str(addons), ADDONS=["first", "second"])
    response = app.test_client().get("/hello/hello")
    assert response.data == b"hi"
    assert response.headers["X-Seen-By-first"] == response.headers["X-Seen-By-second"] == "yes"
    assert _calls(app, "first") == [("before", "first"), ("after", "first")]
    assert _calls(app, "second") == [("before", "second"), ("after", "second")]


def test_order_is_config_order_then_reversed(make_app: t.Callable[..., Flask], tmp_path: Path,
                                             hello: None) -> None:
    folder = tmp_path / "ordered"
    folder.mkdir()
    (folder / "log.py").write_text("calls = []\n")
    for name in ("a", "b"):
        (folder / f"{name}.py").write_text(textwrap.dedent(f"""
            from kernel.api.load import load

            def before_request():
                load.addon("log", "calls").append("before {name}")

            def after_request(response):
                load.addon("log", "calls").append("after {name}")
        """))
    app = make_app(ADDONS_FOLDER=str(folder), ADDONS=["a", "b"])
    with app.app_context():
        from kernel.api.load import load

        calls = load.addon("log", "calls")
    app.test_client().get("/hello/hello")
    assert calls == ["before a", "before b", "after b", "after a"]
    app.test_client().get("/nothing/here")  # error responses pass the hooks too
    assert calls[-2:] == ["after b", "after a"]


def test_before_request_can_answer(make_app: t.Callable[..., Flask], tmp_path: Path,
                                   hello: None) -> None:
    folder = tmp_path / "guard"
    folder.mkdir()
    (folder / "guard.py").write_text(textwrap.dedent("""
        from flask import request

        def before_request():
            if request.headers.get("X-Token") != "open-sesame":
                return {"error": "no"}, 401
    """))
    client = make_app(ADDONS_FOLDER=str(folder), ADDONS=["guard"]).test_client()
    assert client.get("/hello/hello").status_code == 401
    assert client.get("/hello/hello", headers={"X-Token": "open-sesame"}).data == b"hi"


def test_env_variable_enables_addons(monkeypatch: pytest.MonkeyPatch, addons: Path) -> None:
    monkeypatch.setenv("KERNKOA_ADDONS", "first, second")
    monkeypatch.setenv("KERNKOA_ADDONS_FOLDER", str(addons))
    app = create_app()
    assert state_of(app).addons.names == ["first", "second"]


def test_no_addons_by_default() -> None:
    app = create_app()
    assert state_of(app).addons.names == []


@pytest.mark.parametrize(("name", "message"), [
    ("missing", "no file"),
    ("../first", "not a valid name"),
    ("broken", "failed to import"),
    ("notcallable", "before_request is not callable"),
])
def test_bad_addon_stops_startup(make_app: t.Callable[..., Flask], addons: Path,
                                 name: str, message: str) -> None:
    (addons / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (addons / "notcallable.py").write_text("before_request = 3\n")
    with pytest.raises(AddonError, match=re.escape(name) + ".*" + message):
        make_app(ADDONS_FOLDER=str(addons), ADDONS=[name])


def test_task_hooks(make_app: t.Callable[..., Flask], addons: Path) -> None:
    app = make_app(ADDONS_FOLDER=str(addons), ADDONS=["first", "second"])
    with app.app_context():
        notify_task_start("id-1", "/a/b/C/m_celery", extra="ignored")
        notify_task_finish("id-1", "/a/b/C/m_celery", "FAILURE", 0.5, error=ValueError("x"))
    first, second = _calls(app, "first"), _calls(app, "second")
    assert first[0] == ("task_start", "first", "id-1", "/a/b/C/m_celery")
    assert second[-1] == ("task_finish", "second", "id-1", "FAILURE", "ValueError")


def test_failing_task_hook_is_logged_not_raised(make_app: t.Callable[..., Flask], tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "bad.py").write_text("def on_task_start(**info):\n    raise KeyError('oops')\n")
    app = make_app(ADDONS_FOLDER=str(folder), ADDONS=["bad"])
    with app.app_context(), caplog.at_level(logging.ERROR, "kernkoa"):
        notify_task_start("id-2", "/x/y/Z/w_celery")
    assert "add-on hook" in caplog.text and "oops" in caplog.text
