"""Loading controller files into their own modules, hot reload, and broken files."""

from __future__ import annotations

import builtins
import os
import sys
import typing as t
from pathlib import Path

import pytest
from flask import Flask

from kernel.catalog.loader import ModuleLoader
from kernel.catalog.loader import namespace_for
from kernel.core.files import file_signature
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

VERSIONED = """
class C:
    def v(self):
        return "{version}"
"""


def version(tree: ControllerTree, value: str, name: str = "m.py") -> Path:
    """Write a controller whose ``/m/C/v`` answers ``value``."""
    return tree.write(name, VERSIONED.format(version=value))


def test_module_is_named_after_its_path(tree: ControllerTree) -> None:
    path = tree.write("shop/cart.py", "X = __name__\n")
    loader = ModuleLoader(tree.root)
    module = loader.load(path).require()
    expected = f"{namespace_for(tree.root)}.controller.shop.cart"
    assert module.__name__ == module.X == expected
    assert sys.modules[expected] is module
    assert loader.owns(expected) and not loader.owns("shop.cart")
    assert not loader.owns(namespace_for(tree.root) + "x.controller")


def test_same_file_name_in_two_folders_runs_each_own_code(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    for folder in ("examples", "probe2"):
        tree.write(f"{folder}/folderexmple.py", f"""
            class fastHelloClass:
                def fastHelloWorld(self):
                    return "{folder}"
        """)
    client = make_app().test_client()
    for _ in range(2):
        for folder in ("examples", "probe2"):
            url = f"/{folder}/folderexmple/fastHelloClass/fastHelloWorld"
            assert client.get(url).data == folder.encode()


def test_no_namespace_poisoning(make_app: t.Callable[..., Flask],
                                tree: ControllerTree) -> None:
    tree.write("message/message.py", """
        from . import helper

        class message:
            def index(self):
                return "guestbook " + helper.NAME
    """)
    tree.write("message/helper.py", "NAME = 'helper'\n")
    client = make_app().test_client()
    assert_error(client.get("/message/message"), 404)
    assert_error(client.get("/message"), 404)
    assert client.get("/message/message/message/index").data == b"guestbook helper"
    assert client.get("/message/message/message").data == b"guestbook helper"


def test_file_wins_over_folder_of_the_same_name(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    tree.write("a.py", "class b:\n    def C(self):\n        return 'file'\n")
    marker = tree.root / "folder-imported"
    tree.write("a/b.py", f"open({str(marker)!r}, 'w').close()\n"
                         "class C:\n    def m(self):\n        return 'folder'\n")
    client = make_app().test_client()
    assert client.get("/a/b/C").data == b"file"
    assert_error(client.get("/a/b/C/m"), 404)  # a.py's b.C takes no path argument
    assert not marker.exists()


def test_relative_imports_and_model_folder(make_app: t.Callable[..., Flask],
                                           tree: ControllerTree) -> None:
    (tree.root / "model").mkdir()
    (tree.root / "model" / "stock.py").write_text("COUNT = 7\n")
    tree.write("shop/util.py", "def twice(x):\n    return 2 * x\n")
    tree.write("shop/cart.py", """
        from .util import twice
        from ...model import stock

        class Cart:
            def count(self):
                return twice(stock.COUNT)
    """)
    assert make_app().test_client().get("/shop/cart/Cart/count").get_json() == 14


def test_two_catalogs_do_not_share_modules(tmp_path: Path) -> None:
    one, two = ControllerTree(tmp_path / "one"), ControllerTree(tmp_path / "two")
    a = one.write("m.py", "V = 1\n")
    b = two.write("m.py", "V = 2\n")
    assert ModuleLoader(one.root).load(a).require().V == 1
    assert ModuleLoader(two.root).load(b).require().V == 2
    assert namespace_for(one.root) != namespace_for(two.root)


# --- Hot reload --------------------------------------------------------------------


def test_edit_is_seen_on_next_request(make_app: t.Callable[..., Flask],
                                      tree: ControllerTree) -> None:
    version(tree, "one")
    client = make_app().test_client()
    assert client.get("/m/C/v").data == b"one"
    version(tree, "second")
    assert client.get("/m/C/v").data == b"second"


def test_same_size_edit_within_the_same_second(make_app: t.Callable[..., Flask],
                                               tree: ControllerTree) -> None:
    path = version(tree, "aaa")
    client = make_app().test_client()
    assert client.get("/m/C/v").data == b"aaa"
    before = os.stat(path)
    version(tree, "bbb")
    # Same size, same inode, and the mtime kept in the same second as before.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    after = os.stat(path)
    assert (after.st_size, after.st_ino) == (before.st_size, before.st_ino)
    assert after.st_mtime_ns // 10**9 == before.st_mtime_ns // 10**9
    assert client.get("/m/C/v").data == b"bbb"


def test_rename_replace_is_seen(make_app: t.Callable[..., Flask],
                                tree: ControllerTree) -> None:
    path = version(tree, "old")
    client = make_app().test_client()
    assert client.get("/m/C/v").data == b"old"
    draft = tree.controllers / "m.py.tmp"
    draft.write_text(VERSIONED.format(version="new"))
    stat = os.stat(path)
    # Keep size and mtime identical: only the inode tells the versions apart.
    os.utime(draft, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(draft, path)
    assert file_signature(path)[:2] == (stat.st_mtime_ns, stat.st_size)
    assert client.get("/m/C/v").data == b"new"


def test_new_file_is_served_at_once(make_app: t.Callable[..., Flask],
                                    tree: ControllerTree) -> None:
    version(tree, "one")
    client = make_app().test_client()
    assert_error(client.get("/later/C/v"), 404)
    version(tree, "later", "later.py")
    assert client.get("/later/C/v").data == b"later"


def test_deleted_file_is_404_afterwards(make_app: t.Callable[..., Flask],
                                        tree: ControllerTree) -> None:
    path = version(tree, "one")
    client = make_app().test_client()
    assert client.get("/m/C/v").data == b"one"
    path.unlink()
    assert_error(client.get("/m/C/v"), 404)
    version(tree, "back")
    assert client.get("/m/C/v").data == b"back"


def test_reload_off_keeps_old_code(make_app: t.Callable[..., Flask],
                                   tree: ControllerTree) -> None:
    version(tree, "one")
    client = make_app(RELOAD=False).test_client()
    assert client.get("/m/C/v").data == b"one"
    version(tree, "two")
    assert client.get("/m/C/v").data == b"one"


def test_reload_gives_a_fresh_module(tree: ControllerTree) -> None:
    path = tree.write("m.py", "A = 1\n")
    loader = ModuleLoader(tree.root)
    first = loader.load(path).require()
    assert loader.load(path).require() is first
    path.write_text("B = 2\n")
    second = loader.load(path).require()
    assert second is not first
    assert not hasattr(second, "A") and second.B == 2


def test_second_request_imports_nothing_and_lists_nothing(
    make_app: t.Callable[..., Flask], tree: ControllerTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree.write("shop/cart.py", """
        import json

        class Cart:
            def add(self, item: int, params=None):
                return {"item": item}
    """)
    client = make_app().test_client()
    assert client.get("/shop/cart/Cart/add?item=3").get_json() == {"item": 3}

    events: list[str] = []
    real_import = builtins.__import__

    def spy_import(name: str, *args: t.Any, **kwargs: t.Any) -> t.Any:
        events.append(f"import {name}")
        return real_import(name, *args, **kwargs)

    def spy(name: str, real: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            events.append(name)
            return real(*args, **kwargs)
        return wrapper

    def forbidden_execute(*args: t.Any) -> t.NoReturn:
        raise AssertionError("the controller was executed again")

    monkeypatch.setattr(ModuleLoader, "_execute", forbidden_execute)
    for name in ("listdir", "scandir"):
        monkeypatch.setattr(os, name, spy(name, getattr(os, name)))
    for name in ("is_file", "is_dir", "iterdir", "glob", "rglob"):
        monkeypatch.setattr(Path, name, spy(name, getattr(Path, name)))
    monkeypatch.setattr(builtins, "__import__", spy_import)  # last: monkeypatch imports too
    events.clear()
    modules = set(sys.modules)
    path = list(sys.path)
    response = client.get("/shop/cart/Cart/add?item=4")
    during = list(events)
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert response.get_json() == {"item": 4}
    assert during == []
    assert sys.modules.keys() == modules
    assert sys.path == path


def test_concurrent_first_requests_load_once(
    tree: ControllerTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    path = tree.write("m.py", "X = 1\n")
    loader = ModuleLoader(tree.root)
    runs: list[int] = []
    real = ModuleLoader._execute

    def counting(self: ModuleLoader, *args: t.Any) -> t.Any:
        runs.append(1)
        return real(self, *args)

    monkeypatch.setattr(ModuleLoader, "_execute", counting)
    barrier = threading.Barrier(8, timeout=10)
    results: list[t.Any] = []

    def work() -> None:
        barrier.wait()
        results.append(loader.load(path).module)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8 and len({id(m) for m in results}) == 1
    assert runs == [1]


# --- Broken controller files ---------------------------------------------------------


def test_syntax_error_breaks_only_its_own_routes_and_heals(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    version(tree, "fine", "other.py")
    broken = tree.write("m.py", "class C:\n    def v(self)\n        return 'x'\n")
    client = make_app().test_client()
    error = assert_error(client.get("/m/C/v"), 500, "controller_error")
    assert "detail" not in error and "SyntaxError" not in client.get("/m/C/v").text
    assert client.get("/other/C/v").data == b"fine"
    broken.write_text(VERSIONED.format(version="healed"))
    assert client.get("/m/C/v").data == b"healed"


def test_syntax_error_detail_in_debug_mode(make_app: t.Callable[..., Flask],
                                           tree: ControllerTree) -> None:
    tree.write("m.py", "class C:\n    def v(self)\n        return 'x'\n")
    error = assert_error(make_app(DEBUG=True).test_client().get("/m/C/v"), 500)
    assert "SyntaxError" in error["detail"]


@pytest.mark.parametrize(
    "source",
    [
        "raise RuntimeError('boom at import')\n",
        "import sys\nsys.exit(3)\n",
        "import does_not_exist_anywhere\n",
        "from . import missing_sibling\n",
    ],
)
def test_failing_import_is_a_500_and_keeps_the_process(
    make_app: t.Callable[..., Flask], tree: ControllerTree, source: str
) -> None:
    tree.write("m.py", source)
    version(tree, "fine", "other.py")
    client = make_app().test_client()
    assert_error(client.get("/m/C/v"), 500, "controller_error")
    assert client.get("/other/C/v").data == b"fine"


def test_failed_reload_keeps_nothing_half_loaded(tree: ControllerTree) -> None:
    path = tree.write("m.py", "A = 1\n")
    loader = ModuleLoader(tree.root)
    good = loader.load(path).require()
    path.write_text("B = 2\nraise ValueError('no')\n")
    failed = loader.load(path)
    assert failed.module is None and "ValueError" in (failed.error or "")
    assert sys.modules[good.__name__] is good
    path.write_text("C = 3\n")
    assert loader.load(path).require().C == 3
