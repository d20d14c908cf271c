"""The nginx error pages setup.sh installs: the kernel's own envelopes, quoted for nginx.

tests/deploy/test_setup.py sends the errors through a real nginx; here, the directives
themselves, against what the app answers for the same statuses.
"""

from __future__ import annotations

import json
import re
import typing as t

import pytest
from flask import Flask

from kernel.cli.nginx_errors import LOCATION
from kernel.cli.nginx_errors import NGINX_STATUSES
from kernel.cli.nginx_errors import directives
from kernel.cli.nginx_errors import quoted
from tests.support.catalogs import ControllerTree

#: ``return <status> '<body>';`` in a generated location.
RETURN = re.compile(r"return (\d{3}) '((?:[^'\\]|\\.)*)';")


def unquoted(text: str) -> str:
    """What nginx reads from a single-quoted string's inside."""
    return re.sub(r"\\(.)", r"\1", text)


def returned_bodies() -> dict[int, bytes]:
    """The body each generated location returns, by status, as nginx sends it."""
    return {int(status): unquoted(body).encode()
            for status, body in RETURN.findall(directives())}


def test_every_status_nginx_generates_has_a_page_and_a_location() -> None:
    text = directives()
    bodies = returned_bodies()
    for generated, sent in NGINX_STATUSES.items():
        location = LOCATION.format(status=sent)
        assert f"error_page {generated} ={sent} {location};" in text
        assert f"location = {location} {{\n    internal;" in text
        error = json.loads(bodies[sent])["error"]
        assert error["status"] == sent and error["code"] and error["message"]
    assert NGINX_STATUSES[494] == 431


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/images/missing.png", None, 404),                # nginx: a static miss
    ("POST", "/echo/Echo/index", {"text": "x" * 2048}, 413),  # over client_max_body_size
])
def test_nginx_answers_as_the_app_does(tree: ControllerTree, make_app: t.Callable[..., Flask],
                                       method: str, path: str, body: dict[str, str] | None,
                                       status: int) -> None:
    tree.write("echo.py", "class Echo:\n    def index(self, text=''):\n        return text\n")
    app = make_app(MAX_CONTENT_LENGTH=1024)
    response = app.test_client().open(path, method=method, data=body)
    assert response.status_code == status
    assert returned_bodies()[status] == response.data


def test_quoting_escapes_what_nginx_unescapes() -> None:
    text = "it's a \\ back'slash"
    assert unquoted(quoted(text)[1:-1]) == text
    with pytest.raises(ValueError, match="cannot quote"):
        quoted("costs $5")
