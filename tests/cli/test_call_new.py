"""``kernkoa call`` and ``kernkoa new controller``, end to end in a user's project."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from unittest.mock import ANY

import pytest

from kernel.cli.main import main
from tests.support.processes import BIN
from tests.support.processes import clean_environ
from tests.support.tasks import Stack
from tests.testing.userproject import make_project
from tests.testing.userproject import run_pytest


def kernkoa(project: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the ``kernkoa`` command in ``project``'s folder."""
    return subprocess.run([str(BIN / "kernkoa"), *args], cwd=project,
                          env=clean_environ(**settings), capture_output=True, text=True,
                          timeout=180, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


def test_call_prints_the_result_as_json(project: Path) -> None:
    done = kernkoa(project, "call", "/shop/cart/Cart/add", "item=3", "qty=2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"added": 3, "qty": 2}
    done = kernkoa(project, "call", "/shop/cart/Cart/add", "--json", '{"item": 4}')
    assert json.loads(done.stdout) == {"added": 4, "qty": 1}
    done = kernkoa(project, "call", "/shop/cart/Cart/add", "--method", "GET", "item=5")
    assert json.loads(done.stdout) == {"added": 5, "qty": 1}
    # A _celery method runs here, eagerly, through the same binding.
    done = kernkoa(project, "call", "/shop/cart/Cart/count_celery", "n=3")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"counted": 3}


@pytest.mark.parametrize(("args", "code", "said"), [
    (["item=x"], 1, '"code": "unprocessable_entity"'),
    (["--json", '{"item": "x"}'], 1, '"source": "json"'),
    (["--json", "[3]"], 2, "--json must be a JSON object"),
    (["--json", "{"], 2, "kernkoa call:"),
    (["item"], 2, "expected name=value, got 'item'"),
    (["=3"], 2, "expected name=value"),
])
def test_call_refuses_with_the_envelope(project: Path, args: list[str], code: int, said: str,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # In this process (the command's whole path runs above, as a subprocess).
    monkeypatch.chdir(project)
    assert main(["call", "/shop/cart/Cart/add", *args]) == code
    out, err = capsys.readouterr()
    assert said in err
    assert out == ""


def test_call_reports_a_failed_task_and_a_missing_route(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(project)
    assert main(["call", "/shop/cart/Cart/fail_celery"]) == 1
    err = capsys.readouterr().err
    assert json.loads(err[err.index('{\n  "status"'):]) == {
        "status": "FAILURE", "error": {"type": "LookupError", "message": "no such basket"},
        "request_id": ANY}
    assert main(["call", "/shop/cart/Nothing/here"]) == 1
    assert '"status": 404' in capsys.readouterr().err


def test_call_send_goes_to_the_broker_and_a_worker(project: Path, tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        # The worker of the same project (found from KERNKOA_PATH, as every command does).
        stack.worker(clean_environ(PATH=str(project)), "--concurrency=1")
        done = kernkoa(project, "call", "/shop/cart/Cart/count_celery", "n=2", "--send",
                       "--timeout", "60")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"counted": 2}
        assert "kernkoa.run" in stack.workers[0].log.read_text()
    finally:
        stack.close()


def test_new_controller_writes_a_controller_and_a_passing_test(tmp_path: Path) -> None:
    project = tmp_path / "shop-site"
    (project / "catalog" / "controller").mkdir(parents=True)
    done = kernkoa(project, "new", "controller", "shop/cart", "--celery")
    assert done.returncode == 0, done.stderr
    controller = project / "catalog/controller/shop/cart.py"
    test = project / "tests/test_shop_cart.py"
    assert f"wrote {controller}" in done.stdout and f"wrote {test}" in done.stdout
    source = controller.read_text()
    assert source.startswith('"""') and "class Cart:" in source
    assert re.search(r"def hello\(self, name: str = \"world\"\) -> dict\[str, str\]:", source)
    result = run_pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b2 passed\b", result.stdout), result.stdout


@pytest.mark.parametrize(("args", "code", "said"), [
    (["shop/cart"], 1, "exists already"),
    (["shop/9cart"], 2, "'9cart' is not a controller name"),
    (["shop/../cart"], 2, "'..' is not a controller name"),
    (["shop/cart", "--class", "my-cart"], 2, "'my-cart' is not a controller name"),
    ([""], 2, "'' is not a controller name"),
    (["status/cart"], 2, "/status/ is the kernel's own"),
])
def test_new_controller_refuses(tmp_path: Path, args: list[str], code: int, said: str,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "site"
    (project / "catalog/controller/shop").mkdir(parents=True)
    (project / "catalog/controller/shop/cart.py").write_text("# mine\n")
    monkeypatch.chdir(project)
    assert main(["new", "controller", *args]) == code
    assert said in capsys.readouterr().err
    assert (project / "catalog/controller/shop/cart.py").read_text() == "# mine\n"
    assert not (project / "tests").exists()


def test_new_controller_with_a_class_name(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "site"
    (project / "deeper").mkdir(parents=True)
    (project / "config.py").write_text("DEBUG = False\n")
    # The project is found above the current folder.
    monkeypatch.chdir(project / "deeper")
    assert main(["new", "controller", "reports/monthly", "--class", "Report"]) == 0
    assert "class Report:" in (project / "catalog/controller/reports/monthly.py").read_text()
    assert '"/reports/monthly/Report/hello"' in (
        project / "tests/test_reports_monthly.py").read_text()


