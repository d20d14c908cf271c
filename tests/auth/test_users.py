"""basic_auth: the users file, `kernkoa user add`, and the check."""

from __future__ import annotations

import base64
import hmac
import json
import os
import stat
import subprocess
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import kernel.auth.users
from kernel.auth.users import UserStore
from kernel.core.errors import AddonError
from kernel.core.errors import UsersError
from kernel.core.settings import PROJECT_ROOT
from tests.support.auth import CONTROLLERS
from tests.support.auth import PASSWORD
from tests.support.auth import basic
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error
from tests.support.processes import BIN


@pytest.fixture
def client(tree: ControllerTree, make_app: t.Callable[..., Flask],
           users: UserStore) -> FlaskClient:
    tree.write("shop.py", CONTROLLERS)
    return make_app(ADDONS=["basic_auth"]).test_client()


def assert_401(response: t.Any, code: str = "invalid_credentials") -> dict[str, t.Any]:
    error = assert_error(response, 401, code)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="kernkoa", charset="UTF-8"'
    return error


def test_good_user(client: FlaskClient) -> None:
    response = client.get("/shop/Reports", headers=basic("alice", PASSWORD))
    assert response.get_json() == {"reports": True, "who": "alice", "scopes": ["reports"]}


def test_wrong_password_and_unknown_user_look_alike(client: FlaskClient) -> None:
    wrong = assert_401(client.get("/shop/Reports", headers=basic("alice", "nope nope")))
    unknown = assert_401(client.get("/shop/Reports", headers=basic("mallory", PASSWORD)))
    assert wrong == unknown


def test_missing_and_malformed(client: FlaskClient) -> None:
    assert_401(client.get("/shop/Reports"), "unauthorized")
    for value in ("Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert_401(client.get("/shop/Reports", headers={"Authorization": value}))
    assert_401(client.get("/shop/Reports", headers=basic("alice", "x" * 5000)))


def test_scopes_from_the_file(client: FlaskClient) -> None:
    assert_error(client.get("/shop/Reports/purge", headers=basic("alice", PASSWORD)), 403)


def test_unknown_user_costs_a_hash_and_comparisons_are_constant_time(
        users: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real_check = kernel.auth.users.check_password_hash

    def spy_check(pwhash: str, password: str) -> bool:
        checked.append(pwhash)
        return real_check(pwhash, password)

    compared: list[int] = []
    real_compare = hmac.compare_digest

    def spy_compare(a: t.Any, b: t.Any) -> bool:
        compared.append(1)
        return real_compare(a, b)

    monkeypatch.setattr(kernel.auth.users, "check_password_hash", spy_check)
    monkeypatch.setattr(hmac, "compare_digest", spy_compare)
    assert users.verify("nobody", PASSWORD) is None
    assert users.verify("alice", "wrong one") is None
    assert users.verify("alice", PASSWORD) is not None
    # The unknown user was checked against a hash of the same kind as a real one.
    assert len(checked) == 3 and checked[0].split("$")[0] == checked[1].split("$")[0]
    assert checked[0] != checked[1]
    assert len(compared) == 3


def test_store_rules(tmp_path: Path, users: UserStore) -> None:
    with pytest.raises(UsersError, match="exists already"):
        users.add("alice", PASSWORD)
    users.add("alice", "another password", replace=True)
    assert users.verify("alice", "another password") is not None
    for name in ("", "a:b", "bad name", "-x", "x" * 65, "é"):
        with pytest.raises(UsersError, match="not a valid user name"):
            users.add(name, PASSWORD)
    with pytest.raises(UsersError, match="at least"):
        users.add("bob", "short")
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600
    assert PASSWORD not in users.path.read_text()
    users.remove("alice")
    with pytest.raises(UsersError, match="no user"):
        users.remove("alice")


def test_no_users_is_a_start_up_error(tree: ControllerTree,
                                      make_app: t.Callable[..., Flask]) -> None:
    with pytest.raises(AddonError, match="kernkoa user add"):
        make_app(ADDONS=["basic_auth"])


def test_both_schemes_challenge(tree: ControllerTree, make_app: t.Callable[..., Flask],
                                users: UserStore) -> None:
    from tests.support.auth import KEY

    tree.write("shop.py", CONTROLLERS)
    client = make_app(ADDONS=["jwt_auth", "basic_auth"], HMACKEY=KEY).test_client()
    response = client.get("/shop/Reports")
    assert response.status_code == 401
    challenges = response.headers.getlist("WWW-Authenticate")
    assert [c.split()[0] for c in challenges] == ["Bearer", "Basic"]
    assert client.get("/shop/Reports", headers=basic("alice", PASSWORD)).status_code == 200


def _kernkoa(*args: str, stdin: str | None, var: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KERNKOA_VAR": str(var)}
    return subprocess.run([str(BIN / "kernkoa"), *args], input=stdin, cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_user_add_command(tmp_path: Path, tree: ControllerTree,
                          make_app: t.Callable[..., Flask]) -> None:
    var = tmp_path / "var"
    done = _kernkoa("user", "add", "bob", "--scope", "reports", "--password-stdin",
                    stdin=PASSWORD + "\n", var=var)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    path = var / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = json.loads(path.read_text())["users"]["bob"]
    assert record["scopes"] == ["reports"] and record["hash"].startswith("scrypt:")

    again = _kernkoa("user", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n", var=var)
    assert again.returncode == 1 and "exists already" in again.stderr
    # No terminal and no --password-stdin: a clear refusal, never a hang or an echo.
    no_tty = _kernkoa("user", "add", "carol", stdin="secret123\n", var=var)
    assert no_tty.returncode == 1 and "--password-stdin" in no_tty.stderr
    listed = _kernkoa("user", "list", stdin=None, var=var)
    assert listed.stdout.split() == ["bob", "reports"]

    tree.write("shop.py", CONTROLLERS)
    client = make_app(ADDONS=["basic_auth"]).test_client()
    assert client.get("/shop/Reports", headers=basic("bob", PASSWORD)).status_code == 200
    # Removed while the app runs: the file is re-read on change.
    assert _kernkoa("user", "remove", "bob", stdin=None, var=var).returncode == 0
    _kernkoa("user", "add", "dave", "--password-stdin", stdin=PASSWORD + "\n", var=var)
    assert client.get("/shop/Reports", headers=basic("bob", PASSWORD)).status_code == 401
