"""The real parts some tests start, and the pytest markers that name them.

Each of ``redis``, ``uwsgi``, ``nginx``, ``chromium``, ``rabbitmq`` and ``postgres`` is
a marker (registered in ``pyproject.toml``), so ``pytest -m "not uwsgi"`` leaves out
every test that starts uWSGI. A test gets a marker from a fixture of
:data:`FIXTURE_PARTS` it uses, directly or through another fixture (``conftest.py``
applies them), or from its module's ``pytestmark`` or its own decorator.

The helpers that start a part call :func:`require`: a test that starts a part
without carrying its marker fails, so a selection by marker cannot silently miss it.
"""

from __future__ import annotations

import pytest

#: Every real part a test may start, each a marker of the same name.
PARTS = ("redis", "uwsgi", "nginx", "chromium", "rabbitmq", "postgres")

#: Fixtures of ``conftest.py`` that start a part: every test that uses one gets its marker.
FIXTURE_PARTS = {"redis": "redis", "page": "chromium"}

#: The test being set up, run or torn down (set by ``conftest.py``), if any.
_current: list[pytest.Item] = []


def mark_by_fixtures(items: list[pytest.Item]) -> None:
    """Give each test the marker of every part a fixture it uses starts."""
    for item in items:
        # A parameter of @pytest.mark.parametrize is named among the fixtures too.
        parameters = item.callspec.params if hasattr(item, "callspec") else {}
        for fixture, part in FIXTURE_PARTS.items():
            if fixture in getattr(item, "fixturenames", ()) and fixture not in parameters:
                item.add_marker(part)


def running(item: pytest.Item) -> None:
    """Note the test whose set-up starts now (module fixtures start in their first test's)."""
    _current[:] = [item]


def require(part: str) -> None:
    """Fail the current test unless it carries the ``part`` marker (outside a test: no check)."""
    if _current and _current[0].get_closest_marker(part) is None:
        pytest.fail(f"{_current[0].nodeid} starts {part} but is not marked {part!r}: add "
                    f"pytest.mark.{part} to the test (or to pytestmark) so that "
                    f"`-m \"not {part}\"` leaves it out", pytrace=False)
