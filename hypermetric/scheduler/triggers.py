"""Cron schedules, and the intervals they cut time into.

A schedule's fire times cut time into intervals: the interval whose **logical date** is a
fire time ``f`` covers ``[f, next fire)`` and is **due** at its end, when its run is
created (Airflow's convention: the run for a night evaluates the interval that just ended).
One interval may start between fire times: after an edit moved them, the next interval
starts where the last one created ended and runs to the first new fire time.

**The DST rule.** Cron fields match the *wall-clock* time of the definition's timezone.

* A wall time the clock skips (spring forward: 02:30 when clocks jump from 02:00 to
  03:00) fires once, moved forward by the length of the gap (03:30, the instant
  ``02:30`` names with the pre-transition offset); if that instant is a fire time anyway,
  it fires once.
* A wall time the clock shows twice (fall back: 02:30 when clocks go from 03:00 back to
  02:00) fires once, at its first occurrence.

So a daily (or coarser) schedule fires exactly once every local day, on a 23-hour and on
a 25-hour day alike; an interval spanning a transition is an hour shorter or longer. A
schedule that fires several times an hour keeps its wall-clock pattern: during the
repeated hour of a fall-back day it does not fire a second time.

Cron maths is APScheduler's ``CronTrigger``, run on naive wall-clock times (as if in UTC,
a zone without transitions); this module maps wall times to instants by the rule above.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from hypermetric.errors import ScheduleError

__all__ = ["CronSchedule", "Interval", "Timetable", "parse_zone"]

_PRESETS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_TICK = timedelta(microseconds=1)
#: the largest DST shift any zone makes, with margin: how far back a search may need to look
_MAX_SHIFT = timedelta(hours=3)
#: how far back :meth:`CronSchedule.last_at_or_before` looks before giving up
_MAX_LOOKBACK = timedelta(days=366 * 10)


def parse_zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; ScheduleError if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"unknown timezone {name!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def _weekday_number(token: str, expression: str) -> int:
    lowered = token.lower()
    if lowered in _DAY_NAMES:
        return _DAY_NAMES.index(lowered)
    if lowered.isdigit() and 0 <= int(lowered) <= 7:
        return int(lowered) % 7
    raise ScheduleError(
        f"cron {expression!r}: day of week {token!r} is not 0-7 or sun..sat; fix the schedule"
    )


def _weekdays(field_text: str, expression: str) -> str:
    """A cron day-of-week field (0 or 7 = Sunday) in APScheduler's numbering (0 = Monday)."""
    days: set[int] = set()
    for part in field_text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ScheduleError(f"cron {expression!r}: bad step in day of week {part!r}")
        if span in ("*", "?"):
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _weekday_number(low, expression), _weekday_number(high, expression)
            last = 7 if last == 0 and first > 0 else last  # "5-7", "fri-sun": up to Sunday
            if last < first:
                raise ScheduleError(
                    f"cron {expression!r}: day-of-week range {span!r} runs backwards"
                )
        else:
            first = last = _weekday_number(span, expression)
            if step is not None:
                last = 6
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    if len(days) == 7:
        return "*"
    return ",".join(str(d) for d in sorted((d + 6) % 7 for d in days))


def _trigger(expression: str) -> CronTrigger:
    text = _PRESETS.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise ScheduleError(
            f"cron {expression!r} has {len(text.split())} fields; give 5 (minute hour day "
            "month weekday) or 6 (second first), or a preset such as @daily"
        )
    second, minute, hour, day, month, weekday = parts
    if day not in ("*", "?") and weekday not in ("*", "?"):
        raise ScheduleError(
            f"cron {expression!r} restricts both the day of month and the day of week; "
            "cron would run when either matches, so keep one of them '*'"
        )
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day="*" if day == "?" else day,
            month=month,
            day_of_week=_weekdays(weekday, expression),
            timezone=UTC,
        )
    except ValueError as exc:
        raise ScheduleError(f"invalid cron {expression!r}: {exc}; fix the schedule") from None


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression read in a timezone, giving fire times as aware UTC datetimes."""

    expression: str
    timezone: str
    _zone: ZoneInfo = field(repr=False, compare=False)
    _cron: CronTrigger = field(repr=False, compare=False)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        """Validate and compile; ScheduleError names what is wrong."""
        if not isinstance(expression, str) or not expression.strip():
            raise ScheduleError("the schedule is empty; give a cron expression such as '0 2 * * *'")
        schedule = cls(expression.strip(), timezone, parse_zone(timezone), _trigger(expression))
        if schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise ScheduleError(f"cron {expression!r} never fires; fix the schedule")
        return schedule

    def _instant(self, wall: datetime) -> datetime:
        # fold=0: a skipped wall time takes the offset before the jump (moved forward by
        # the gap); a repeated one is its first occurrence.
        return wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)

    def _next_wall(self, wall: datetime) -> datetime | None:
        found = self._cron.get_next_fire_time(None, (wall + _TICK).replace(tzinfo=UTC))
        return None if found is None else found.replace(tzinfo=None)

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire time strictly after ``instant``, or None if there is none."""
        local = instant.astimezone(self._zone)
        wall = local.replace(tzinfo=None)
        if (instant - _MAX_SHIFT).astimezone(self._zone).utcoffset() != local.utcoffset():
            wall -= _MAX_SHIFT  # just after a jump: a skipped wall time may map after instant
        while True:
            found = self._next_wall(wall)
            if found is None:
                return None
            candidate = self._instant(found)
            if candidate > instant:
                return candidate
            wall = found

    def last_at_or_before(self, instant: datetime) -> datetime | None:
        """The latest fire time at or before ``instant``, or None within ten years."""
        window = timedelta(seconds=1)
        while window <= _MAX_LOOKBACK:
            found = self.next_after(instant - window)
            if found is not None and found <= instant:
                while (later := self.next_after(found)) is not None and later <= instant:
                    found = later
                return found
            window *= 2
        return None


@dataclass(frozen=True)
class Interval:
    """One scheduled interval: ``[logical_date, end)``, due at ``end``.

    ``end`` is a fire time; ``logical_date`` is one too, except for the interval that
    continues from the last one after an edit moved the fire times.
    """

    logical_date: datetime
    end: datetime

    @property
    def due_at(self) -> datetime:
        """When the interval's run is created: its end."""
        return self.end


@dataclass(frozen=True)
class Timetable:
    """A schedule bounded by an optional start and end date (logical dates in between)."""

    schedule: CronSchedule
    start_date: datetime | None = None
    end_date: datetime | None = None

    def interval_at(self, logical_date: datetime) -> Interval | None:
        """The interval starting at fire time ``logical_date``; None past the end date."""
        if self.end_date is not None and logical_date > self.end_date:
            return None
        end = self.schedule.next_after(logical_date)
        return None if end is None else Interval(logical_date, end)

    def interval_after(self, interval: Interval) -> Interval | None:
        """The interval that follows ``interval``."""
        return self.interval_at(interval.end)

    def _first_at_or_after(self, instant: datetime) -> datetime | None:
        return self.schedule.next_after(instant - _TICK)

    def _earliest(self) -> datetime | None:
        """The first fire time at or after the start date (None without a start date)."""
        return None if self.start_date is None else self._first_at_or_after(self.start_date)

    def first_interval(
        self, now: datetime, catchup: bool, *, after: datetime | None = None
    ) -> Interval | None:
        """Where a definition's schedule (re)starts at ``now``; None if it has ended.

        ``after`` is the end of the last interval the definition's runs cover. The next
        interval starts there (or at the start date, if later), never before, and ends at
        the schedule's next fire time: after an edit that moved the fire times it is the
        short interval up to the first new one, so no time is covered twice or skipped.
        Without ``after``: with catchup and a start date, the first interval on or after
        the start date; otherwise the latest complete interval (due at once), or the first
        on or after the start date if that is later. Without catchup, the latest complete
        interval wins over any earlier one.
        """
        earliest = self._earliest()
        if after is not None:
            first = self.interval_at(after if earliest is None else max(after, earliest))
            return first if catchup or first is None else self.skip_to_latest(first, now)
        if catchup and earliest is not None:
            return self.interval_at(earliest)
        latest = self.latest_complete(now)
        if latest is not None:
            return latest
        # nothing complete yet: the start date is ahead, or the schedule fired at most once
        start = earliest or self.schedule.last_at_or_before(now) or self.schedule.next_after(now)
        return None if start is None else self.interval_at(start)

    def skip_to_latest(self, current: Interval, now: datetime) -> Interval:
        """Without catchup: the latest complete interval if it starts after ``current``."""
        latest = self.latest_complete(now)
        return (
            latest if latest is not None and latest.logical_date > current.logical_date else current
        )

    def latest_complete(self, now: datetime) -> Interval | None:
        """The latest interval that is due at ``now`` (within the start and end dates)."""
        due = self.schedule.last_at_or_before(now)
        logical = None if due is None else self.schedule.last_at_or_before(due - _TICK)
        if logical is not None and self.end_date is not None and logical > self.end_date:
            logical = self.schedule.last_at_or_before(self.end_date)
        if logical is None or (self.start_date is not None and logical < self.start_date):
            return None
        return self.interval_at(logical)

    def intervals(self, start: datetime, end: datetime) -> Iterator[Interval]:
        """Every interval whose logical date is within ``[start, end]`` (and the bounds)."""
        if self.start_date is not None:
            start = max(start, self.start_date)
        logical = self._first_at_or_after(start)
        current = None if logical is None else self.interval_at(logical)
        while current is not None and current.logical_date <= end:
            yield current
            current = self.interval_after(current)
