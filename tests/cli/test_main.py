"""The ``kernkoa`` command, run as the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kernel.cli.main import build_parser
from kernel.core.settings import PROJECT_ROOT
from tests.support.catalogs import ControllerTree
from tests.support.processes import BIN
from tests.support.processes import free_port
from tests.support.processes import stop
from tests.support.processes import wait_for_http
from tests.support.sample_catalog import EXPECTED_ROUTES
from tests.support.sample_catalog import write_catalog


def kernkoa(*args: str, catalog: Path) -> subprocess.CompletedProcess[str]:
    """Run ``.venv/bin/kernkoa ARGS`` on ``catalog``; return the finished process."""
    return subprocess.run(
        [str(BIN / "kernkoa"), *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, "KERNKOA_CATALOG": str(catalog)},
    )


def test_routes_lists_every_routable_url(tree: ControllerTree) -> None:
    write_catalog(tree)
    result = kernkoa("routes", catalog=tree.root)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [row[1] for row in rows if row[2:3] != ["="]] == EXPECTED_ROUTES
    assert rows[0] == ["GET,HEAD,POST", "/index/index/index", "The", "home", "page."]
    # The short forms that answer, each on a row of its own after its method.
    assert rows[1:3] == [["GET,HEAD,POST", "/index/index", "=", "/index/index/index"],
                         ["GET,HEAD,POST", "/", "=", "/index/index/index"]]
    assert len(rows) == len(EXPECTED_ROUTES) + 2
    assert "broken.py" in result.stderr


def test_routes_json(tree: ControllerTree) -> None:
    write_catalog(tree)
    result = kernkoa("routes", "--json", catalog=tree.root)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert [r["url"] for r in listing["routes"]] == EXPECTED_ROUTES
    order = next(r for r in listing["routes"] if r["method"] == "order_celery")
    assert order["kind"] == "celery" and order["http_methods"] == ["POST"]
    assert order["class"] == "Cart"
    # The same document as /_kernkoa/endpoints: paths relative to the catalog root.
    assert order["file"] == "controller/shop/cart.py"
    assert [Path(b["file"]).name for b in listing["broken"]] == ["broken.py"]


def test_check_names_a_broken_file(tree: ControllerTree) -> None:
    tree.write("fine.py", "class C:\n    def m(self):\n        return 1\n")
    broken = tree.write("deep/broken.py", "class C:\n    def m(self)\n")
    result = kernkoa("check", catalog=tree.root)
    assert result.returncode == 1
    assert f"FAILED {broken}" in result.stderr
    assert "SyntaxError" in result.stderr
    assert "1 routes, 1 broken controller file(s)" in result.stdout


def test_check_passes_on_a_good_catalog(tree: ControllerTree) -> None:
    tree.write("fine.py", "class C:\n    def m(self):\n        return 1\n")
    result = kernkoa("check", catalog=tree.root)
    assert result.returncode == 0, result.stderr
    assert "1 routes, 0 broken controller file(s)" in result.stdout


def test_check_passes_on_the_shipped_catalog() -> None:
    result = kernkoa("check", catalog=PROJECT_ROOT / "catalog")
    assert result.returncode == 0, result.stderr


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.debug, args.no_worker) == (None, None, False, False)


def test_python_kernkoa_py_serves(tree: ControllerTree, tmp_path: Path) -> None:
    tree.write("m.py", "class C:\n    def m(self):\n        return 'served'\n")
    port = free_port()
    with open(tmp_path / "kernkoa-py.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "kernkoa.py", "--port", str(port)], cwd=PROJECT_ROOT,
            env={**os.environ, "KERNKOA_CATALOG": str(tree.root)},
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/", process)
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/m/C/m", timeout=10) as r:
                assert r.read() == b"served"
        finally:
            stop(process)
    assert process.returncode is not None
