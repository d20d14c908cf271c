"""The app factory, static folders, the ``kernkoa`` module and its import-time promises."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import typing as t
from pathlib import Path

import pytest
from flask import Flask

import kernkoa
from kernel.core.settings import PROJECT_ROOT
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

#: What ``from kernkoa import *`` gives controllers.
DOCUMENTED_NAMES = {
    "ParameterError", "Response", "abort", "config", "cron", "dbs", "escape", "every", "exeTask",
    "json",
    "jsonify", "load",
    "methods", "public", "redirect", "render", "render_template", "request", "requires",
    "send_file", "session",
    "stream_template", "task_options", "time", "url_for",
}


def run_python(code: str, **env: str) -> dict[str, t.Any]:
    """Run ``code`` in a fresh interpreter at the project root; return what it prints as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return t.cast(dict[str, t.Any], json.loads(result.stdout))


def test_import_starts_no_thread_opens_no_socket_builds_no_app() -> None:
    found = run_python("""
        import json, socket, sys, threading
        opened = []
        real = socket.socket.__init__
        def spy(self, *args, **kwargs):
            opened.append(repr(args))
            real(self, *args, **kwargs)
        socket.socket.__init__ = spy
        before = threading.active_count()
        import kernkoa
        import kernel
        from kernel import app, cli, web, catalog
        import kernel.cli.main, kernel.web.dispatch, kernel.catalog.registry
        ns = {}
        exec("from kernkoa import *", ns)
        print(json.dumps({
            "threads": threading.active_count() - before,
            "sockets": opened,
            "app_built": app._default_app is not None,
            "catalog_modules": sorted(m for m in sys.modules if m.startswith("kernkoa_catalog")),
        }))
    """)
    assert found == {"threads": 0, "sockets": [], "app_built": False, "catalog_modules": []}


def test_star_import_gives_exactly_the_documented_names() -> None:
    namespace: dict[str, t.Any] = {}
    exec("from kernkoa import *", namespace)
    assert set(namespace) - {"__builtins__"} == DOCUMENTED_NAMES == set(kernkoa.__all__)


def test_escape_returns_plain_str() -> None:
    assert kernkoa.escape("<a href='x'>&") == "&lt;a href=&#x27;x&#x27;&gt;&amp;"
    assert type(kernkoa.escape(3)) is str


def test_kernkoa_app_is_built_on_first_use() -> None:
    found = run_python("""
        import json
        import kernkoa
        from flask import Flask
        from kernel import app as factory
        before = factory._default_app
        in_dict = "app" in vars(kernkoa)  # uWSGI looks the callable up in the dict
        real = kernkoa.app._get_current_object()
        print(json.dumps({"before": before is None, "in_dict": in_dict,
                          "built": factory._default_app is real,
                          "flask": isinstance(kernkoa.app, Flask),
                          "callable": callable(vars(kernkoa)["app"])}))
    """)
    assert found == {"before": True, "in_dict": True, "built": True, "flask": True,
                     "callable": True}


def test_kernkoa_app_serves_as_wsgi(monkeypatch: pytest.MonkeyPatch) -> None:
    from werkzeug.test import Client

    import kernel.app

    monkeypatch.setattr(kernel.app, "_default_app", None)
    response = Client(kernkoa.app).get("/fasthelloworld/fastHelloClass/fastHelloWorld")
    assert response.data == b"hello world!!."


def test_unknown_kernkoa_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        kernkoa.nothing  # noqa: B018


def test_app_factory_imports_no_controller(tree: ControllerTree,
                                           make_app: t.Callable[..., Flask]) -> None:
    marker = tree.root / "imported"
    tree.write("m.py", f"open({str(marker)!r}, 'w').close()\n")
    make_app()
    assert not marker.exists()


def test_base_prefix(make_app: t.Callable[..., Flask], tree: ControllerTree) -> None:
    tree.write("index.py", "class index:\n    def index(self):\n        return 'root'\n")
    tree.write("m.py", "class C:\n    def m(self):\n        return 'm'\n")
    client = make_app(base="/api").test_client()
    assert client.get("/api/m/C/m").data == b"m"
    assert client.get("/api/").data == b"root"
    assert client.get("/api").data == b"root"
    assert_error(client.get("/m/C/m"), 404)


def test_custom_index_route(make_app: t.Callable[..., Flask], tree: ControllerTree) -> None:
    tree.write("home/page.py", "class Page:\n    def show(self):\n        return 'home'\n")
    assert make_app(INDEX_ROUTE="home/page/Page/show").test_client().get("/").data == b"home"


def test_missing_index_is_404(make_app: t.Callable[..., Flask]) -> None:
    assert_error(make_app().test_client().get("/"), 404)


def test_shadowed_controllers_are_reported(make_app: t.Callable[..., Flask],
                                           tree: ControllerTree,
                                           caplog: pytest.LogCaptureFixture) -> None:
    tree.write("status.py", "class C:\n    pass\n")
    tree.write("images/x.py", "class C:\n    pass\n")
    tree.write("fine.py", "class C:\n    pass\n")
    with caplog.at_level(logging.WARNING, logger="kernkoa"):
        make_app()
    shadowed = sorted(r.getMessage() for r in caplog.records)
    assert len(shadowed) == 2
    assert "status.py" in shadowed[1] and "/status/" in shadowed[1]
    assert "images" in shadowed[0]


# --- Static folders ---------------------------------------------------------------------


@pytest.fixture
def static_app(make_app: t.Callable[..., Flask], tmp_path: Path) -> Flask:
    """An app whose ``/images`` and ``/pdfs`` are tmp folders, with secrets beside them."""
    images, pdfs = tmp_path / "img", tmp_path / "pdf"
    (images / "sub").mkdir(parents=True)
    pdfs.mkdir()
    (images / "logo.png").write_bytes(b"\x89PNG logo")
    (images / "sub" / "deep.gif").write_bytes(b"GIF89a")
    (pdfs / "doc.pdf").write_bytes(b"%PDF-1.4 doc")
    (tmp_path / "secret.png").write_bytes(b"secret")
    (tmp_path / "x").write_bytes(b"secret")
    return make_app(IMAGES=str(images), PDFS=str(pdfs))


@pytest.mark.parametrize(
    ("url", "body", "mimetype"),
    [
        ("/images/logo.png", b"\x89PNG logo", "image/png"),
        ("/images/sub/deep.gif", b"GIF89a", "image/gif"),
        ("/images?image=logo.png", b"\x89PNG logo", "image/png"),
        ("/pdfs/doc.pdf", b"%PDF-1.4 doc", "application/pdf"),
        ("/pdfs?pdf=doc.pdf", b"%PDF-1.4 doc", "application/pdf"),
    ],
)
def test_static_files_are_served(static_app: Flask, url: str, body: bytes,
                                 mimetype: str) -> None:
    with static_app.test_client().get(url) as response:
        assert response.status_code == 200
        assert response.mimetype == mimetype
        assert response.data == body


@pytest.mark.parametrize(
    "url",
    [
        "/images/../x",
        "/images/..%2fx",
        "/images/..%2Fsecret.png",
        "/images/%2e%2e/x",
        "/images/sub/../../x",
        "/images/../secret.png",
        "/images?image=../x",
        "/images?image=../secret.png",
        "/images?image=/etc/hostname",
        "/images?image=sub/../../x",
        "/pdfs/../x",
        "/pdfs?pdf=../x",
        "/pdfs?pdf=..%2fx",
        "/pdfs/../../../../etc/hostname",
        "/images/missing.png",
        "/images",
        "/images/",
        "/pdfs",
    ],
)
def test_static_paths_never_escape(static_app: Flask, url: str) -> None:
    with static_app.test_client().get(url) as response:
        assert_error(response, 404)
        assert b"secret" not in response.data


def test_static_absolute_filename_is_refused(static_app: Flask, tmp_path: Path) -> None:
    url = "/images/" + str(tmp_path / "secret.png")
    with static_app.test_client().get(url) as response:
        assert_error(response, 404)
