"""What a password check may cost: failed logins throttled per client, verified
passwords remembered, at most two hashes at once, client addresses behind
trusted proxies. Work is counted (hashes run), never timed."""

from __future__ import annotations

import base64
import threading
import typing as t

import pytest
import werkzeug.security
from flask import Flask
from flask.testing import FlaskClient

import kernel.auth.hashing
import kernel.auth.users
from kernel.auth.hashing import VerifiedPasswords
from kernel.auth.throttle import FailureThrottle
from kernel.auth.throttle import client_key
from kernel.auth.users import UserStore
from kernel.core.errors import PasswordChecksBusy
from kernel.core.errors import SettingsError
from kernel.web.proxies import TrustedProxies
from kernel.web.proxies import parse_proxies
from tests.support.auth import CONTROLLERS
from tests.support.auth import PASSWORD
from tests.support.auth import basic
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

WHO = """
from kernkoa import *


class Who:
    def index(self):
        return {"address": request.remote_addr}
"""


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password hash checked from now on (the stored hash it was checked against)."""
    checked: list[str] = []
    real = werkzeug.security.check_password_hash

    def counting(stored: str, password: str) -> bool:
        checked.append(stored)
        return real(stored, password)

    monkeypatch.setattr(kernel.auth.users, "check_password_hash", counting)
    return checked


@pytest.fixture
def app(tree: ControllerTree, make_app: t.Callable[..., Flask], users: UserStore) -> Flask:
    tree.write("shop.py", CONTROLLERS)
    tree.write("who.py", WHO)
    return make_app(ADDONS=["basic_auth"])


def from_address(client: FlaskClient, address: str) -> FlaskClient:
    """``client``, its requests coming from ``address``."""
    client.environ_base["REMOTE_ADDR"] = address
    return client


# --- the failure throttle -----------------------------------------------------------


def test_five_failures_in_the_window_make_a_client_wait() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock=clock)
    for _ in range(4):
        throttle.failed("198.51.100.7")
        clock.now += 10
    assert throttle.retry_after("198.51.100.7") is None
    throttle.failed("198.51.100.7")  # the fifth, 40 s after the first
    assert throttle.retry_after("198.51.100.7") == 20
    assert throttle.retry_after("198.51.100.8") is None  # nobody else waits
    clock.now += 19.5
    assert throttle.retry_after("198.51.100.7") == 1
    clock.now += 0.5  # the first failure is out of the window: four left
    assert throttle.retry_after("198.51.100.7") is None


def test_failures_spread_over_more_than_the_window_never_lock_out() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock=clock)
    for _ in range(50):
        throttle.failed("198.51.100.7")
        assert throttle.retry_after("198.51.100.7") is None
        clock.now += 15.1


def test_tracked_clients_are_bounded_and_the_oldest_go_first() -> None:
    clock = Clock()
    throttle = FailureThrottle(max_clients=100, clock=clock)
    for _ in range(5):
        throttle.failed("locked")
    for n in range(10_000):
        clock.now += 0.001
        throttle.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
        assert len(throttle) <= 100
    # The crawler's newest addresses are the ones kept; the first failures are forgotten.
    assert throttle.retry_after("locked") is None
    for _ in range(4):
        throttle.failed("10.0.39.15")  # its fifth: it was among the newest
    assert throttle.retry_after("10.0.39.15") is not None


def test_expired_clients_are_forgotten_before_recent_ones() -> None:
    clock = Clock()
    throttle = FailureThrottle(max_clients=3, clock=clock)
    throttle.failed("old")
    clock.now += 61
    for _ in range(5):
        throttle.failed("recent")
    throttle.failed("other")
    throttle.failed("newcomer")  # no room: "old" (expired) goes, "recent" stays
    assert len(throttle) == 3
    assert throttle.retry_after("recent") is not None


def test_client_keys() -> None:
    assert client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("::ffff:198.51.100.7") == "198.51.100.7"
    # One IPv6 subscriber holds a /64: its addresses count as one client.
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") \
        == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key(None) == client_key("") == client_key("x" * 8000) == ""


def test_the_sixth_try_is_a_429_without_a_hash(app: Flask, hashes: list[str]) -> None:
    client = app.test_client()
    for n in range(5):
        assert_error(client.get("/shop/Reports", headers=basic("alice", f"guess {n}")), 401)
    assert len(hashes) == 5
    for path in ("/shop/Reports", "/shop/Open", "/no/such/thing"):
        refused = client.get(path, headers=basic("alice", PASSWORD))  # right, but too late
        assert_error(refused, 429, "too_many_failures")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(hashes) == 5
    # Without credentials nothing is checked, so nothing is refused.
    assert client.get("/shop/Open").status_code == 200
    # Another client is not held back.
    other = from_address(app.test_client(), "198.51.100.7")
    assert other.get("/shop/Reports", headers=basic("alice", PASSWORD)).status_code == 200


def test_malformed_credentials_count_as_failures(app: Flask, hashes: list[str]) -> None:
    client = app.test_client()
    for value in ("Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                  "Basic " + base64.b64encode(b"alice:" + b"x" * 5000).decode(),
                  "Basic " + base64.b64encode(b"no such user!:x").decode()):
        assert_error(client.get("/shop/Open", headers={"Authorization": value}), 401)
    assert_error(client.get("/shop/Open", headers=basic("alice", PASSWORD)), 429)
    assert len(hashes) == 1  # only the unknown (well-formed) user's dummy check


# --- verified passwords remembered --------------------------------------------------


def test_a_verified_password_costs_one_hash_while_remembered(
        app: Flask, hashes: list[str]) -> None:
    client = app.test_client()
    for _ in range(20):
        assert client.get("/shop/Reports", headers=basic("alice", PASSWORD)).status_code == 200
    assert len(hashes) == 1


def test_remembered_passwords_expire_and_are_bounded() -> None:
    clock = Clock()
    verified = VerifiedPasswords(seconds=60, size=3, clock=clock)
    verified.remember("alice", "scrypt:stored", PASSWORD)
    assert verified.remembers("alice", "scrypt:stored", PASSWORD)
    assert not verified.remembers("alice", "scrypt:stored", PASSWORD + "!")
    assert not verified.remembers("bob", "scrypt:stored", PASSWORD)
    assert not verified.remembers("alice", "scrypt:other", PASSWORD)
    clock.now += 60
    assert not verified.remembers("alice", "scrypt:stored", PASSWORD)
    for n in range(10):
        verified.remember(f"user{n}", "scrypt:stored", PASSWORD)
        assert len(verified) <= 3
    assert verified.remembers("user9", "scrypt:stored", PASSWORD)
    assert not verified.remembers("user0", "scrypt:stored", PASSWORD)


def test_remembered_passwords_are_kept_as_digests_only() -> None:
    verified = VerifiedPasswords()
    verified.remember("alice", "scrypt:stored", PASSWORD)
    kept = b"".join(verified._until)
    assert PASSWORD.encode() not in kept and b"alice" not in kept
    # Another process (another key) cannot match them.
    assert not VerifiedPasswords().remembers("alice", "scrypt:stored", PASSWORD)
    assert b"".join(VerifiedPasswords()._until) != kept


def test_a_changed_password_or_a_removed_user_takes_effect_at_the_next_request(
        app: Flask, users: UserStore, hashes: list[str]) -> None:
    client = from_address(app.test_client(), "198.51.100.1")
    assert client.get("/shop/Reports", headers=basic("alice", PASSWORD)).status_code == 200
    users.add("alice", "a new password", ["reports", "admin"], replace=True)
    assert_error(client.get("/shop/Reports", headers=basic("alice", PASSWORD)), 401)
    assert client.get("/shop/Reports/purge",
                      headers=basic("alice", "a new password")).status_code == 200
    users.remove("alice")
    users.add("bob", PASSWORD)
    assert_error(client.get("/shop/Reports", headers=basic("alice", "a new password")), 401)


def test_scopes_are_read_at_every_request(app: Flask, users: UserStore) -> None:
    client = app.test_client()
    assert_error(client.get("/shop/Reports/purge", headers=basic("alice", PASSWORD)), 403)
    record = users.users()["alice"]
    users._write({"alice": {**record, "scopes": ["reports", "admin"]}})  # same hash
    assert client.get("/shop/Reports/purge", headers=basic("alice", PASSWORD)).status_code == 200


# --- at most two hashes at once -----------------------------------------------------


def test_at_most_two_hashes_run_at_once_and_a_third_is_a_503(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    inside: list[str] = []
    entered = threading.Semaphore(0)
    release = threading.Event()

    def held(stored: str, password: str) -> bool:
        inside.append(password)
        entered.release()
        assert release.wait(30)
        return False

    monkeypatch.setattr(kernel.auth.users, "check_password_hash", held)
    # The third waits this long for a slot, then gives up: short, so the test is.
    monkeypatch.setattr(kernel.auth.hashing, "HASH_WAIT", 0.2)
    answers: list[int] = []

    def login(n: int) -> None:
        client = from_address(app.test_client(), f"198.51.100.{n}")
        answers.append(client.get("/shop/Reports", headers=basic("alice", f"try {n}")).status_code)

    holders = [threading.Thread(target=login, args=(n,)) for n in (1, 2)]
    for thread in holders:
        thread.start()
    for _ in holders:
        assert entered.acquire(timeout=30)
    third = from_address(app.test_client(), "198.51.100.3").get(
        "/shop/Reports", headers=basic("alice", "try 3"))
    assert_error(third, 503, "busy")
    assert third.headers["Retry-After"] == "1"
    assert len(inside) == 2
    release.set()
    for thread in holders:
        thread.join(30)
    assert sorted(answers) == [401, 401]
    # The slots are free again.
    monkeypatch.setattr(kernel.auth.users, "check_password_hash", lambda stored, password: False)
    assert_error(from_address(app.test_client(), "198.51.100.4").get(
        "/shop/Reports", headers=basic("alice", "try 4")), 401)


def test_a_busy_refusal_is_not_a_failure_of_the_client(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def busy() -> t.NoReturn:
        raise PasswordChecksBusy()

    monkeypatch.setattr(kernel.auth.users, "hash_slot", busy)
    client = app.test_client()
    for _ in range(8):
        assert_error(client.get("/shop/Reports", headers=basic("alice", PASSWORD)), 503)


# --- client addresses behind trusted proxies ----------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies(app: Flask) -> None:
    client = app.test_client()
    forged = {"X-Forwarded-For": "203.0.113.50"}
    assert client.get("/who/Who", headers=forged).get_json() == {"address": "127.0.0.1"}
    for n in range(5):
        client.get("/shop/Reports", headers={**basic("alice", "wrong"),
                                             "X-Forwarded-For": f"203.0.113.{n}"})
    # A new forged address each time bought no fresh attempt.
    assert_error(client.get("/shop/Reports", headers={**basic("alice", PASSWORD),
                                                      "X-Forwarded-For": "203.0.113.99"}), 429)


def test_a_trusted_proxy_s_forwarded_for_names_the_client(
        tree: ControllerTree, make_app: t.Callable[..., Flask], users: UserStore) -> None:
    tree.write("shop.py", CONTROLLERS)
    tree.write("who.py", WHO)
    app = make_app(ADDONS=["basic_auth"], TRUSTED_PROXIES=["127.0.0.1", "10.0.0.0/8"])
    client = app.test_client()

    def address(forwarded: str) -> str:
        body = client.get("/who/Who", headers={"X-Forwarded-For": forwarded}).get_json()
        return t.cast(str, body["address"])

    assert address("203.0.113.9") == "203.0.113.9"
    # A chain of trusted proxies: the first untrusted entry from the right.
    assert address("203.0.113.9, 10.1.2.3") == "203.0.113.9"
    # Whatever the client wrote left of it is never reached.
    assert address("6.6.6.6, 203.0.113.9, 10.1.2.3") == "203.0.113.9"
    assert address("10.9.9.9, 10.1.2.3") == "10.9.9.9"  # all trusted: the farthest
    for _ in range(5):
        client.get("/shop/Reports", headers={**basic("alice", "wrong"),
                                             "X-Forwarded-For": "6.6.6.6, 203.0.113.9"})
    locked = client.get("/shop/Reports", headers={**basic("alice", PASSWORD),
                                                  "X-Forwarded-For": "203.0.113.9"})
    assert_error(locked, 429)
    freed = client.get("/shop/Reports", headers={**basic("alice", PASSWORD),
                                                 "X-Forwarded-For": "203.0.113.10"})
    assert freed.status_code == 200
    # A peer that is no trusted proxy is its own address, whatever it forwards.
    outsider = from_address(app.test_client(), "198.51.100.7")
    assert outsider.get("/who/Who", headers={"X-Forwarded-For": "203.0.113.9"}).get_json() \
        == {"address": "198.51.100.7"}


def test_trusted_proxies_are_checked_at_start_up(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        make_app(TRUSTED_PROXIES=["nginx.local"])
    assert parse_proxies(["::1", " 10.0.0.0/8 "])[1].num_addresses == 2 ** 24


def test_hops_walk_only_trusted_entries() -> None:
    proxies = TrustedProxies(lambda environ, start: [], parse_proxies(["10.0.0.0/8"]))
    assert proxies.hops({"REMOTE_ADDR": "198.51.100.7"}) == 0
    assert proxies.hops({"REMOTE_ADDR": "10.0.0.1"}) == 1
    assert proxies.hops({"REMOTE_ADDR": "10.0.0.1",
                         "HTTP_X_FORWARDED_FOR": "junk, 10.0.0.2, 10.0.0.3"}) == 3
    assert proxies.hops({"REMOTE_ADDR": "10.0.0.1",
                         "HTTP_X_FORWARDED_FOR": "10.0.0.2, nonsense"}) == 1
