"""``GET /_kernkoa/metrics``: the web server's metrics in Prometheus' text format.

Served only when ``METRICS`` is on (else the URL is a 404 like any unknown
one), behind the pages' access rule (``PAGES_AUTH``). The counts are the sum
over every process of the server (:mod:`kernel.core.metrics`); the broker's
state is read at scrape time, within ``HEALTH_TIMEOUT``:
``kernkoa_broker_up`` (1 or 0) and ``kernkoa_queue_length{queue}`` for each
queue the catalog sends tasks to (absent while the broker cannot be read or,
for RabbitMQ, does not tell).
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import current_app
from werkzeug.wrappers import Response

from ..catalog.access import KERNEL_PAGE
from ..catalog.access import guarded_by
from ..core.metrics import active
from ..web.state import current_state
from ..web.state import state_of
from .health import catalog_queues
from .health import check_broker
from .health import run_checks
from .health import worker_source


class BrokerCollector:
    """``kernkoa_broker_up`` and ``kernkoa_queue_length``, read when collected."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def collect(self) -> t.Iterator[t.Any]:
        """Ask the broker now, each part within the timeout."""
        from prometheus_client.core import GaugeMetricFamily

        lengths: dict[str, int] = {}

        def read_queues() -> None:
            source = worker_source()
            for queue in catalog_queues():
                count = source.waiting(queue).count
                if count is not None:
                    lengths[queue] = count

        checks = run_checks({"broker": check_broker, "queues": read_queues}, self.timeout)
        yield GaugeMetricFamily("kernkoa_broker_up", "Whether the task broker answers (1) or not.",
                                value=1.0 if checks["broker"]["ok"] else 0.0)
        family = GaugeMetricFamily("kernkoa_queue_length", "Tasks waiting in each queue.",
                                   labels=["queue"])
        for queue, count in sorted(dict(lengths).items()):
            family.add_metric([queue], float(count))
        yield family


@guarded_by(KERNEL_PAGE)
def metrics() -> Response:
    """Every process's counts, and the broker's state, as Prometheus reads them."""
    from prometheus_client import CONTENT_TYPE_LATEST
    from prometheus_client import generate_latest

    found = active()
    assert found is not None  # registered only when the app enabled metrics
    found.flush()  # this process's counts current; the others' within their interval
    registry = found.registry(BrokerCollector(current_state().settings.HEALTH_TIMEOUT))
    response = current_app.response_class(generate_latest(registry), mimetype=None,
                                          content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def register(app: Flask, prefix: str) -> None:
    """Add ``<prefix>/metrics`` when ``METRICS`` is on."""
    if state_of(app).settings.METRICS:
        app.add_url_rule(f"{prefix}/metrics", "kernkoa_metrics", metrics, methods=["GET", "HEAD"])
