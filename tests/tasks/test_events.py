"""The Server-Sent Events stream of a task's status, with a fake status and clock."""

from __future__ import annotations

import json
import typing as t

from kernel.tasks.events import status_events


class FakeClock:
    """A clock that moves only when the stream sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _events(stream: t.Iterable[str]) -> list[tuple[str, t.Any]]:
    parsed = []
    for chunk in stream:
        if chunk.startswith("event: "):
            name_line, data_line = chunk.strip().split("\n")
            parsed.append((name_line[7:], json.loads(data_line[6:])))
        elif chunk.startswith(":"):
            parsed.append(("comment", None))
        else:
            parsed.append(("retry", chunk.strip()))
    return parsed


def test_sends_each_change_once_and_ends_on_a_final_state() -> None:
    answers = iter([
        (200, {"status": "PENDING"}),
        (200, {"status": "PENDING"}),
        (200, {"status": "PROGRESS", "state": {"percent": 50}}),
        (200, {"status": "SUCCESS", "data": 42}),
    ])
    clock = FakeClock()
    events = _events(status_events(lambda _id: next(answers), "abc", clock=clock,
                                   sleep=clock.sleep))
    assert events == [
        ("retry", "retry: 1000"),
        ("status", {"code": 200, "status": "PENDING"}),
        ("status", {"code": 200, "status": "PROGRESS", "state": {"percent": 50}}),
        ("status", {"code": 200, "status": "SUCCESS", "data": 42}),
        ("end", {"reason": "final"}),
    ]


def test_unknown_task_ends_the_stream() -> None:
    clock = FakeClock()
    missing = {"error": {"status": 404, "code": "not_found", "message": "no such task"}}
    events = _events(status_events(lambda _id: (404, missing), "x", clock=clock,
                                   sleep=clock.sleep))
    assert [name for name, _ in events] == ["retry", "status", "end"]


def test_life_is_capped_with_heartbeats_and_no_end_event() -> None:
    clock = FakeClock()
    events = _events(status_events(lambda _id: (200, {"status": "STARTED"}), "x", life=60,
                                   interval=0.5, heartbeat=15, clock=clock, sleep=clock.sleep))
    names = [name for name, _ in events]
    assert names.count("status") == 1
    assert names.count("comment") == 3  # at 15, 30 and 45 s; at 60 s the stream ends
    assert "end" not in names  # the browser reconnects for a fresh stream
    assert clock.now <= 60.5
