"""``load``: models, controllers, print formats and add-ons by name, from their folders only."""

from __future__ import annotations

import os
import textwrap
import typing as t
from pathlib import Path

import pytest
from flask import Flask

from kernel.api.load import load
from kernel.core.errors import CatalogLoadError
from kernel.core.settings import Settings
from kernel.web import state as state_module
from kernel.web.state import state_of

if t.TYPE_CHECKING:
    from tests.support.catalogs import ControllerTree

MODEL = """
class model_thing:
    def __init__(self):
        self.created = True

    def answer(self):
        return {answer!r}
"""


def write(root: Path, relative: str, source: str) -> Path:
    """Write a dedented file under ``root``; return its path."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def rewrite(path: Path, source: str) -> None:
    """Change a file so the loader must notice (new size and a later mtime)."""
    before = path.stat().st_mtime_ns
    path.write_text(textwrap.dedent(source))
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


@pytest.fixture
def app(make_app: t.Callable[..., Flask], tmp_path: Path) -> Flask:
    return make_app(ADDONS_FOLDER=str(tmp_path / "addons"))


def test_model_is_an_instance_of_the_class_named_like_the_module(
        tree: ControllerTree, app: Flask) -> None:
    write(tree.root, "model/thing/model_thing.py", MODEL.format(answer=42))
    write(tree.root, "model/model_top.py", "class model_top:\n    pass\n")
    with app.app_context():
        thing = load.model("model_thing", "thing")
        assert type(thing).__name__ == "model_thing"
        assert thing.created and thing.answer() == 42
        assert type(load.model("model_top")).__name__ == "model_top"
        assert state_of(app).catalog.loader.owns(type(thing).__module__)  # the app's own loader


def test_nested_folders_and_namespacing(tree: ControllerTree, app: Flask) -> None:
    write(tree.root, "model/a/b/m.py", "class m:\n    where = 'a/b'\n")
    write(tree.root, "model/c/m.py", "class m:\n    where = 'c'\n")
    with app.app_context():
        assert load.model("m", "a/b").where == "a/b"
        assert load.model("m", "c").where == "c"
        assert type(load.model("m", "a/b")).__module__ != type(load.model("m", "c")).__module__


def test_changed_model_file_runs_its_new_code(tree: ControllerTree, app: Flask) -> None:
    path = write(tree.root, "model/thing/model_thing.py", MODEL.format(answer=1))
    with app.app_context():
        assert load.model("model_thing", "thing").answer() == 1
        rewrite(path, MODEL.format(answer="two"))
        assert load.model("model_thing", "thing").answer() == "two"


def test_controller_and_print_format(tree: ControllerTree, app: Flask) -> None:
    tree.write("shop/cart.py", "class cart:\n    def total(self):\n        return 3\n")
    write(tree.root, "print/invoice/pdf.py", "class pdf:\n    kind = 'invoice'\n")
    with app.app_context():
        assert load.controller("cart", "shop").total() == 3
        fmt = load.printFormat("pdf", "invoice")
        assert isinstance(fmt, type) and fmt.kind == "invoice"


def test_addon_component(tmp_path: Path, app: Flask) -> None:
    write(tmp_path / "addons", "cors.py", "ORIGINS = ['https://example.org']\n")
    with app.app_context():
        assert load.addon("cors", "ORIGINS") == ["https://example.org"]
        with pytest.raises(CatalogLoadError, match="no 'MISSING'"):
            load.addon("cors", "MISSING")
        with pytest.raises(CatalogLoadError, match="not a valid"):
            load.addon("cors", "__dict__")


def test_shipped_access_log_addon_is_reachable(tmp_path: Path) -> None:
    from kernel import create_app

    with create_app().app_context():
        assert callable(load.addon("access_log", "route_of"))


def test_works_outside_an_app(tree: ControllerTree, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tree.root, "model/thing/model_thing.py", MODEL.format(answer="outside"))
    monkeypatch.setattr(state_module, "_default_settings",
                        Settings.load({"CATALOG": str(tree.root)}))
    assert load.model("model_thing", "thing").answer() == "outside"


@pytest.mark.parametrize(("name", "folder"), [
    ("../evil", None), ("evil", ".."), ("evil", "../outside"), ("evil", "a/../../outside"),
    ("os", None), ("os.path", None), ("_private", None), ("", None), ("evil", "a//b"),
    ("evil", "/etc"), ("ünïcode", None), ("name.py", None),
])
def test_bad_names_are_clear_errors_and_import_nothing(
        tree: ControllerTree, app: Flask, tmp_path: Path, name: str, folder: str | None) -> None:
    marker = tmp_path / "marker"
    evil = f"open({str(marker)!r}, 'w').write('ran')\nclass evil:\n    pass\n"
    write(tmp_path, "outside/evil.py", evil)
    write(tmp_path, "catalog/evil.py", evil)  # in the catalog root, beside model/
    (tree.root / "model").mkdir(exist_ok=True)
    with app.app_context(), pytest.raises(CatalogLoadError):
        load.model(name, folder)
    assert not marker.exists()


def test_symlink_out_of_the_catalog_is_refused(
        tree: ControllerTree, app: Flask, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    target = write(tmp_path, "outside/evil.py",
                   f"open({str(marker)!r}, 'w').write('ran')\nclass evil:\n    pass\n")
    (tree.root / "model").mkdir()
    (tree.root / "model" / "evil.py").symlink_to(target)
    with app.app_context(), pytest.raises(CatalogLoadError, match="outside"):
        load.model("evil")
    assert not marker.exists()


def test_missing_file_or_class(tree: ControllerTree, app: Flask) -> None:
    write(tree.root, "model/noclass.py", "x = 1\nnoclass = 2\n")
    with app.app_context():
        with pytest.raises(CatalogLoadError, match="no file"):
            load.model("absent")
        with pytest.raises(CatalogLoadError, match="no class 'noclass'"):
            load.model("noclass")


def test_broken_model_is_an_error_until_fixed(tree: ControllerTree, app: Flask) -> None:
    path = write(tree.root, "model/broken.py", "class broken:\n    def x(self):\n")
    with app.app_context():
        with pytest.raises(CatalogLoadError, match="failed to import") as info:
            load.model("broken")
        assert "IndentationError" in str(info.value)
        rewrite(path, "class broken:\n    def x(self):\n        return 'fixed'\n")
        assert load.model("broken").x() == "fixed"


def test_a_controller_uses_a_model(tree: ControllerTree, app: Flask) -> None:
    write(tree.root, "model/thing/model_thing.py", MODEL.format(answer="from the model"))
    tree.write("shop.py", """
        from kernkoa import *

        class shop:
            def index(self):
                return load.model("model_thing", "thing").answer()
    """)
    response = app.test_client().get("/shop/shop")
    assert response.status_code == 200
    assert response.data == b"from the model"
