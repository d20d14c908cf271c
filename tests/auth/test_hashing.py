"""Basic credentials against real servers: uWSGI behind nginx (the production shape)
and ``kernkoa serve``. Junk credentials no longer cost a password hash each, and
a storm of them keeps a server process within 100 MiB of its idle memory.

Hashes are counted in the servers themselves: a small module imported into
each uWSGI worker before the app wraps Werkzeug's ``check_password_hash`` and
writes one line per call. Memory is the kernel's own account of the process
(``/proc/<pid>/status``): its resident size at rest, and the peak of it
(``VmHWM``, reset through ``clear_refs`` before the storm).
"""

from __future__ import annotations

import secrets
import typing as t
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kernel.auth.users import UserStore
from tests.support.auth import CONTROLLERS
from tests.support.auth import PASSWORD
from tests.support.auth import basic
from tests.support.nginx import uwsgi_behind_nginx
from tests.support.processes import children
from tests.support.processes import clean_environ
from tests.support.servers import LiveServer

#: Imported by uWSGI into each worker before the app (``--import``).
HASH_SPY = '''
"""Counts this process's password checks: one line (its pid) per check."""
import os

import werkzeug.security

_check = werkzeug.security.check_password_hash


def _counting(pwhash, password):
    with open(os.environ["HASH_SPY_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return _check(pwhash, password)


werkzeug.security.check_password_hash = _counting
'''

#: Where a storm's requests go: a guarded route, an open one, a URL naming nothing.
PATHS = ("/shop/Reports", "/shop/Open", "/no/such/url")

MiB = 1024 * 1024


def junk() -> dict[str, str]:
    """Credentials of a user nobody added, with a random password."""
    return basic(f"crawler{secrets.token_hex(4)}", secrets.token_urlsafe(12))


def project(folder: Path) -> dict[str, str]:
    """A catalog with guarded and open routes and a users file holding alice;
    the settings of a server on them, X-Forwarded-For believed from 127.0.0.1."""
    (folder / "catalog/controller").mkdir(parents=True)
    (folder / "catalog/controller/shop.py").write_text(CONTROLLERS)
    UserStore(folder / "var/users.json").add("alice", PASSWORD, ["reports"])
    return {"CATALOG": str(folder / "catalog"), "VAR": str(folder / "var"),
            "ADDONS": "basic_auth", "TRUSTED_PROXIES": "127.0.0.1"}


def memory(pid: int, field: str) -> int:
    """A memory figure of process ``pid`` in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no {field} for process {pid}")


def storm(server: LiveServer, pids: t.Sequence[int], clients: int = 16,
          rounds: int = 3) -> tuple[dict[int, int], list[int]]:
    """``clients`` concurrent clients, each from its own address (so none is
    throttled), sending junk credentials to every kind of URL; the peak growth
    of each process's memory over its idle size, and the statuses seen."""
    for path in PATHS:  # every code path the storm takes, once, before "idle"
        server.request(path, headers={**junk(), "X-Forwarded-For": "192.0.2.1"})
    idle = {pid: memory(pid, "VmRSS") for pid in pids}
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS

    def client(n: int) -> list[int]:
        forwarded = {"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}
        return [server.request(PATHS[(n + i) % 3], headers={**junk(), **forwarded},
                               timeout=60)[0] for i in range(rounds)]

    with ThreadPoolExecutor(clients) as pool:
        statuses = [code for codes in pool.map(client, range(clients)) for code in codes]
    return {pid: memory(pid, "VmHWM") - idle[pid] for pid in pids}, statuses


class Proxied(t.NamedTuple):
    server: LiveServer
    spy_log: Path


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Proxied]:
    """uWSGI behind nginx with basic_auth, each worker counting its hashes."""
    folder = tmp_path_factory.mktemp("auth-proxied")
    env = clean_environ(**project(folder))
    (folder / "spy").mkdir()
    (folder / "spy/hashspy.py").write_text(HASH_SPY)
    spy_log = folder / "hashes.log"
    spy_log.touch()
    env["HASH_SPY_LOG"] = str(spy_log)
    with uwsgi_behind_nginx(folder, env, "--pythonpath", str(folder / "spy"),
                            "--import", "hashspy") as server:
        yield Proxied(server, spy_log)


def hashes(proxied: Proxied) -> int:
    """How many password hashes the uWSGI workers ran so far."""
    return len(proxied.spy_log.read_text().split())


@pytest.mark.uwsgi
@pytest.mark.nginx
def test_junk_credentials_cost_at_most_five_hashes_per_process(proxied: Proxied) -> None:
    before = hashes(proxied)
    answers = []
    for n in range(30):
        code, headers, body = proxied.server.request(
            PATHS[n % 3], headers={**junk(), "X-Forwarded-For": "203.0.113.1"})
        answers.append(code)
        if code == 429:
            assert b'"too_many_failures"' in body and int(headers["Retry-After"]) >= 1
    spent = hashes(proxied) - before
    workers = len(children(proxied.server.process.pid))
    # Each uWSGI process counts failures on its own: 5 each, then 429 without a hash.
    assert spent <= 5 * workers, answers
    assert answers.count(401) == spent and answers.count(429) == 30 - spent, answers


@pytest.mark.uwsgi
@pytest.mark.nginx
def test_credentials_sent_with_every_request_are_hashed_once_per_process(
        proxied: Proxied) -> None:
    before = hashes(proxied)
    for _ in range(40):
        code, _, body = proxied.server.request(
            "/shop/Reports", headers={**basic("alice", PASSWORD),
                                      "X-Forwarded-For": "203.0.113.2"})
        assert code == 200, body
    assert hashes(proxied) - before <= len(children(proxied.server.process.pid))


@pytest.mark.uwsgi
@pytest.mark.nginx
def test_a_junk_storm_keeps_uwsgi_workers_within_100_mib(proxied: Proxied) -> None:
    workers = sorted(children(proxied.server.process.pid))
    growth, statuses = storm(proxied.server, workers)
    assert set(statuses) <= {401, 503}, statuses
    assert all(grown < 100 * MiB for grown in growth.values()), \
        {pid: f"{grown / MiB:.0f} MiB" for pid, grown in growth.items()}


def test_a_junk_storm_keeps_the_development_server_within_100_mib(
        tmp_path: Path, serve: t.Callable[..., LiveServer]) -> None:
    server = serve(**project(tmp_path / "project"))
    growth, statuses = storm(server, [server.process.pid])
    assert set(statuses) <= {401, 503}, statuses
    assert growth[server.process.pid] < 100 * MiB, f"{growth[server.process.pid] / MiB:.0f} MiB"
