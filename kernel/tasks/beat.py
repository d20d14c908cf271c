"""Celery beat on the catalog: :class:`CatalogScheduler` runs the schedules that
``_celery`` methods declare (``@every``, ``@cron``, :mod:`kernel.catalog.schedules`).

Every second the scheduler scans the catalog with the loader that serves
requests, so a schedule added, changed or removed in a controller file is
picked up without a restart. The schedules of a file that fails to import are
kept as they were and the failure is logged (once per version of the file):
an edit in progress never silently drops a nightly job.

Only the beat holding the deployment's lock (:mod:`kernel.tasks.beatstate`)
fires; the others wait for it. When a beat takes the lock it reads the last
runs its predecessor recorded, so a run is neither repeated nor lost by the
hand-over (an overdue run fires once).

A run is a normal task: a signed id (:mod:`kernel.tasks.ids`), published by
:func:`kernel.tasks.enqueue.enqueue` as a trigger would, so it is followed at
``/status/<id>`` like any other. With ``overlap=False`` a run is skipped while
the previous one is still queued or running.
"""

from __future__ import annotations

import logging
import time
import typing as t
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from celery import beat
from celery.schedules import BaseSchedule
from celery.schedules import ParseException
from celery.schedules import crontab
from celery.schedules import schedule as every_schedule

from ..catalog.exposure import Endpoint
from ..catalog.listing import error_line
from ..catalog.registry import scan
from ..catalog.schedules import Schedule
from ..catalog.schedules import schedule_of
from ..core.errors import KernKoaError
from ..core.errors import ParameterError
from ..core.errors import TaskNotFound
from ..web.params import GivenFields
from ..web.state import state_of
from .beatstate import RunRecord
from .beatstate import beat_lock
from .beatstate import run_store
from .body import status_body
from .celeryapp import KernKoaCelery
from .enqueue import CONNECTION_ERRORS
from .enqueue import enqueue
from .events import FINAL_STATES
from .ids import describe_task_id
from .run import TASK_NAME
from .store import JobStore

log = logging.getLogger("kernkoa.beat")

#: Seconds between two scans of the catalog, and longest sleep of the beat.
SYNC_INTERVAL = 1.0


def celery_schedule(declared: Schedule, celery: KernKoaCelery) -> BaseSchedule:
    """Celery's schedule for a declared one (``@cron`` in ``SCHEDULE_TIMEZONE``).

    :raises ValueError: for a cron field Celery cannot read (``61 * * * *``,
        ``1,,2 * * * *``).
    """
    if declared.seconds is not None:
        return every_schedule(timedelta(seconds=declared.seconds), app=celery)
    assert declared.cron is not None
    minute, hour, day_of_month, month, day_of_week = declared.cron.split()
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month, day_of_week=day_of_week, app=celery)
    except ParseException as error:  # Celery's parser raises it, not a ValueError
        raise ValueError(str(error)) from error


class CatalogScheduler(beat.Scheduler):  # type: ignore[misc]  # Celery has no types
    """Celery's scheduler, its entries read from the catalog; fires only under the lock."""

    def __init__(self, app: KernKoaCelery, *args: t.Any, **kwargs: t.Any) -> None:
        self.flask_app = app.flask_app
        self.runs = run_store(app)
        self.lock = beat_lock(app)
        #: The declared schedule of each entry, by route.
        self.declared: dict[str, Schedule] = {}
        #: The run records, by route, written after every change.
        self.records: dict[str, RunRecord] = {}
        self._reported: set[tuple[str, str]] = set()
        self._next_sync = 0.0
        self._holding = False
        kwargs["max_interval"] = SYNC_INTERVAL
        super().__init__(app, *args, **kwargs)

    # Celery's hooks -------------------------------------------------------

    def setup_schedule(self) -> None:
        """Read the catalog (instead of ``beat_schedule`` and Celery's default entries)."""
        self.sync_catalog()

    def tick(self, *args: t.Any, **kwargs: t.Any) -> float:
        """Scan the catalog when due, then fire what is due if this beat holds the lock."""
        if time.monotonic() >= self._next_sync:
            self.sync_catalog()
            self._next_sync = time.monotonic() + SYNC_INTERVAL
        holding = self.lock.hold()
        if holding and not self._holding:
            log.info("beat: holding the lock; firing from now on")
            self._take_over()
        self._holding = holding
        if not holding:
            return SYNC_INTERVAL
        return t.cast(float, super().tick(*args, **kwargs))

    def is_due(self, entry: beat.ScheduleEntry) -> t.Any:
        """Celery's answer, once an ``@every`` whose last run is ahead of the clock
        (the clock was set back) counts from now."""
        declared = self.declared.get(entry.name)
        if declared is not None and declared.seconds is not None:
            # Else Celery waits for the clock to pass the last run again: a run
            # every minute would stop for as long as the clock went back. A @cron
            # keeps its last run: its next time is a date, not a wait.
            now = entry.default_now()
            if entry.last_run_at > now:
                entry.last_run_at = now
        return entry.is_due()

    def apply_entry(self, entry: beat.ScheduleEntry, producer: t.Any = None) -> None:
        """Start one run of ``entry`` (Celery has just advanced its last run time)."""
        route = entry.name
        if not self.lock.hold():
            # Renewed once more right before the run: a beat that froze since
            # its tick began, and lost the lock meanwhile, fires nothing.
            self._holding = False
            return
        record = self.records.setdefault(route, RunRecord())
        record.last_run_at = time.time()
        # Celery has put the advanced entry in place of this one.
        record.next_run_at = self._next_run(self.schedule.get(route, entry))
        declared = self.declared.get(route)
        if declared is not None and not declared.overlap and self._still_going(record):
            record.skipped += 1
            log.info("beat: %s skipped, its previous run %s is still going",
                     route, record.last_task_id)
        else:
            try:
                record.last_task_id = self.fire(route)
                record.error = None
                log.info("beat: %s started task %s", route, record.last_task_id)
            except KernKoaError as error:
                record.error = _explain(error)
                log.error("beat: %s not started: %s", route, record.error)
        self._save()

    def close(self) -> None:
        """Release the lock on the way out."""
        self.lock.release()
        super().close()

    @property
    def info(self) -> str:
        """What ``celery beat`` prints about this scheduler."""
        return f"    . catalog -> {state_of(self.flask_app).settings.CATALOG}"

    # KernKoa's part -------------------------------------------------------

    def fire(self, route: str) -> str:
        """Publish one run of ``route`` as a trigger without fields would; return its id.

        :raises KernKoaError: when it cannot be sent (a required field, a
            broker that is away).
        """
        with self.flask_app.app_context():
            endpoint, args, kwargs = self._bind(route)
            return enqueue(endpoint, route, args, kwargs)

    def _bind(self, route: str) -> tuple[Endpoint, list[t.Any], dict[str, t.Any]]:
        """``route``'s method and its arguments for a run: its defaults (in an app context).

        :raises KernKoaError: when the method requires a field, or cannot be loaded.
        """
        state = state_of(self.flask_app)
        _, endpoint = state.catalog.resolve(route)
        args, kwargs = endpoint.binder.bind(GivenFields({}, state.settings), (),
                                            route.lstrip("/"))
        return endpoint, list(args), kwargs

    def sync_catalog(self) -> None:
        """Make the entries those the catalog declares now."""
        routes, broken = scan(state_of(self.flask_app).catalog)
        kept_files = set()
        for bad in broken:
            kept_files.add(bad.file)
            if (str(bad.file), bad.error) not in self._reported:
                self._reported.add((str(bad.file), bad.error))
                log.error("beat: %s failed to import; its schedules are kept as they were: %s",
                          bad.file, error_line(bad.error))
        wanted = {route.url: declared for route in routes
                  if (declared := schedule_of(route.endpoint.func)) is not None}
        kept = {name for name, entry in self.schedule.items()
                if entry.options.get("kernkoa_file") in kept_files}
        changed = False
        for name in (set(self.schedule) | set(self.declared)) - set(wanted) - kept:
            self.schedule.pop(name, None)
            self.declared.pop(name, None)
            self.records.pop(name, None)
            log.info("beat: %s is no longer scheduled", name)
            changed = True
        files = {route.url: route.file for route in routes}
        for name, declared in wanted.items():
            if self.declared.get(name) == declared:
                continue
            changed = True
            self.declared[name] = declared
            record = self.records.setdefault(name, RunRecord())
            try:
                entry = self.Entry(name=name, task=TASK_NAME, app=self.app,
                                   schedule=celery_schedule(declared, self.app),
                                   options={"kernkoa_file": files[name]},
                                   last_run_at=self._last_run(record))
            except ValueError as error:
                self.schedule.pop(name, None)
                record.error = f"not a schedule: {error}"
                log.error("beat: %s %s", name, record.error)
                continue
            record.error = None
            record.next_run_at = self._next_run(entry)
            self.schedule[name] = entry
            log.info("beat: %s scheduled %s", name, declared.describe())
            try:
                # Told now, not at the first run (a nightly job: tomorrow at 03:00).
                with self.flask_app.app_context():
                    self._bind(name)
            except KernKoaError as error:
                record.error = _explain(error)
                log.error("beat: %s cannot run: %s", name, record.error)
        if changed and self._holding:
            self._save()

    def _take_over(self) -> None:
        # The previous holder's last runs, so a hand-over repeats no run.
        try:
            stored = self.runs.read()
        except CONNECTION_ERRORS as error:
            log.error("beat: run records unreadable: %r", error)
            return
        for name, entry in list(self.schedule.items()):
            previous = stored.get(name)
            if previous is None or previous.last_run_at is None:
                continue
            record = self.records.setdefault(name, RunRecord())
            record.last_run_at = previous.last_run_at
            record.last_task_id = previous.last_task_id
            record.skipped = previous.skipped
            entry.last_run_at = self._last_run(record)
            record.next_run_at = self._next_run(entry)
        self._heap = None  # Celery rebuilds its heap from the entries' new times
        self._save()

    def _still_going(self, record: RunRecord) -> bool:
        task_id = record.last_task_id
        if task_id is None:
            return False
        try:
            found = JobStore(self.app).read(task_id)
        except CONNECTION_ERRORS:
            return True  # cannot tell: skipping is the safe side
        if found.meta is None and not found.revoked:
            # Nothing stored yet reads PENDING, and so does a run whose results
            # expired (or that was lost): past RESULT_EXPIRES it is taken as over,
            # or overlap=False would skip every run from then on.
            signed = describe_task_id(task_id)
            expires = self.app.kernkoa_settings.RESULT_EXPIRES
            if signed is not None and expires and time.time() - signed.created > expires:
                return False
        try:
            return status_body(found)["status"] not in FINAL_STATES
        except TaskNotFound:
            return False

    def _save(self) -> None:
        try:
            self.runs.write(self.records)
        except CONNECTION_ERRORS as error:
            log.error("beat: run records not written: %r", error)

    def _last_run(self, record: RunRecord) -> datetime:
        if record.last_run_at is None:
            return t.cast(datetime, self.app.now())
        return datetime.fromtimestamp(record.last_run_at, UTC)

    def _next_run(self, entry: beat.ScheduleEntry) -> float | None:
        remaining = entry.schedule.remaining_estimate(entry.last_run_at)
        if remaining is None:
            return None
        return time.time() + max(0.0, float(remaining.total_seconds()))


def _explain(error: KernKoaError) -> str:
    """Why a run could not be sent, for the logs and the listings."""
    if isinstance(error, ParameterError):
        return "; ".join(f"{f['name']}: {f['message']}" for f in error.fields)
    return str(getattr(error, "description", None) or error)


def run_beat(celery: KernKoaCelery, logfile: str | None = None) -> None:
    """Run Celery beat with :class:`CatalogScheduler` in this process, until stopped
    (``logfile``: where it logs, instead of stderr)."""
    celery.Beat(scheduler=CatalogScheduler, max_interval=SYNC_INTERVAL,
                loglevel="INFO", logfile=logfile).run()
