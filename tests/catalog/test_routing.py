"""From URL path to controller file: the segment grammar, the folder walk, its cache,
and the refusal of every path that could leave the controller folder."""

from __future__ import annotations

import os
import sys
import typing as t
from pathlib import Path

import pytest
from flask import Flask

from kernel.catalog.loader import ModuleLoader
from kernel.catalog.resolution import Catalog
from kernel.catalog.routing import Limits
from kernel.catalog.routing import Router
from kernel.catalog.routing import split_path
from kernel.core.errors import RouteNotFound
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

HELLO = """
    class C:
        def m(self):
            return "hello"
"""


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("", []),
        ("/", []),
        ("/a", ["a"]),
        ("/a/B/c_1", ["a", "B", "c_1"]),
        ("a/b", ["a", "b"]),
        ("/a/B/c/42/v1.2-rc~3", ["a", "B", "c", "42", "v1.2-rc~3"]),
    ],
)
def test_split_path_accepts_identifiers(path: str, segments: list[str]) -> None:
    assert split_path(path, Limits()) == segments


@pytest.mark.parametrize(
    "path",
    [
        "/..", "/a/../b", "/.", "/a//b", "/a/", "/_x", "/a/__init__", "/-a", "/.a",
        "/a/.py", "/~a", "/a b", "/café", "/a\\b", "/a\nb", "/a\x00b", "/%2e%2e",
    ],
)
def test_split_path_refuses_everything_else(path: str) -> None:
    with pytest.raises(RouteNotFound):
        split_path(path, Limits())


def test_split_path_limits() -> None:
    limits = Limits(max_length=20, max_depth=3, max_segment=5)
    assert split_path("/a/b/c", limits) == ["a", "b", "c"]
    for path in ["/a/b/c/d", "/abcdef", "/" + "a/" * 10 + "a"]:
        with pytest.raises(RouteNotFound):
            split_path(path, limits)


def test_router_walks_folders_to_the_first_file(tree: ControllerTree) -> None:
    tree.write("shop/cart.py", HELLO)
    router = Router(tree.controllers)
    target = router.resolve("/shop/cart/C/m/x/y")
    assert target.file == tree.controllers / "shop" / "cart.py"
    assert target.module_parts == ("shop", "cart")
    assert (target.class_name, target.method_name, target.args) == ("C", "m", ("x", "y"))
    assert target.route == "/shop/cart/C/m"


def test_router_defaults_to_index_method_and_route(tree: ControllerTree) -> None:
    tree.write("index.py", HELLO)
    router = Router(tree.controllers, index_route="index/C/m")
    assert router.resolve("/index/C").method_name == "index"
    assert router.resolve("/").route == "/index/C/m"


@pytest.mark.parametrize("path", ["/shop", "/shop/cart", "/nothing/C/m", "/shop/none/C/m",
                                  "/1shop/cart/C/m", "/shop/cart/1C/m", "/shop/cart/C/m-1",
                                  "/shop.py/cart/C/m", "/shop/cart.py/C/m"])
def test_router_needs_a_file_and_a_class(tree: ControllerTree, path: str) -> None:
    tree.write("shop/cart.py", HELLO)
    with pytest.raises(RouteNotFound):
        Router(tree.controllers).resolve(path)


def test_router_refuses_reserved_first_segments(tree: ControllerTree) -> None:
    tree.write("status.py", HELLO)
    router = Router(tree.controllers, reserved=frozenset({"status"}))
    with pytest.raises(RouteNotFound):
        router.resolve("/status/C/m")


def test_second_resolution_touches_no_file_system(
    tree: ControllerTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog's one route cache: with RELOAD off, a known path is a lookup."""
    tree.write("a/b/c.py", HELLO)
    catalog = Catalog(Router(tree.controllers), ModuleLoader(tree.root, reload=False), 16)
    first = catalog.resolve("/a/b/c/C/m")

    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError("the file system was touched")

    for name in ("is_file", "is_dir", "exists", "stat", "iterdir"):
        monkeypatch.setattr(Path, name, forbidden)
    monkeypatch.setattr(os, "listdir", forbidden)
    monkeypatch.setattr(os, "scandir", forbidden)
    monkeypatch.setattr(os, "stat", forbidden)
    assert catalog.resolve("/a/b/c/C/m") == first


def test_router_remembers_nothing(tree: ControllerTree) -> None:
    path = tree.write("m.py", HELLO)
    router = Router(tree.controllers)
    router.resolve("/m/C/m")
    path.unlink()
    with pytest.raises(RouteNotFound):
        router.resolve("/m/C/m")


def test_catalog_forgets_a_file_that_went_away(tree: ControllerTree) -> None:
    path = tree.write("m.py", HELLO)
    catalog = Catalog(Router(tree.controllers), ModuleLoader(tree.root, reload=True), 16)
    catalog.resolve("/m/C/m")
    path.unlink()
    with pytest.raises(RouteNotFound):
        catalog.resolve("/m/C/m")


# --- Bad input over HTTP: every one is a 404 envelope --------------------------------

BAD_PATHS = [
    "/..",
    "/../m/C/m",
    "/m/../m/C/m",
    "/%2e%2e/m/C/m",
    "/.%2e/m/C/m",
    "/./m/C/m",
    "/m/C/m/..",
    "/sub%2fm/C/m",
    "/sub%2Fm/C/m",
    "/sub%5cm/C/m",
    "/m//C/m",
    "/m/C//m",
    "/m/C/m/",
    "/m.py/C/m",
    "/caf%C3%A9/C/m",
    "/m/C%C3%A9/m",
    "/m/C/m%00",
    "/m/C/m/-1",
    "/m/C/m/.x",
    "/m/C/m/_x",
    "/_m/C/m",
    "/m/_C/m",
    "/m/C/_m",
    "/m/C/__init__",
    "/m/C/__class__",
    "/m/C/__dict__",
    "/m/C/__repr__",
    "/m/__builtins__/x",
    "/m/C/m/" + "a" * 2000,
    "/m/C/m/" + "/".join(["a"] * 40),
    "/m/C/m/" + "a" * 200,
    "/1m/C/m",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_paths_are_404(make_app: t.Callable[..., Flask], tree: ControllerTree,
                           path: str) -> None:
    tree.write("m.py", "class C:\n    def m(self, *args):\n        return 'ran'\n")
    tree.write("sub/m.py", "class C:\n    def m(self):\n        return 'ran'\n")
    client = make_app(DEBUG=True).test_client()
    assert client.get("/m/C/m").data == b"ran"  # the good path works
    error = assert_error(client.get(path), 404, "not_found")
    assert error["detail"]  # debug mode says which step failed


def test_newline_in_path_is_404(make_app: t.Callable[..., Flask], tree: ControllerTree) -> None:
    tree.write("m.py", HELLO)
    assert_error(make_app().test_client().get("/m/C/m%0a"), 404, "not_found")


@pytest.mark.parametrize("path", ["//etc/passwd", "//m/C/m", "///m/C/m", "/m//C/m"])
def test_absolute_looking_paths_are_404(make_app: t.Callable[..., Flask],
                                        tree: ControllerTree, path: str) -> None:
    tree.write("m.py", HELLO)
    client = make_app().test_client()
    # The test client would read "//host/..." as a host name: set the path directly.
    response = client.get("/", environ_overrides={"PATH_INFO": path, "REQUEST_URI": path})
    assert_error(response, 404, "not_found")


def test_404_body_has_no_detail_without_debug(make_app: t.Callable[..., Flask],
                                              tree: ControllerTree) -> None:
    tree.write("m.py", HELLO)
    error = assert_error(make_app().test_client().get("/m/Nope/m"), 404, "not_found")
    assert "detail" not in error


@pytest.mark.parametrize("path", ["/status/C/m", "/_kernkoa/C/m", "/images/C/m", "/pdfs/C/m"])
def test_reserved_prefixes_never_reach_controllers(make_app: t.Callable[..., Flask],
                                                   tree: ControllerTree, path: str) -> None:
    name = path.split("/")[1]
    tree.write(f"{name}.py", HELLO)
    response = make_app().test_client().get(path)
    assert response.status_code == 404
    assert response.data != b"hello"


# --- Nothing outside the controller folder is ever imported or read ------------------

EVIL = """
from pathlib import Path
Path({marker!r}).write_text("evil code ran")

class x:
    def y(self):
        return "evil"
"""


@pytest.fixture
def evil(tmp_path: Path, tree: ControllerTree, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Plant ``evil.py`` (writes a marker when imported) around the catalog; return the marker.

    Copies sit in ``tmp_path``, in the catalog root beside ``controller/`` and in
    ``catalog/model/``; ``tmp_path`` is even put on ``sys.path`` so that a kernel
    using the import system by name would find it.
    """
    marker = tmp_path / "marker"
    for folder in (tmp_path, tree.root, tree.root / "model"):
        folder.mkdir(exist_ok=True)
        (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    (tree.controllers / "link").symlink_to(tmp_path, target_is_directory=True)
    (tree.controllers / "evillink.py").symlink_to(tmp_path / "evil.py")
    (tree.controllers / "sub").mkdir()
    (tree.controllers / "sub" / "evil.py").symlink_to(tree.root / "evil.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


TRAVERSALS = [
    "/evil/x/y",
    "/../evil/x/y",
    "/../../evil/x/y",
    "/../model/evil/x/y",
    "/%2e%2e/evil/x/y",
    "/%2e%2e/%2e%2e/evil/x/y",
    "/%2E%2E/%2E%2E/evil/x/y",
    "/..%2fevil/x/y",
    "/..%2f..%2fevil/x/y",
    "/..%5c..%5cevil/x/y",
    "/.%2e/.%2e/evil/x/y",
    "/model/evil/x/y",
    "/link/evil/x/y",
    "/link/catalog/evil/x/y",
    "/link/catalog/model/evil/x/y",
    "/evillink/x/y",
    "/sub/evil/x/y",
    "/os/getcwd/format",
    "/sys/exit/x",
    "/this/x/y",
    "/json/JSONEncoder/encode",
    "/config/x/y",
    "/kernkoa/x/y",
]


def test_no_traversal_imports_or_reads_outside(
    make_app: t.Callable[..., Flask], tree: ControllerTree, evil: Path
) -> None:
    tree.write("m.py", HELLO)
    client = make_app().test_client()
    path_before = list(sys.path)
    modules_before = set(sys.modules)
    for path in TRAVERSALS:
        for method in (client.get, client.post):
            assert_error(method(path), 404, "not_found")
    for path in TRAVERSALS:  # and over the absolute-looking form
        absolute = str(tree.controllers) + path
        response = client.get("/", environ_overrides={"PATH_INFO": "/" + absolute})
        assert_error(response, 404, "not_found")
    assert not evil.exists()
    assert sys.path == path_before
    assert not {m for m in set(sys.modules) - modules_before if "evil" in m or m == "this"}
    assert client.get("/m/C/m").data == b"hello"


def test_import_of_evil_works_at_all(evil: Path) -> None:
    """Guards the test above: importing the planted module does write the marker."""
    import importlib

    module = importlib.import_module("evil")
    try:
        assert evil.read_text() == "evil code ran"
    finally:
        del sys.modules[module.__name__]


def test_symlinked_file_inside_the_catalog_is_fine(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    real = tree.write("real.py", HELLO)
    (tree.controllers / "alias.py").symlink_to(real)
    assert make_app().test_client().get("/alias/C/m").data == b"hello"


@pytest.mark.parametrize("swap", ["file", "folder"])
def test_a_symlink_swapped_in_after_the_route_was_cached_is_refused(
    make_app: t.Callable[..., Flask], tree: ControllerTree, tmp_path: Path, swap: str
) -> None:
    """The containment check runs at every load, not only on the first resolution."""
    marker = tmp_path / "marker"
    outside = tmp_path / "outside"
    (outside / "shop").mkdir(parents=True)
    evil = EVIL.format(marker=str(marker)).replace("class x:", "class C:").replace(
        "def y(self)", "def m(self)")
    (outside / "evil.py").write_text(evil)
    (outside / "shop" / "cart.py").write_text(evil)
    tree.write("shop/cart.py", HELLO)
    client = make_app().test_client()
    assert client.get("/shop/cart/C/m").data == b"hello"  # resolved and cached
    if swap == "file":
        (tree.controllers / "shop" / "cart.py").unlink()
        (tree.controllers / "shop" / "cart.py").symlink_to(outside / "evil.py")
    else:
        (tree.controllers / "shop" / "cart.py").unlink()
        (tree.controllers / "shop").rmdir()
        (tree.controllers / "shop").symlink_to(outside / "shop", target_is_directory=True)
    assert_error(client.get("/shop/cart/C/m"), 404)
    assert not marker.exists()


def test_a_fifo_swapped_in_is_refused_without_blocking(
    make_app: t.Callable[..., Flask], tree: ControllerTree
) -> None:
    tree.write("pipe.py", HELLO)
    client = make_app().test_client()
    assert client.get("/pipe/C/m").data == b"hello"
    (tree.controllers / "pipe.py").unlink()
    os.mkfifo(tree.controllers / "pipe.py")
    try:
        assert_error(client.get("/pipe/C/m"), 404)
    finally:
        # The module loaded from pipe.py stays in sys.modules: a later Hypothesis
        # test reads every loaded module's source, and would block on the FIFO.
        (tree.controllers / "pipe.py").unlink()
