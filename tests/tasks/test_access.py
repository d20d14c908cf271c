"""Access to a task (its status, event stream and cancellation) when its route no
longer resolves: the rule recorded with the task, or a refusal, never a default.

Each failure of route resolution is made for real on the controller file (a
syntax error, an import error, the method renamed, the class removed, the file
deleted), in one process with the embedded broker.
"""

from __future__ import annotations

import json
import typing as t
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from kernel.tasks.celeryapp import get_celery
from kernel.tasks.store import ISSUED_PREFIX
from tests.support.auth import BROKEN_VAULTS as BROKEN
from tests.support.auth import KEY
from tests.support.auth import VAULT
from tests.support.auth import bearer
from tests.support.auth import token
from tests.support.auth import write_version
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error
from tests.support.processes import free_port

ADMIN = bearer(token(sub="root", scope="admin"))
OTHER = bearer(token(sub="eve", scope="reports"))


def rewrite(tree: ControllerTree, source: str | None) -> None:
    """Write (or delete, for ``None``) the catalog's ``vault.py``."""
    write_version(tree.controllers / "vault.py", source)


@pytest.fixture
def app(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> Flask:
    rewrite(tree, VAULT)
    return make_app(ADDONS=["jwt_auth"], HMACKEY=KEY)


def start(client: FlaskClient) -> str:
    """Enqueue the admin task (as the admin); its status URL."""
    started = client.post("/vault/Vault/open_celery", headers=ADMIN)
    assert started.status_code == 202, started.data
    return f"/status/{started.get_json()['id']}"


def views(client: FlaskClient, status: str,
          headers: dict[str, str] | None = None) -> dict[str, TestResponse]:
    """The three ways in: the status, its event stream (headers only) and DELETE last."""
    answers = {"status": client.get(status, headers=headers)}
    events = client.get(status + "/events", headers=headers)
    events.close()  # a stream of a pending task lasts; its status line is what counts
    answers["events"] = events
    answers["delete"] = client.delete(status, headers=headers)
    return answers


def assert_refused(client: FlaskClient, status: str) -> None:
    """Anonymous: 401 with the Bearer challenge; a token lacking the scope: 403."""
    for view, response in views(client, status).items():
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer "), view
    for response in views(client, status, OTHER).values():
        assert_error(response, 403)


@pytest.mark.parametrize("failure", sorted(BROKEN))
def test_recorded_rule_guards_the_task_when_its_route_fails(
        app: Flask, tree: ControllerTree, failure: str) -> None:
    client = app.test_client()
    status = start(client)
    rewrite(tree, BROKEN[failure])
    assert_refused(client, status)
    answers = views(client, status, ADMIN)
    assert answers["status"].get_json() == {"status": "PENDING"}
    assert answers["events"].status_code == 200
    assert answers["events"].mimetype == "text/event-stream"
    assert answers["delete"].get_json() == {"status": "REVOKED"}


def write_old_marker(app: Flask, route: str) -> str:
    """An issued marker as kernels wrote it before rules were kept with tasks."""
    task_id = str(uuid.uuid4())
    record = {"route": route, "created": 1.0}
    get_celery(app).backend.set(ISSUED_PREFIX + task_id.encode(), json.dumps(record))
    return f"/status/{task_id}"


@pytest.mark.parametrize("failure", sorted(BROKEN))
def test_task_without_a_recorded_rule_is_refused_to_all_when_its_route_fails(
        app: Flask, tree: ControllerTree, failure: str) -> None:
    client = app.test_client()
    status = write_old_marker(app, "/vault/Vault/open_celery")
    rewrite(tree, BROKEN[failure])
    assert_refused(client, status)
    for response in views(client, status, ADMIN).values():
        assert_error(response, 403, "access_undecidable")


def test_task_without_a_recorded_rule_follows_its_route_while_it_resolves(app: Flask) -> None:
    client = app.test_client()
    status = write_old_marker(app, "/vault/Vault/open_celery")
    assert_refused(client, status)
    assert client.get(status, headers=ADMIN).get_json() == {"status": "PENDING"}


def test_the_route_s_current_rule_wins_while_it_resolves(app: Flask, tree: ControllerTree) -> None:
    client = app.test_client()
    status = start(client)
    rewrite(tree, VAULT.replace('@requires("admin")', '@requires("admin", "audit")'))
    assert_error(client.get(status, headers=ADMIN), 403, "insufficient_scope")
    rewrite(tree, VAULT.replace('@requires("admin")', "@public"))
    assert client.get(status).get_json() == {"status": "PENDING"}


def test_a_result_that_outlived_its_marker_is_refused(app: Flask) -> None:
    task_id = str(uuid.uuid4())
    get_celery(app).backend.store_result(task_id, "the admin's secret", "SUCCESS")
    client = app.test_client()
    assert_refused(client, f"/status/{task_id}")
    assert_error(client.get(f"/status/{task_id}", headers=ADMIN), 403, "access_undecidable")
    # An id the store knows nothing about is still a plain 404.
    assert_error(client.get(f"/status/{uuid.uuid4()}"), 404)


def test_an_unreadable_result_store_is_a_503_for_everyone(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    rewrite(tree, VAULT)
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    app = make_app(ADDONS=["jwt_auth"], HMACKEY=KEY, BROKER_URL=nowhere, RESULT_BACKEND=nowhere)
    client = app.test_client()
    status = f"/status/{uuid.uuid4()}"
    for headers in (None, ADMIN, OTHER):
        for response in views(client, status, headers).values():
            assert_error(response, 503, "broker_unavailable")


def test_a_controller_url_never_runs_what_its_rule_was_not_computed_for(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    # The file is broken when the auth layer resolves the URL (the default rule,
    # open, decides), and fixed before the view runs: the view must answer the
    # failure the decision was made on, not load the new file and run it.
    fixed = VAULT.replace("open_celery(self, task)", "open(self)")
    broken = fixed.replace("def open(self):", "def open(self)")
    rewrite(tree, broken)
    app = make_app(ADDONS=["jwt_auth"], HMACKEY=KEY)

    @app.before_request
    def fix_the_file() -> None:  # runs after the auth layer's decision
        rewrite(tree, fixed)

    response = app.test_client().get("/vault/Vault/open")
    assert_error(response, 500, "controller_error")
    assert b"secret" not in response.data
    # The next request resolves the fixed file, and its rule applies.
    assert_error(app.test_client().get("/vault/Vault/open"), 401, "unauthorized")


def test_the_status_views_declare_that_they_follow_the_task_route(app: Flask) -> None:
    """The rule is read off the view, not matched by endpoint name: the same view
    under another name guards the same way, and the declaration is the task's."""
    from kernel.catalog.access import view_access
    from kernel.tasks.routes import FOLLOWS_TASK_ROUTE
    from kernel.tasks.routes import task_status

    assert view_access(app.view_functions["task_status"]) is FOLLOWS_TASK_ROUTE
    assert view_access(app.view_functions["task_status_events"]) is FOLLOWS_TASK_ROUTE
    app.add_url_rule("/renamed/<task_id>", "renamed_status", task_status,
                     methods=["GET", "DELETE"])
    client = app.test_client()
    status = start(client)
    renamed = status.replace("/status/", "/renamed/")
    assert client.get(renamed, headers=ADMIN).status_code == 200
    assert_error(client.get(renamed), 401, "unauthorized")
    assert_error(client.get(renamed, headers=OTHER), 403)


def test_an_undeclared_view_gets_the_default_rule_not_the_task_rule(app: Flask) -> None:
    """A view that declares nothing is AUTH_DEFAULT (open here), whatever its name."""
    app.add_url_rule("/task_status_lookalike/<task_id>", "task_status_lookalike",
                     lambda task_id: "open", methods=["GET"])
    response = app.test_client().get(f"/task_status_lookalike/{uuid.uuid4()}")
    assert response.status_code == 200
