"""Schedules from the catalog: the declarations, and real ``kernkoa beat`` processes
with real workers on Redis and on the embedded default.

Timing is loose everywhere: a run "every second" is only counted as running
repeatedly, a slowed or removed schedule as running at most once more (a run
already queued may still start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
import typing as t
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError

import kernkoa
from kernel.catalog.schedules import Schedule
from kernel.catalog.schedules import cron
from kernel.catalog.schedules import every
from kernel.catalog.schedules import schedule_of
from kernel.core.errors import ScheduleError
from kernel.core.errors import SettingsError
from kernel.core.settings import PROJECT_ROOT
from kernel.tasks.beat import CatalogScheduler
from kernel.tasks.beatstate import FileBeatLock
from kernel.tasks.beatstate import RedisBeatLock
from kernel.tasks.beatstate import RedisRuns
from kernel.tasks.celeryapp import get_celery
from tests.support.catalogs import ControllerTree
from tests.support.processes import BIN
from tests.support.processes import clean_environ
from tests.support.processes import stop
from tests.support.redis_server import RedisServer
from tests.support.tasks import Stack
from tests.support.tasks import status_of
from tests.support.tasks import wait_for
from tests.support.tasks import write_catalog

#: A controller whose scheduled method notes each run (start and end) in a file.
SCHEDULED = '''
import os
import time

from kernkoa import *

NOTE = {note!r}


class S:
    {decorator}
    def tick_celery(self, task, pause: float = {pause}):
        with open(NOTE, "a") as note:
            note.write("start %s %f\\n" % (task.id, time.time()))
        time.sleep(pause)
        with open(NOTE, "a") as note:
            note.write("end %s %f\\n" % (task.id, time.time()))
        return "ticked"
'''


# The declarations ----------------------------------------------------------


def test_every_takes_timedelta_keywords() -> None:
    @every(minutes=15)
    def a_celery() -> None: ...

    @every(hours=1, seconds=30, overlap=False)
    def b_celery() -> None: ...

    assert schedule_of(a_celery) == Schedule(seconds=900)
    assert schedule_of(b_celery) == Schedule(seconds=3630, overlap=False)
    assert schedule_of(b_celery).describe() == {"every": 3630, "overlap": False}


def test_cron_keeps_its_five_fields() -> None:
    @cron("0   3 * * mon-fri")
    def c_celery() -> None: ...

    assert schedule_of(c_celery) == Schedule(cron="0 3 * * mon-fri")


@pytest.mark.parametrize("declare", [
    lambda: every(),
    lambda: every(seconds=-1),
    lambda: cron("0 3 * *"),
    lambda: cron("0 3 * * * *"),
    lambda: cron("0 3 * * ; rm"),
    # Beyond timedelta, beyond a datetime's last date, or finer than the beat looks.
    lambda: every(days=10**9),
    lambda: every(days=999_999_999),
    lambda: every(days=1e300),
    lambda: every(seconds=0.5),
    lambda: every(seconds=1e-6),
    lambda: every(seconds=float("nan")),
    lambda: every(seconds=float("inf")),
    lambda: every(seconds="60"),  # type: ignore[arg-type]
    lambda: every(hours=True),
    lambda: every(minutes=1, overlap="no"),  # type: ignore[arg-type]
    lambda: cron("0 3 * * *", overlap=None),  # type: ignore[arg-type]
    lambda: cron("٣ 3 * * *"),  # an Arabic-Indic digit is no cron digit
])
def test_a_wrong_declaration_raises(declare: t.Callable[[], t.Any]) -> None:
    with pytest.raises(ScheduleError):
        declare()


def test_every_bounds() -> None:
    @every(seconds=1)
    def shortest_celery() -> None: ...

    @every(days=366)
    def longest_celery() -> None: ...

    @every(seconds=1.5)
    def fractional_celery() -> None: ...

    assert schedule_of(shortest_celery) == Schedule(seconds=1)
    assert schedule_of(longest_celery) == Schedule(seconds=366 * 86400)
    assert schedule_of(fractional_celery).describe() == {"every": 1.5, "overlap": True}


def test_only_a_celery_method_is_scheduled() -> None:
    with pytest.raises(ScheduleError, match="only a _celery method"):
        @every(seconds=1)
        def plain() -> None: ...


def test_one_schedule_per_method() -> None:
    with pytest.raises(ScheduleError, match="one schedule per method"):
        @every(hours=1)
        @cron("0 3 * * *")
        def twice_celery() -> None: ...


def test_the_star_import_gives_both() -> None:
    assert {"every", "cron"} <= set(kernkoa.__all__)


def test_listings_show_schedules_and_report_broken_ones(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("s.py", SCHEDULED.format(note="/dev/null", pause=0,
                                        decorator='@cron("0 3 * * *", overlap=False)'))
    tree.write("bad.py", """
        from kernkoa import *

        class B:
            @every(seconds=5)
            def not_a_task(self):
                return 1
        """)
    client = make_app(SCHEDULE_TIMEZONE="Europe/Paris", DEBUG=True).test_client()
    found = client.get("/_kernkoa/endpoints").get_json()
    route = next(r for r in found["routes"] if r["url"] == "/s/S/tick_celery")
    assert route["schedule"] == {"cron": "0 3 * * *", "overlap": False,
                                 "timezone": "Europe/Paris", "last_run": None,
                                 "next_run": None, "last_task_id": None, "skipped": 0,
                                 "error": None}
    assert [b["file"] for b in found["broken"]] == ["controller/bad.py"]
    assert "only a _celery method" in found["broken"][0]["error"]
    assert b"cron <code>0 3 * * *</code>" in client.get("/_kernkoa/docs").data
    one = client.get("/_kernkoa/endpoints/s/S/tick_celery").get_json()
    assert one["schedule"]["timezone"] == "Europe/Paris"


# Real beats ------------------------------------------------------------------


class Beat:
    """A ``kernkoa beat`` process, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as handle:
            self.process = subprocess.Popen([str(BIN / "kernkoa"), "beat"], cwd=PROJECT_ROOT,
                                            env=env, stdout=handle, stderr=subprocess.STDOUT)

    def started(self) -> int:
        """How many runs this beat has started."""
        return self.log.read_text().count(" started task ")

    def kill(self) -> None:
        """SIGKILL: a beat that dies without releasing its lock."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def beats() -> t.Iterator[list[Beat]]:
    started: list[Beat] = []
    yield started
    for beat in started:
        stop(beat.process, grace=10)


def _runs(note: Path) -> list[tuple[str, str, float]]:
    """The noted events: (start | end, task id, time)."""
    if not note.exists():
        return []
    return [(kind, task_id, float(at)) for kind, task_id, at in
            (line.split() for line in note.read_text().splitlines() if line.count(" ") == 2)]


def _starts(note: Path) -> int:
    return sum(1 for kind, _, _ in _runs(note) if kind == "start")


def _schedule(controller: Path, note: Path, decorator: str, pause: float = 0.0) -> None:
    # The decorator's text changes the file's size: the loader sees every edit.
    controller.write_text(textwrap.dedent(SCHEDULED.format(note=str(note), pause=pause,
                                                           decorator=decorator)))


def _settle(seconds: float) -> None:
    # A pause for the beat's next scan (every second) and a run already queued.
    time.sleep(seconds)


def _changes_follow_the_catalog(controller: Path, note: Path) -> None:
    """Every second → every minute → every second → removed, without a restart."""
    wait_for(lambda: _starts(note) >= 3, timeout=60, what="three runs, a second apart")
    _schedule(controller, note, "@every(minutes=1)")
    _settle(4)
    slowed = _starts(note)
    _settle(5)
    assert _starts(note) <= slowed + 1  # at most one more, already queued
    _schedule(controller, note, "@every(seconds=1)")
    wait_for(lambda: _starts(note) >= slowed + 3, timeout=60, what="runs every second again")
    _schedule(controller, note, "")
    _settle(4)
    removed = _starts(note)
    _settle(5)
    assert _starts(note) <= removed + 1


@pytest.mark.redis
def test_beat_on_redis_follows_the_catalog_and_runs_are_tasks(
        tmp_path: Path, redis: RedisServer, beats: list[Beat]) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    controller = catalog / "controller" / "sched.py"
    note = tmp_path / "runs.txt"
    _schedule(controller, note, "@every(seconds=1)")
    env = clean_environ(CATALOG=str(catalog), BROKER_URL=redis.url, VAR=str(tmp_path / "var"))
    stack = Stack(tmp_path)
    try:
        stack.worker(env, "--concurrency=2")
        server = stack.server(env)
        beats.append(Beat(env, tmp_path / "beat.log"))
        wait_for(lambda: _starts(note) >= 2, timeout=60, what="two runs")
        # A run is a task like any other: its id is in the listing, its status readable.
        _, _, body = server.request("/_kernkoa/endpoints/sched/S/tick_celery")
        schedule = json.loads(body)["schedule"]
        assert schedule["every"] == 1 and schedule["last_run"] and schedule["next_run"]
        code, status = status_of(server, schedule["last_task_id"])
        assert code == 200 and status["status"] in ("PENDING", "STARTED", "SUCCESS")
        done = _runs(note)[0][1]
        wait_for(lambda: status_of(server, done)[1]["status"] == "SUCCESS", what="a run's SUCCESS")
        routes = subprocess.run([str(BIN / "kernkoa"), "routes"], env=env, cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=60)
        assert "scheduled every 1 s; last run 20" in routes.stdout
        _changes_follow_the_catalog(controller, note)
    finally:
        stack.close()


@pytest.mark.redis
def test_two_beats_on_redis_fire_each_run_once(
        tmp_path: Path, redis: RedisServer, beats: list[Beat]) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    note = tmp_path / "runs.txt"
    _schedule(catalog / "controller" / "sched.py", note, "@every(seconds=1)")
    env = clean_environ(CATALOG=str(catalog), BROKER_URL=redis.url, VAR=str(tmp_path / "var"),
                        BEAT_LEASE="3")
    stack = Stack(tmp_path)
    try:
        stack.worker(env, "--concurrency=2")
        first, second = Beat(env, tmp_path / "beat-1.log"), Beat(env, tmp_path / "beat-2.log")
        beats += [first, second]
        wait_for(lambda: _starts(note) >= 4, timeout=60, what="four runs")
        # One beat fires, the other waits for the lock.
        assert (first.started() == 0) != (second.started() == 0)
        holder, waiting = (first, second) if first.started() else (second, first)
        holder.kill()  # dies holding the lock: the other takes over when its lease ends
        before = waiting.started()
        wait_for(lambda: waiting.started() >= before + 3, timeout=60, what="the take-over")
        wait_for(lambda: _starts(note) >= holder.started() + waiting.started(), timeout=30,
                 what="every started run noted")
        ids = [task_id for kind, task_id, _ in _runs(note) if kind == "start"]
        assert len(ids) == len(set(ids))  # no task ran twice
        assert _starts(note) == holder.started() + waiting.started()  # and none was extra
    finally:
        stack.close()


@pytest.mark.parametrize("broker", [pytest.param("redis", marks=pytest.mark.redis), "embedded"])
def test_no_overlap_skips_while_a_slow_run_goes_on(
        tmp_path: Path, broker: str, request: pytest.FixtureRequest, beats: list[Beat]) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    note = tmp_path / "runs.txt"
    _schedule(catalog / "controller" / "sched.py", note, "@every(seconds=1, overlap=False)",
              pause=2.5)
    env = clean_environ(CATALOG=str(catalog), VAR=str(tmp_path / "var"))
    if broker == "redis":
        env["KERNKOA_BROKER_URL"] = request.getfixturevalue("redis").url
    stack = Stack(tmp_path)
    try:
        stack.worker(env, "--concurrency=3")  # room for overlapping runs, were they sent
        beats.append(Beat(env, tmp_path / "beat.log"))
        wait_for(lambda: sum(1 for k, _, _ in _runs(note) if k == "end") >= 2, timeout=60,
                 what="two slow runs")
        events = [kind for kind, _, _ in _runs(note)]
        # Never two at once: each run ends before the next starts.
        assert events[:4] == ["start", "end", "start", "end"], events
        assert "skipped, its previous run" in beats[0].log.read_text()
        server = stack.server(env)
        _, _, body = server.request("/_kernkoa/endpoints/sched/S/tick_celery")
        assert json.loads(body)["schedule"]["skipped"] >= 1
    finally:
        stack.close()


def test_serve_runs_schedules_on_the_embedded_default(
        tmp_path: Path, beats: list[Beat]) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    controller = catalog / "controller" / "sched.py"
    note = tmp_path / "runs.txt"
    _schedule(controller, note, "@every(seconds=1)")
    (catalog / "controller" / "broken.py").write_text("raise ValueError('x')\n")
    var = tmp_path / "var"
    env = clean_environ(CATALOG=str(catalog), VAR=str(var), WORKER_CONCURRENCY="2")
    stack = Stack(tmp_path)
    try:
        server = stack.server(env, with_worker=True)
        wait_for(lambda: _starts(note) >= 2, timeout=60, what="two runs")
        # A second beat on the same VAR waits on the file lock: it never fires.
        extra = Beat(env, tmp_path / "beat-extra.log")
        beats.append(extra)
        wait_for(lambda: "failed to import" in extra.log.read_text(), timeout=30,
                 what="the broken file reported")
        _changes_follow_the_catalog(controller, note)
        assert extra.started() == 0
        ids = [task_id for kind, task_id, _ in _runs(note) if kind == "start"]
        assert len(ids) == len(set(ids))
        code, status = status_of(server, ids[0])
        assert code == 200 and status["status"] == "SUCCESS"
        assert json.loads((var / "celery" / "beat" / "runs.json").read_text()) == {}
    finally:
        stack.close()
    assert os.path.exists(var / "celery" / "beat" / "lock")


@pytest.mark.parametrize("expression", ["61 * * * *", "1,,2 * * * *", "*/ * * * *",
                                        "*/0 * * * *", "0 0 31 2 *"])
def test_a_cron_celery_cannot_read_is_an_error_of_the_schedule(
        tree: ControllerTree, make_app: t.Callable[..., Flask], expression: str) -> None:
    # "1,,2" and "*/" made Celery's parser raise its own ParseException, which
    # is no ValueError: it stopped the beat instead of being the schedule's error.
    tree.write("s.py", SCHEDULED.format(note="/dev/null", pause=0,
                                        decorator=f'@cron("{expression}")'))
    tree.write("t.py", SCHEDULED.format(note="/dev/null", pause=0, decorator="@every(hours=1)"))
    scheduler = CatalogScheduler(get_celery(make_app()))
    try:
        assert set(scheduler.schedule) == {"/t/S/tick_celery"}
        assert "not a schedule" in (scheduler.records["/s/S/tick_celery"].error or "")
        (tree.controllers / "s.py").unlink()
        scheduler.sync_catalog()
        assert set(scheduler.records) == {"/t/S/tick_celery"}
    finally:
        scheduler.lock.release()


def test_an_unknown_timezone_is_refused(make_app: t.Callable[..., Flask]) -> None:
    with pytest.raises(SettingsError, match="Mars/Olympus"):
        get_celery(make_app(SCHEDULE_TIMEZONE="Mars/Olympus"))


def test_a_run_that_needs_fields_is_an_error_of_the_schedule(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("s.py", """
        from kernkoa import *

        class S:
            @every(seconds=1)
            def needy_celery(self, task, year: int):
                return year
        """)
    scheduler = CatalogScheduler(get_celery(make_app()))
    try:
        # Told as soon as it is scheduled, not only when a run falls due.
        assert scheduler.records["/s/S/needy_celery"].error == "year: this field is required"
        assert scheduler.lock.hold()
        scheduler.apply_entry(scheduler.schedule["/s/S/needy_celery"])
        assert scheduler.records["/s/S/needy_celery"].error == "year: this field is required"
        assert scheduler.records["/s/S/needy_celery"].last_task_id is None
    finally:
        scheduler.lock.release()


def test_a_schedule_whose_file_breaks_is_kept_and_shows_why_it_does_not_run(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("s.py", SCHEDULED.format(note="/dev/null", pause=0, decorator="@every(seconds=1)"))
    scheduler = CatalogScheduler(get_celery(make_app()))
    try:
        assert scheduler.lock.hold()
        time.sleep(1.1)  # a new mtime, whatever the file system's resolution
        (tree.controllers / "s.py").write_text("def broken(:\n")
        scheduler.sync_catalog()
        scheduler.apply_entry(scheduler.schedule["/s/S/tick_celery"])
        record = scheduler.records["/s/S/tick_celery"]
        assert record.error == "The controller for this URL failed to load."
        assert record.last_task_id is None
    finally:
        scheduler.lock.release()


def test_an_embedded_beat_lock_whose_file_is_removed_is_contended_again(
        tmp_path: Path) -> None:
    # The holder kept its flock on the removed file while a second beat locked a
    # new one: both fired every run.
    lock = tmp_path / "beat" / "lock"
    first, second = FileBeatLock(lock), FileBeatLock(lock)
    try:
        assert first.hold() and not second.hold()
        lock.unlink()
        assert second.hold()
        assert not first.hold()
        second.release()
        assert first.hold() and not second.hold()
    finally:
        first.release()
        second.release()


@pytest.mark.redis
def test_a_redis_blip_does_not_leave_the_beat_lock_to_nobody(redis: RedisServer) -> None:
    # One failed renewal made the holder forget its lease: no beat, itself
    # included, could take the lock until it expired (BEAT_LEASE), and runs due
    # meanwhile were late.
    lock = RedisBeatLock(redis.client(), lease=60)
    other = RedisBeatLock(redis.client(), lease=60)
    try:
        assert lock.hold() and not other.hold()
        renew = lock.lock.reacquire

        def blip() -> None:
            raise RedisConnectionError("restarting")

        lock.lock.reacquire = blip
        assert not lock.hold()  # not firing while Redis does not answer
        lock.lock.reacquire = renew
        assert lock.hold() and not other.hold()
        redis.client().flushall()  # Redis came back empty: whoever takes it first
        assert not lock.hold()
        assert other.hold() and not lock.hold()
    finally:
        lock.release()
        other.release()


def test_an_every_runs_on_when_the_clock_is_set_back(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    # Celery waited for the clock to pass the last run again: an hour back
    # stopped a run every two seconds for an hour.
    tree.write("s.py", SCHEDULED.format(note="/dev/null", pause=0, decorator="@every(seconds=2)"))
    tree.write("c.py", SCHEDULED.format(note="/dev/null", pause=0, decorator='@cron("0 3 * * *")'))
    scheduler = CatalogScheduler(get_celery(make_app()))
    try:
        ahead = {}
        for name, entry in scheduler.schedule.items():
            entry.last_run_at = ahead[name] = entry.default_now() + timedelta(hours=1)
        assert scheduler.is_due(scheduler.schedule["/s/S/tick_celery"]).next <= 2
        # A cron's next run is a date: it is not moved, so 03:00 does not run twice.
        scheduler.is_due(scheduler.schedule["/c/S/tick_celery"])
        assert scheduler.schedule["/c/S/tick_celery"].last_run_at == ahead["/c/S/tick_celery"]
    finally:
        scheduler.lock.release()


@pytest.mark.parametrize("content", ["", "[]", '{"/s/S/tick_celery": 5}',
                                     '{"/s/S/tick_celery": {"last_run_at": "x"}}',
                                     '{"/s/S/tick_celery": {"skipped": true}}'])
def test_unreadable_run_records_are_ignored(
        tree: ControllerTree, make_app: t.Callable[..., Flask], tmp_path: Path,
        content: str) -> None:
    # A run record file emptied by a crash or edited by hand stopped the beat as
    # it took the lock, and made the listings a 500.
    tree.write("s.py", SCHEDULED.format(note="/dev/null", pause=0, decorator="@every(hours=1)"))
    app = make_app()
    runs = tmp_path / "var" / "celery" / "beat" / "runs.json"
    runs.parent.mkdir(parents=True)
    runs.write_text(content)
    listed = app.test_client().get("/_kernkoa/endpoints/s/S/tick_celery")
    assert listed.status_code == 200
    assert listed.get_json()["schedule"]["last_run"] is None
    scheduler = CatalogScheduler(get_celery(app))
    try:
        assert scheduler.tick() > 0
        assert set(json.loads(runs.read_text())) == {"/s/S/tick_celery"}  # written again
    finally:
        scheduler.lock.release()


@pytest.mark.redis
def test_unreadable_run_records_on_redis_are_ignored(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    redis.client().hset("kernkoa-beat-runs", mapping={
        "/a": "{", "/b": "[1]", "/c": '{"last_run_at": 1.5, "last_task_id": "t"}'})
    runs = RedisRuns(redis.client()).read()
    assert set(runs) == {"/c"} and runs["/c"].last_task_id == "t"


def test_no_overlap_runs_again_once_the_last_runs_results_expired(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A run whose results expired (RESULT_EXPIRES shorter than the interval, or
    # results pruned) read PENDING for ever: overlap=False skipped every run after.
    tree.write("s.py", SCHEDULED.format(note="/dev/null", pause=0,
                                        decorator="@every(days=2, overlap=False)"))
    scheduler = CatalogScheduler(get_celery(make_app(RESULT_EXPIRES=3600)))
    route = "/s/S/tick_celery"
    try:
        assert scheduler.lock.hold()
        scheduler.apply_entry(scheduler.schedule[route])
        first = scheduler.records[route].last_task_id
        assert first is not None
        scheduler.apply_entry(scheduler.schedule[route])  # never picked up: still going
        assert scheduler.records[route].skipped == 1
        later = time.time() + 2 * 86400
        monkeypatch.setattr(time, "time", lambda: later)
        scheduler.apply_entry(scheduler.schedule[route])
        assert scheduler.records[route].skipped == 1
        assert scheduler.records[route].last_task_id != first
    finally:
        scheduler.lock.release()
