"""The per-route rate limiter of the worker, on a stand-in consumer (its timer and
prefetch); the limit on a real worker: tests/tasks/test_operations.py."""

from __future__ import annotations

import typing as t

import pytest

from kernel.tasks import ratelimit
from kernel.tasks.leases import held_tags
from kernel.tasks.ratelimit import RATE_LIMIT_HEADER
from kernel.tasks.ratelimit import RouteLimiter


@pytest.fixture(autouse=True)
def _nothing_held() -> t.Iterator[None]:
    yield
    ratelimit.HELD.clear()


class Message:
    def __init__(self, tag: str, route: str, limit: str | None) -> None:
        self.delivery_tag = tag
        self.headers = {"shadow": route, **({RATE_LIMIT_HEADER: limit} if limit else {})}


class Qos:
    def __init__(self) -> None:
        self.extra = 0

    def increment_eventually(self) -> None:
        self.extra += 1

    def decrement_eventually(self) -> None:
        self.extra -= 1


class Timer:
    def __init__(self) -> None:
        self.calls: list[tuple[float, t.Callable[..., None], tuple[t.Any, ...]]] = []

    def call_after(self, seconds: float, func: t.Callable[..., None],
                   args: tuple[t.Any, ...]) -> None:
        self.calls.append((seconds, func, args))


class Consumer:
    def __init__(self) -> None:
        self.qos = Qos()
        self.timer = Timer()


def test_a_limited_route_waits_for_tokens_while_others_pass() -> None:
    handled: list[str] = []
    consumer = Consumer()
    limiter = RouteLimiter(lambda message, *rest: handled.append(message.delivery_tag),
                           consumer)

    def deliver(tag: str, route: str, limit: str | None) -> None:
        limiter(Message(tag, route, limit), {}, None, None, None)

    deliver("a1", "/a/A/x_celery", "1/h")  # the bucket's one token
    deliver("a2", "/a/A/x_celery", "1/h")
    deliver("a3", "/a/A/x_celery", "1/h")
    deliver("b1", "/b/B/y_celery", None)  # not limited
    deliver("c1", "/c/C/z_celery", "1/h")  # a bucket of its own
    assert handled == ["a1", "b1", "c1"]
    # The held ones raise the prefetch, keep their lease, and wait for one timer call.
    assert consumer.qos.extra == 2
    assert {"a2", "a3"} <= held_tags() and ratelimit.HELD == {"a2", "a3"}
    [(seconds, release, args)] = consumer.timer.calls
    assert 3000 < seconds <= 3600
    # A token later (the bucket refilled), the first held one goes, in order.
    limiter.buckets["/a/A/x_celery"]._tokens = 1  # kombu's bucket, refilled
    release(*args)
    assert handled == ["a1", "b1", "c1", "a2"]
    assert consumer.qos.extra == 1 and ratelimit.HELD == {"a3"}
    assert len(consumer.timer.calls) == 2  # the next one is scheduled


def test_a_malformed_limit_limits_nothing() -> None:
    handled: list[str] = []
    limiter = RouteLimiter(lambda message, *rest: handled.append(message.delivery_tag),
                           Consumer())
    tags = [f"x{number}" for number in range(8)]
    for tag, limit in zip(tags, ["often", "nan/s", "inf/s", "-1/s", "0/s", ["1/s"], True, 7j],
                          strict=True):
        limiter(Message(tag, "/a/A/x_celery", limit), {}, None, None, None)
    assert handled == tags and not ratelimit.HELD


def test_held_messages_raise_the_prefetch_up_to_a_bound() -> None:
    handled: list[str] = []
    consumer = Consumer()
    limiter = RouteLimiter(lambda message, *rest: handled.append(message.delivery_tag),
                           consumer)
    limiter.most_raised = 3
    for number in range(6):
        limiter(Message(f"a{number}", "/a/A/x_celery", "1/h"), {}, None, None, None)
    limiter(Message("b0", "/b/B/y_celery", "1/h"), {}, None, None, None)
    # a0 and b0 ran; of the five held, three raise the prefetch, two take its places.
    assert handled == ["a0", "b0"] and len(ratelimit.HELD) == 5
    assert consumer.qos.extra == 3
    [(_, release, args)] = consumer.timer.calls
    for _ in range(5):
        limiter.buckets["/a/A/x_celery"]._tokens = 1
        release(*args)
    assert handled == ["a0", "b0", "a1", "a2", "a3", "a4", "a5"]
    assert consumer.qos.extra == 0 and limiter.raised == 0 and not ratelimit.HELD
