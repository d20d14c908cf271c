"""One JSON envelope for every error status."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing as t

import pytest
from flask import Flask

import kernel
from kernel.core.errors import KernKoaError
from kernel.web.envelope import envelope
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

RAISES = """
from kernkoa import *


class E:
    def boom(self):
        raise ValueError("secret internals")

    def aborts(self):
        abort(403)

    def unauthorized(self):
        abort(401)

    def unavailable(self):
        abort(503)

    def exits(self):
        import sys
        sys.exit(1)

    def body(self, params=None):
        return "got " + str(len(params.form["big"]) if params else 0)

    def raw(self):
        return "raw"

    def reads(self):
        return str(len(request.get_data()))

"""


@pytest.fixture
def tree_with_errors(tree: ControllerTree) -> ControllerTree:
    """A catalog holding :data:`RAISES` as ``/e``."""
    tree.write("e.py", RAISES)
    return tree


def test_envelope_shape() -> None:
    assert envelope(404, "not_found", "gone", extra=1) == {
        "error": {"status": 404, "code": "not_found", "message": "gone", "extra": 1}}


def test_every_kernel_exception_derives_from_the_root() -> None:
    found = []
    for module in pkgutil.walk_packages(kernel.__path__, "kernel."):
        for value in vars(importlib.import_module(module.name)).values():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__.startswith("kernel.")):
                found.append(value)
    assert len(set(found)) > 25  # the walk did reach the modules
    assert [e for e in found if not issubclass(e, KernKoaError)] == []


def test_controller_exception_is_a_500_without_traceback(
    make_app: t.Callable[..., Flask], tree_with_errors: ControllerTree
) -> None:
    response = make_app().test_client().get("/e/E/boom")
    error = assert_error(response, 500, "internal_server_error")
    assert "detail" not in error
    assert b"secret internals" not in response.data
    assert b"Traceback" not in response.data


def test_controller_exception_traceback_in_debug(
    make_app: t.Callable[..., Flask], tree_with_errors: ControllerTree
) -> None:
    error = assert_error(make_app(DEBUG=True).test_client().get("/e/E/boom"), 500)
    assert "Traceback" in error["detail"]
    assert "ValueError: secret internals" in error["detail"]


def test_sys_exit_in_a_controller_is_a_500(
    make_app: t.Callable[..., Flask], tree_with_errors: ControllerTree
) -> None:
    client = make_app(DEBUG=True).test_client()
    error = assert_error(client.get("/e/E/exits"), 500, "internal_server_error")
    assert "sys.exit(1)" in error["detail"]
    assert client.get("/e/E/raw").data == b"raw"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/e/E/aborts", 403, "forbidden"),
        ("/e/E/unauthorized", 401, "unauthorized"),
        ("/e/E/unavailable", 503, "service_unavailable"),
    ],
)
def test_abort_statuses_use_the_envelope(make_app: t.Callable[..., Flask],
                                         tree_with_errors: ControllerTree, path: str,
                                         status: int, code: str) -> None:
    assert_error(make_app().test_client().get(path), status, code)


def test_413_for_a_body_above_the_limit(make_app: t.Callable[..., Flask],
                                        tree_with_errors: ControllerTree) -> None:
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    assert client.post("/e/E/body", data={"big": "x" * 500}).data == b"got 500"
    for path in ("/e/E/body", "/e/E/raw", "/e/E/reads"):
        assert_error(client.post(path, data={"big": "x" * 5000}), 413,
                     "request_entity_too_large")
        assert_error(client.post(path, data=b'{"big": "' + b"x" * 5000 + b'"}',
                                 content_type="application/json"), 413)


def test_flask_own_errors_use_the_envelope(make_app: t.Callable[..., Flask],
                                           tree_with_errors: ControllerTree) -> None:
    client = make_app().test_client()
    response = client.open("/e/E/raw", method="TRACE")
    assert_error(response, 405)
    assert "Allow" in response.headers
