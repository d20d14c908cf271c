"""A finished admin task on real parts (redis-server, a kernkoa worker, a kernkoa
server with jwt_auth): once its controller file breaks, its result stays the
admin's, through the status, its event stream and DELETE."""

from __future__ import annotations

import json
import time
import typing as t
from pathlib import Path
from unittest.mock import ANY

import pytest

from tests.support.auth import BROKEN_VAULTS
from tests.support.auth import KEY
from tests.support.auth import VAULT
from tests.support.auth import bearer
from tests.support.auth import token
from tests.support.auth import write_version
from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.tasks import Stack
from tests.support.tasks import write_catalog

#: Every test here uses the module's redis-server.
pytestmark = pytest.mark.redis

ADMIN = bearer(token(sub="root", scope="admin"))
OTHER = bearer(token(sub="eve", scope="reports"))
SECRET = b"the admin's secret"


class Live(t.NamedTuple):
    server: LiveServer
    vault: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Live]:
    """Redis, one worker and a server with jwt_auth, sharing a catalog with ``vault.py``."""
    folder = tmp_path_factory.mktemp("tasks-access")
    redis = RedisServer(folder / "redis")
    redis.start()
    stack = Stack(folder)
    catalog = write_catalog(folder / "catalog")
    vault = catalog / "controller/vault.py"
    env = clean_environ(CATALOG=str(catalog), BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                        VAR=str(folder / "var"), ADDONS="jwt_auth", HMACKEY=KEY)
    try:
        stack.worker(env, "--concurrency=1")
        yield Live(stack.server(env), vault)
    finally:
        stack.close()
        redis.stop()


def finished_admin_task(live: Live) -> str:
    """Run the admin task to its end on the worker; its status URL."""
    write_version(live.vault, VAULT)
    code, _, body = live.server.request("/vault/Vault/open_celery", "POST", headers=ADMIN)
    assert code == 202, body
    status = f"/status/{json.loads(body)['id']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        code, _, body = live.server.request(status, headers=ADMIN)
        assert code == 200, body
        if json.loads(body)["status"] == "SUCCESS":
            return status
        time.sleep(0.05)
    raise TimeoutError(f"the admin task is still {body!r}")


@pytest.mark.parametrize("failure", sorted(BROKEN_VAULTS))
def test_a_broken_route_keeps_its_task_s_result_private(live: Live, failure: str) -> None:
    status = finished_admin_task(live)
    write_version(live.vault, BROKEN_VAULTS[failure])
    for path, method in ((status, "GET"), (status + "/events", "GET"), (status, "DELETE")):
        code, headers, body = live.server.request(path, method)
        assert (code, json.loads(body)["error"]["code"]) == (401, "unauthorized"), body
        assert headers["WWW-Authenticate"].startswith("Bearer ")
        assert SECRET not in body
        code, _, body = live.server.request(path, method, headers=OTHER)
        assert code == 403 and SECRET not in body, body
    code, _, body = live.server.request(status, headers=ADMIN)
    assert (code, json.loads(body)) == (200, {"status": "SUCCESS", "data": SECRET.decode(),
                                              "request_id": ANY})
    code, _, body = live.server.request(status + "/events", headers=ADMIN, timeout=30)
    assert code == 200 and b'"SUCCESS"' in body
    # A finished task cannot be cancelled: the admin is told so, nobody else is.
    code, _, body = live.server.request(status, "DELETE", headers=ADMIN)
    assert (code, json.loads(body)["error"]["code"]) == (409, "conflict")
