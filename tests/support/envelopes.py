"""The kernel's JSON error envelope, as the tests check it."""

from __future__ import annotations

import typing as t

from werkzeug.test import TestResponse


def assert_error(response: TestResponse, status: int, code: str | None = None) -> dict[str, t.Any]:
    """Check that ``response`` is the kernel's JSON error envelope; return its inner dict."""
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    else:
        assert isinstance(error["code"], str) and error["code"]
    assert ("fields" in error) == (status == 422)
    return t.cast(dict[str, t.Any], error)
