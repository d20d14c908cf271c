"""A user's project outside the repository, tested only with the kit's plugin.

The package is the one this suite runs from (installed in the project's
virtualenv, editable, with its ``pytest11`` entry point, as ``pip install`` leaves
it): the project holds no conftest line naming the plugin, and pytest runs as a
subprocess in the project's folder, so its rootdir is the project.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from kernel.core.settings import PROJECT_ROOT
from tests.support.processes import clean_environ

CART = '''
from kernkoa import *


class Cart:
    """A shopping cart."""

    def add(self, item: int, qty: int = 1) -> dict:
        """Add ``qty`` of ``item``."""
        return {"added": item, "qty": qty}

    def count_celery(self, task, n: int = 3) -> dict:
        """Count to ``n``, reporting progress."""
        for step in range(1, n + 1):
            task.progress(step, n, "step %d" % step)
        return {"counted": n}

    def wait_celery(self, task, steps: int = 400):
        """Work in small steps, reporting progress (so a cancellation stops it)."""
        for step in range(steps):
            task.progress(step)
            time.sleep(0.05)
        return "worked"

    def fail_celery(self, task):
        raise LookupError("no such basket")

    def later(self, n: int = 2) -> dict:
        """Start count_celery from a controller, as KernKoa's exeTask does."""
        return exeTask(self, "count_celery", {"n": n})


@requires("orders")
class Orders:
    def index(self) -> dict:
        return {"orders": []}
'''

CONFTEST = '''
import pytest


@pytest.fixture
def kernkoa_settings():
    return {"ADDONS": ["jwt_auth", "basic_auth"]}
'''

TESTS = '''
import json
import os
import time

import pytest
from kernel.client import CallError
from kernel.client import TaskFailed


def test_add(kernkoa_client):
    assert kernkoa_client.call("/shop/cart/Cart/add", item=3) == {"added": 3, "qty": 1}


def test_add_as_get_and_raw(kernkoa_client):
    assert kernkoa_client.call("/shop/cart/Cart/add", method="GET", item="4") == {
        "added": 4, "qty": 1}
    response = kernkoa_client.post("/shop/cart/Cart/add", item=5, qty=2)
    assert response.status_code == 200 and response.json() == {"added": 5, "qty": 2}


def test_refused_fields_carry_the_envelope(kernkoa_client):
    with pytest.raises(CallError) as caught:
        kernkoa_client.call("/shop/cart/Cart/add", item="x")
    assert caught.value.status == 422
    assert caught.value.fields[0]["name"] == "item"


def test_settings_per_test(kernkoa_app):
    assert kernkoa_app.debug is True


@pytest.mark.kernkoa(settings={"DEBUG": False})
def test_settings_by_marker(kernkoa_app):
    assert kernkoa_app.debug is False


def test_auth_helpers(kernkoa_client):
    with pytest.raises(CallError) as caught:
        kernkoa_client.call("/shop/cart/Orders", method="GET")
    assert caught.value.status == 401
    assert kernkoa_client.with_token("orders").call("/shop/cart/Orders", method="GET") == {
        "orders": []}
    assert kernkoa_client.with_user("orders").call("/shop/cart/Orders", method="GET") == {
        "orders": []}
    with pytest.raises(CallError) as caught:
        kernkoa_client.with_token("other").call("/shop/cart/Orders", method="GET")
    assert caught.value.status == 403


def test_cancel_before_it_runs(kernkoa_client):
    task = kernkoa_client.start("/shop/cart/Cart/count_celery", n=2)
    task.cancel()
    assert task.status == "REVOKED"
    with pytest.raises(TaskFailed, match="cancelled"):
        task.wait(5)


def outcomes(client):
    """What the same tasks give, recorded to compare eager with worker."""
    task = client.start("/shop/cart/Cart/count_celery", n=4)
    found = {"start": task.wait(60), "status": task.status,
             "call": client.call("/shop/cart/Cart/count_celery", n=2)}
    started = client.call("/shop/cart/Cart/later", n=3)
    found["exeTask"] = client.wait(started["id"], 60)
    failed = client.start("/shop/cart/Cart/fail_celery")
    with pytest.raises(TaskFailed) as caught:
        failed.wait(60)
    found["failure"] = [failed.status, caught.value.type, caught.value.error_message]
    return found


def record(mode, found):
    with open(os.path.join(os.environ["KIT_OUTCOMES"], mode + ".json"), "w") as out:
        json.dump(found, out)


def test_tasks_eagerly(kernkoa_client):
    record("eager", outcomes(kernkoa_client))


@pytest.mark.kernkoa(tasks="worker")
def test_tasks_on_a_worker(kernkoa_client):
    record("worker", outcomes(kernkoa_client))
    task = kernkoa_client.start("/shop/cart/Cart/wait_celery")
    deadline = time.monotonic() + 60
    while task.progress is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert task.status == "PROGRESS"
    task.cancel()
    with pytest.raises(TaskFailed, match="cancelled"):
        task.wait(60)
'''


def make_project(root: Path) -> Path:
    """The user's project: a controller, a conftest that only sets settings, tests, and
    the auth add-ons copied beside (as a project ships its own)."""
    files = {"catalog/controller/shop/cart.py": CART, "tests/conftest.py": CONFTEST,
             "tests/test_cart.py": TESTS}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    addons = root / "system" / "addons"
    addons.mkdir(parents=True)
    for name in ("jwt_auth.py", "basic_auth.py"):
        shutil.copy(PROJECT_ROOT / "system" / "addons" / name, addons / name)
    return root


def run_pytest(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``project``, as its developer would run it."""
    environ = clean_environ()
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project, env=environ, capture_output=True, text=True, timeout=300, check=False)
