"""The route listing: every routable URL of a catalog, and nothing else."""

from __future__ import annotations

import typing as t
from pathlib import Path

from flask import Flask

from kernel.catalog.registry import controller_files
from kernel.catalog.registry import scan
from kernel.web.state import state_of
from tests.support.catalogs import ControllerTree
from tests.support.sample_catalog import EXPECTED_ROUTES
from tests.support.sample_catalog import write_catalog


def test_controller_files_skip_unnameable_files(tree: ControllerTree) -> None:
    write_catalog(tree)
    names = [p.relative_to(tree.controllers).as_posix() for p in controller_files(tree.controllers)]
    assert names == ["broken.py", "index.py", "shop/cart.py", "status.py"]


def test_scan_lists_exactly_the_routable_urls(make_app: t.Callable[..., Flask],
                                              tree: ControllerTree) -> None:
    write_catalog(tree)
    app = make_app()
    routes, broken = scan(state_of(app).catalog)
    assert sorted(r.url for r in routes) == EXPECTED_ROUTES
    assert [b.file.name for b in broken] == ["broken.py"]
    assert "SyntaxError" in broken[0].error
    by_url = {r.url: r for r in routes}
    assert by_url["/index/index/index"].summary == "The home page."
    assert by_url["/shop/cart/Cart/add"].summary == ""
    assert by_url["/shop/cart/Cart/replace"].endpoint.http_methods == {"PUT"}
    client = app.test_client()
    for route in routes:  # every listed URL is served by its own method
        for verb in route.endpoint.http_methods:
            response = client.open(route.url, method=verb)
            assert response.status_code not in (404, 405), (route.url, verb)


def test_listing_skips_shadowed_and_escaping_files(tree: ControllerTree, tmp_path: Path) -> None:
    tree.write("a.py", "class C:\n    def m(self):\n        return 'file'\n")
    tree.write("a/b.py", "class C:\n    def m(self):\n        return 'shadowed'\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = tmp_path / "marker"
    (outside / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass C:\n    def m(self):\n        pass\n")
    (tree.controllers / "linked").symlink_to(outside, target_is_directory=True)
    assert list(controller_files(tree.controllers)) == [tree.controllers / "a.py"]
    assert not marker.exists()
