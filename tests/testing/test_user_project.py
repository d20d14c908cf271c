"""The test kit in a user's project: written only with the plugin, run by pytest."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from kernel.core.settings import PROJECT_ROOT
from tests.testing.userproject import make_project
from tests.testing.userproject import run_pytest


def test_a_project_tested_with_the_plugin_passes_eager_and_worker_alike(
        tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    outcomes = tmp_path / "outcomes"
    outcomes.mkdir()
    result = run_pytest(project, KIT_OUTCOMES=str(outcomes))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b9 passed\b", result.stdout), result.stdout
    # The same tasks give the same results in the test's process and on a worker.
    eager = json.loads((outcomes / "eager.json").read_text())
    worker = json.loads((outcomes / "worker.json").read_text())
    assert eager == worker
    assert eager == {"start": {"counted": 4}, "status": "SUCCESS", "call": {"counted": 2},
                     "exeTask": {"counted": 3},
                     "failure": ["FAILURE", "LookupError", "no such basket"]}


def test_a_broken_controller_fails_the_right_test_readably(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    cart = project / "catalog/controller/shop/cart.py"
    # A slip in one method: the others keep working.
    cart.write_text(cart.read_text().replace(
        'return {"added": item, "qty": qty}', 'return {"added": item + "s", "qty": qty}'))
    result = run_pytest(project, "-k", "add or refused")
    assert result.returncode == 1, result.stdout + result.stderr
    failed = re.findall(r"^FAILED (\S+)", result.stdout, re.M)
    assert failed == ["tests/test_cart.py::test_add", "tests/test_cart.py::test_add_as_get_and_raw"]
    assert "1 passed" in result.stdout
    # The failure names the request, the status and the controller's own exception.
    assert "POST /shop/cart/Cart/add: 500 internal_server_error" in result.stdout
    assert ("TypeError: unsupported operand type(s) for +: 'int' and 'str'"
            in result.stdout), result.stdout
    assert 'cart.py", line 9, in add' in result.stdout


def test_the_plugin_is_inert_until_used_and_the_client_stands_alone() -> None:
    # Loading the plugin (as pytest does in every run) imports nothing of the kernel's
    # app; the client imports nothing of the server side.
    code = ("import sys, kernel.testing.plugin; "
            "heavy = [m for m in ('flask', 'werkzeug', 'celery', 'httpx', 'kernel.app') "
            "if m in sys.modules]; "
            "import kernel.client; "
            "heavy += [m for m in ('flask', 'werkzeug', 'celery', 'kernel.core.errors') "
            "if m in sys.modules]; "
            "print(heavy)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, check=True)
    assert found.stdout.strip() == "[]"


def test_the_plugin_loads_beside_this_suites_fixtures(request: object) -> None:
    config = request.config  # type: ignore[attr-defined]
    assert config.pluginmanager.has_plugin("kernkoa")
    names = config.pluginmanager.get_plugin("kernkoa").__dict__
    assert {"kernkoa_app", "kernkoa_client", "kernkoa_project", "kernkoa_settings"} <= set(names)
    # This suite's own fixtures keep their names: none of the plugin's is one of them.
    ours = {"app", "client", "tree", "make_app", "users", "redis", "page", "serve"}
    assert not ours & {name for name in names if not name.startswith("_")}
    assert (PROJECT_ROOT / "tests" / "conftest.py").exists()
