"""Schedules declared in the catalog: ``@every(minutes=15)`` and ``@cron("0 3 * * *")``.

A schedule is data on the ``_celery`` method it governs, as an access rule is:
the decorator checks its arguments and sets :class:`Schedule` on the function.
``kernkoa beat`` (:mod:`kernel.tasks.beat`) reads it off the catalog; the
listings show it. A declaration that is wrong raises at import, so its file is
reported as broken, never silently left out.
"""

from __future__ import annotations

import math
import re
import typing as t
from dataclasses import dataclass
from datetime import timedelta

from ..core.errors import ScheduleError

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

_ATTR = "__kernkoa_schedule__"

#: One field of a cron expression: numbers, names (``mon``, ``jan``), ``*``, ``/``, ``,``, ``-``.
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-]++")

#: Fields of a cron expression: minute, hour, day of month, month, day of week.
CRON_FIELDS = 5

#: Shortest ``@every``: the beat looks at its schedules once a second, and a
#: shorter interval would fire as fast as the beat can loop.
MIN_EVERY = timedelta(seconds=1)

#: Longest ``@every``: a year (a rarer run is a ``@cron``); beyond it the next
#: run soon falls past the last date a ``datetime`` holds.
MAX_EVERY = timedelta(days=366)


@dataclass(frozen=True)
class Schedule:
    """When a ``_celery`` method runs by itself: every ``seconds``, or at ``cron``."""

    #: Seconds between two runs (``@every``), else ``None``.
    seconds: float | None = None
    #: A five-field cron expression (``@cron``), read in ``SCHEDULE_TIMEZONE``, else ``None``.
    cron: str | None = None
    #: Whether a run starts while the previous one is still queued or running.
    overlap: bool = True

    def describe(self) -> dict[str, t.Any]:
        """The schedule as JSON: ``{"every": 900, "overlap": true}`` or ``{"cron": ...}``."""
        seconds = self.seconds
        if seconds is not None and seconds.is_integer():
            seconds = int(seconds)  # 900, not 900.0
        when: dict[str, t.Any] = ({"every": seconds} if seconds is not None
                                  else {"cron": self.cron})
        return {**when, "overlap": self.overlap}


def _mark(schedule: Schedule) -> t.Callable[[F], F]:
    def decorate(func: F) -> F:
        name = getattr(func, "__name__", "")
        if not name.endswith("_celery"):
            raise ScheduleError(f"{name}: only a _celery method can have a schedule")
        if getattr(func, _ATTR, None) is not None:
            raise ScheduleError(f"{name}: one schedule per method")
        setattr(func, _ATTR, schedule)
        return func

    return decorate


def every(*, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0,
          overlap: bool = True) -> t.Callable[[F], F]:
    """Run a ``_celery`` method every so often (the keywords of :class:`~datetime.timedelta`)::

        class Cache:
            @every(minutes=15)
            def refresh_celery(self, task): ...

    :param overlap: ``False`` skips a run while the previous one is still queued
        or running.
    :raises ScheduleError: when a keyword is not a finite number, or the
        interval is not between :data:`MIN_EVERY` and :data:`MAX_EVERY`.
    """
    parts = {"seconds": seconds, "minutes": minutes, "hours": hours, "days": days}
    for name, value in parts.items():
        # bool is an int to Python, but @every(hours=True) is a slip, not an hour.
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise ScheduleError(f"@every: {name} must be a finite number, not {value!r}")
    try:
        interval = timedelta(**parts)
    except OverflowError:
        interval = MAX_EVERY + MAX_EVERY  # beyond timedelta itself: too long as well
    if not MIN_EVERY <= interval <= MAX_EVERY:
        raise ScheduleError(f"@every needs an interval from {MIN_EVERY} to {MAX_EVERY} "
                            f"(a rarer run is a @cron), not {_spelled(parts)}")
    return _mark(Schedule(seconds=interval.total_seconds(), overlap=_flag(overlap)))


def _spelled(parts: dict[str, float]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in parts.items() if value) or "nothing"


def _flag(overlap: t.Any) -> bool:
    if not isinstance(overlap, bool):
        raise ScheduleError(f"overlap must be True or False, not {overlap!r}")
    return overlap


def cron(expression: str, *, overlap: bool = True) -> t.Callable[[F], F]:
    """Run a ``_celery`` method at the times of a cron expression (``SCHEDULE_TIMEZONE``)::

        class Report:
            @cron("0 3 * * *")          # every day at 03:00
            def nightly_celery(self, task): ...

    :param overlap: ``False`` skips a run while the previous one is still queued
        or running.
    :raises ScheduleError: when ``expression`` does not have five fields of
        cron characters (the beat parses the values themselves, and reports a
        field out of range).
    """
    fields = expression.split() if isinstance(expression, str) else []
    if len(fields) != CRON_FIELDS or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise ScheduleError(f"@cron needs five fields (minute hour day month weekday), "
                            f"not {expression!r}")
    return _mark(Schedule(cron=" ".join(fields), overlap=_flag(overlap)))


def schedule_of(func: t.Callable[..., t.Any]) -> Schedule | None:
    """The schedule of a method, or ``None``."""
    found = getattr(func, _ATTR, None)
    return found if isinstance(found, Schedule) else None
