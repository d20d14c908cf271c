"""METRICS in-process: the labels each request is counted under, bounded whatever the
URLs; the endpoint's access rule; and nothing at all when METRICS is off.

Metrics are process-wide (one folder per process, :mod:`kernel.core.metrics`), so
these tests compare counts before and after, never absolute values.
"""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import create_environ

from kernel.web.flaskapp import KernKoaFlask
from kernel.web.metrics import threads_enabled
from tests.support.auth import KEY
from tests.support.auth import bearer
from tests.support.auth import token
from tests.support.catalogs import ControllerTree

SHOP = """
from kernkoa import *


class Cart:
    def show(self, id: int = 0):
        return {"id": id}

    def add(self):
        return "added"

    def boom(self):
        raise RuntimeError("boom")

    def later_celery(self, task, n: int = 1):
        return n
"""

#: A sample's labels, as a sorted tuple of pairs.
Labels = tuple[tuple[str, str], ...]


def samples(client: FlaskClient, name: str) -> dict[Labels, float]:
    """The samples named ``name`` in the endpoint's answer, by their labels."""
    # Imported once metrics are on: the first import fixes the library's mode.
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/_kernkoa/metrics")
    assert response.status_code == 200, response.data
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def requests_of(client: FlaskClient) -> dict[Labels, float]:
    return samples(client, "kernkoa_http_requests_total")


def grown(before: dict[Labels, float], after: dict[Labels, float]) -> dict[Labels, float]:
    """What changed between two readings, by labels."""
    return {labels: value - before.get(labels, 0.0) for labels, value in after.items()
            if value != before.get(labels, 0.0)}


def labels(**values: str) -> Labels:
    return tuple(sorted(values.items()))


@pytest.fixture
def app(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> Flask:
    tree.write("shop.py", SHOP)
    return make_app(METRICS=True)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_each_request_is_counted_under_its_route_template(client: FlaskClient) -> None:
    before = requests_of(client)
    assert client.get("/shop/Cart/show?id=3").status_code == 200
    assert client.get("/shop/Cart/show/4").status_code == 200  # an argument in the path
    assert client.post("/shop/Cart/add").status_code == 200
    assert client.get("/shop/Cart/show?id=x").status_code == 422
    assert client.get("/shop/Cart/boom").status_code == 500
    assert client.get("/_kernkoa/health").status_code in (200, 503)
    assert client.get("/status/not-an-id").status_code == 404
    after = requests_of(client)
    # The scrapes in between count too, under the endpoint's own rule.
    after.pop(labels(route="/_kernkoa/metrics", method="GET", status="200"), None)
    before.pop(labels(route="/_kernkoa/metrics", method="GET", status="200"), None)
    health = [key for key in grown(before, after) if ("route", "/_kernkoa/health") in key]
    assert grown(before, after) == {
        labels(route="/shop/Cart/show", method="GET", status="200"): 2,
        labels(route="/shop/Cart/add", method="POST", status="200"): 1,
        labels(route="/shop/Cart/show", method="GET", status="422"): 1,
        labels(route="/shop/Cart/boom", method="GET", status="500"): 1,
        health[0]: 1,
        labels(route="/status/<task_id>", method="GET", status="404"): 1,
    }


def test_the_duration_histogram_counts_each_request_of_a_route(client: FlaskClient) -> None:
    name = "kernkoa_http_request_duration_seconds_count"
    before = samples(client, name)
    for _ in range(3):
        client.get("/shop/Cart/show")
    assert grown(before, samples(client, name)).get(labels(route="/shop/Cart/show")) == 3


def test_a_crawl_of_ten_thousand_urls_adds_no_label(app: Flask, client: FlaskClient) -> None:
    client.get("/nowhere/at/all")
    client.get("/shop/Cart/show")
    requests_of(client)  # the endpoint's own label, counted from the first scrape on
    before = requests_of(client)
    statuses = set()

    def start_response(status: str, headers: t.Any, exc_info: t.Any = None) -> None:
        statuses.add(status[:3])

    # Through the whole WSGI app (middleware, hooks, catch-all), without the test
    # client's per-request cost.
    for n in range(2000):
        for url in (f"/crawl{n}/x/Y/z", f"/shop/Cart/nope{n}", f"/shop/Nope{n}/show",
                    f"/_kernkoa/nothing{n}", f"/images/{n}.png"):
            b"".join(app(create_environ(url), start_response))
    assert statuses == {"404"}
    client.open("/shop/Cart/show", method="PURGE")
    after = requests_of(client)
    # A method no rule takes is refused before any route is found.
    assert set(after) - set(before) <= {
        labels(route="/images/<path:filename>", method="GET", status="404"),
        labels(route="<unresolved>", method="other", status="405"),
    }
    unresolved = labels(route="<unresolved>", method="GET", status="404")
    assert after[unresolved] - before[unresolved] == 8000
    assert len(after) < 20


def test_tasks_sent_are_counted_under_their_route_template(client: FlaskClient) -> None:
    before = samples(client, "kernkoa_tasks_sent_total")
    assert client.post("/shop/Cart/later_celery?n=2").status_code == 202
    assert client.post("/shop/Cart/later_celery", json={"n": 3}).status_code == 202
    assert client.post("/shop/Cart/later_celery?n=x").status_code == 422  # never sent
    assert grown(before, samples(client, "kernkoa_tasks_sent_total")) == {
        labels(route="/shop/Cart/later_celery"): 2}


def test_the_endpoint_follows_the_pages_access_rule(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop.py", SHOP)
    client = make_app(METRICS=True, ADDONS=["jwt_auth"], HMACKEY=KEY,
                      PAGES_AUTH=True).test_client()
    assert client.get("/_kernkoa/metrics").status_code == 401
    assert client.get("/_kernkoa/metrics", headers=bearer(token())).status_code == 200
    assert client.get("/shop/Cart/show").status_code == 200  # routes stay open


def test_the_endpoint_reads_the_broker_at_scrape_time(client: FlaskClient) -> None:
    assert samples(client, "kernkoa_broker_up") == {(): 1.0}  # the embedded broker
    assert samples(client, "kernkoa_queue_length") == {labels(queue="celery"): 0.0}


def test_the_broker_down_is_a_zero_not_an_error(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    from tests.support.processes import free_port

    client = make_app(METRICS=True, BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
                      HEALTH_TIMEOUT=2.0).test_client()
    assert samples(client, "kernkoa_broker_up") == {(): 0.0}
    assert samples(client, "kernkoa_queue_length") == {}


def test_reloads_and_load_failures_are_counted_by_catalog_file(
        tree: ControllerTree, client: FlaskClient) -> None:
    reloads, failures = "kernkoa_controller_reloads_total", "kernkoa_controller_load_failures_total"
    file = labels(file="controller/shop.py")
    assert client.get("/shop/Cart/show").status_code == 200
    before = samples(client, reloads).get(file, 0.0), samples(client, failures).get(file, 0.0)
    tree.write("shop.py", SHOP + "\n\nclass Broken(:\n")
    assert client.get("/shop/Cart/show").status_code == 500
    tree.write("shop.py", SHOP + "\n# fixed\n")
    assert client.get("/shop/Cart/show").status_code == 200
    after = samples(client, reloads).get(file, 0.0), samples(client, failures).get(file, 0.0)
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)


def test_a_reloaded_file_never_leaves_a_stale_route_label(
        tree: ControllerTree, client: FlaskClient) -> None:
    # The label is kept on the catalog's answer for a path, which a change of
    # the file replaces: the method gone, the same URL is no longer its route.
    assert client.get("/shop/Cart/show").status_code == 200
    before = requests_of(client)
    tree.write("shop.py", SHOP.replace("def show(", "def shown("))
    assert client.get("/shop/Cart/show").status_code == 404
    tree.write("shop.py", SHOP + "\n# back\n")
    assert client.get("/shop/Cart/show").status_code == 200
    grew = grown(before, requests_of(client))
    grew.pop(labels(route="/_kernkoa/metrics", method="GET", status="200"), None)
    assert grew == {
        labels(route="<unresolved>", method="GET", status="404"): 1,
        labels(route="/shop/Cart/show", method="GET", status="200"): 1,
    }


def test_off_there_is_no_endpoint_and_no_hook(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop.py", SHOP)
    app = make_app()
    assert app.test_client().get("/_kernkoa/metrics").status_code == 404
    assert app.wsgi_app.__func__ is KernKoaFlask.wsgi_app  # type: ignore[attr-defined]
    assert app.request_tally is None  # type: ignore[attr-defined]
    assert not app.teardown_request_funcs


@pytest.mark.parametrize(("options", "expected"), [
    ({}, False),
    ({"enable-threads": True}, True),
    ({"enable-threads": b"true"}, True),
    ({"enable-threads": b"false"}, False),
    ({"threads": b"1"}, False),
    ({"threads": b"4"}, True),
])
def test_batching_needs_uwsgi_to_run_threads_between_requests(
        options: dict[str, t.Any], expected: bool) -> None:
    # Without them the batching thread would wait for the next request: each
    # request writes at once instead (kernel.web.metrics.flush_interval).
    assert threads_enabled(options) is expected
