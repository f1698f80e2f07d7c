"""Cron schedules, intervals and the DST rule (no DB)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hypermetric.errors import ScheduleError
from hypermetric.scheduler.triggers import CronSchedule, Timetable

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def fires(schedule: CronSchedule, start: datetime, count: int) -> list[datetime]:
    out, current = [], start
    for _ in range(count):
        nxt = schedule.next_after(current)
        assert nxt is not None
        out.append(nxt)
        current = nxt
    return out


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_five_and_six_field_cron_and_presets() -> None:
    assert fires(CronSchedule.parse("*/2 * * * * *"), utc(2026, 1, 1), 3) == [
        utc(2026, 1, 1, 0, 0, 2),
        utc(2026, 1, 1, 0, 0, 4),
        utc(2026, 1, 1, 0, 0, 6),
    ]
    assert CronSchedule.parse("0 2 * * *").next_after(utc(2026, 1, 1, 2)) == utc(2026, 1, 2, 2)
    assert CronSchedule.parse("@daily").next_after(utc(2026, 1, 1, 5)) == utc(2026, 1, 2)
    assert CronSchedule.parse("@hourly").next_after(utc(2026, 1, 1, 5, 1)) == utc(2026, 1, 1, 6)


@pytest.mark.parametrize(
    ("field", "weekdays"),
    [
        ("0", {6}),  # cron 0 = Sunday (APScheduler's 0 is Monday: translated)
        ("7", {6}),
        ("1-5", {0, 1, 2, 3, 4}),
        ("sun", {6}),
        ("fri-sun", {4, 5, 6}),
        ("5-7", {4, 5, 6}),
        ("*/2", {6, 1, 3, 5}),  # Sun, Tue, Thu, Sat
        ("mon,wed", {0, 2}),
    ],
)
def test_day_of_week_follows_cron_numbering(field: str, weekdays: set[int]) -> None:
    schedule = CronSchedule.parse(f"0 0 * * {field}")
    seen = {f.weekday() for f in fires(schedule, utc(2026, 1, 1), 14)}
    assert seen == weekdays


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("not a cron", "has 3 fields"),
        ("61 * * * *", "higher than the maximum value"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 1 * mon", "restricts both the day of month and the day of week"),
        ("0 0 * * 9", "day of week '9'"),
        ("", "the schedule is empty"),
    ],
)
def test_invalid_cron_is_one_clear_line(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message) as info:
        CronSchedule.parse(expression)
    assert "\n" not in str(info.value)


def test_unknown_timezone() -> None:
    with pytest.raises(ScheduleError, match="unknown timezone 'Mars/Olympus'; use an IANA name"):
        CronSchedule.parse("0 2 * * *", "Mars/Olympus")


@pytest.mark.parametrize(
    ("zone", "start", "days"),
    [
        ("Europe/Paris", utc(2026, 3, 27), ("2026-03-28", "2026-03-29", "2026-03-30")),
        ("Europe/Paris", utc(2026, 10, 23), ("2026-10-24", "2026-10-25", "2026-10-26")),
        ("America/New_York", utc(2026, 3, 6), ("2026-03-07", "2026-03-08", "2026-03-09")),
        ("America/New_York", utc(2026, 10, 30), ("2026-10-31", "2026-11-01", "2026-11-02")),
    ],
)
def test_a_daily_run_is_neither_skipped_nor_doubled_across_dst(
    zone: str, start: datetime, days: tuple[str, ...]
) -> None:
    # 02:30 does not exist on spring-forward day and exists twice on fall-back day
    schedule = CronSchedule.parse("30 2 * * *", zone)
    found = fires(schedule, start, 4)
    local_days = [f.astimezone(ZoneInfo(zone)).date().isoformat() for f in found]
    assert len(set(local_days)) == 4 and local_days[1:4] == list(days)


def test_the_dst_rule_in_paris() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Paris")
    spring = schedule.next_after(utc(2026, 3, 28, 12))
    # skipped 02:30 fires once, moved forward by the one-hour gap: 03:30 CEST
    assert spring == utc(2026, 3, 29, 1, 30)
    assert spring.astimezone(PARIS).strftime("%H:%M %Z") == "03:30 CEST"
    fall = schedule.next_after(utc(2026, 10, 24, 12))
    # repeated 02:30 fires once, at its first occurrence (still summer time)
    assert fall == utc(2026, 10, 25, 0, 30)
    assert fall.astimezone(PARIS).strftime("%H:%M %Z") == "02:30 CEST"
    assert schedule.next_after(fall) == utc(2026, 10, 26, 1, 30)


def test_sub_hourly_schedules_stay_strictly_increasing_through_transitions() -> None:
    schedule = CronSchedule.parse("*/30 * * * *", "Europe/Paris")
    for start in (utc(2026, 3, 28, 22), utc(2026, 10, 24, 22)):
        found = fires(schedule, start, 12)
        assert all(b > a for a, b in itertools.pairwise(found))
        walls = [f.astimezone(PARIS).replace(tzinfo=None) for f in found]
        assert len(set(walls)) == len(walls)  # no wall time fires twice


def test_a_search_from_just_after_a_jump_finds_the_moved_fire_time() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Paris")
    # 03:15 CEST on spring-forward day: the skipped 02:30 fires at 03:30 CEST, still ahead
    assert schedule.next_after(utc(2026, 3, 29, 1, 15)) == utc(2026, 3, 29, 1, 30)


def test_last_at_or_before() -> None:
    schedule = CronSchedule.parse("0 2 * * *")
    assert schedule.last_at_or_before(utc(2026, 5, 3, 2)) == utc(2026, 5, 3, 2)
    assert schedule.last_at_or_before(utc(2026, 5, 3, 1, 59)) == utc(2026, 5, 2, 2)
    yearly = CronSchedule.parse("0 0 1 1 *")
    assert yearly.last_at_or_before(utc(2026, 6, 1)) == utc(2026, 1, 1)


def test_intervals_are_contiguous_and_due_at_their_end() -> None:
    table = Timetable(CronSchedule.parse("0 2 * * *", "Europe/Paris"))
    found = list(table.intervals(utc(2026, 3, 27), utc(2026, 3, 30, 12)))
    assert [i.logical_date.astimezone(PARIS).day for i in found] == [27, 28, 29, 30]
    assert all(a.end == b.logical_date for a, b in itertools.pairwise(found))
    lengths = [(i.end - i.logical_date) / timedelta(hours=1) for i in found]
    # 02:00 on the 29th is skipped and fires at 03:00 CEST, 24 hours after the 28th's;
    # from there to 02:00 on the 30th is 23 hours
    assert lengths == [24, 24, 23, 24]


@pytest.mark.parametrize(
    ("catchup", "start", "after", "expected"),
    [
        # a new definition: from the start date with catchup, else the latest complete
        (True, utc(2026, 1, 1), None, (utc(2026, 1, 1, 2), utc(2026, 1, 2, 2))),
        (False, utc(2026, 1, 1), None, (utc(2026, 1, 4, 2), utc(2026, 1, 5, 2))),
        (True, None, None, (utc(2026, 1, 4, 2), utc(2026, 1, 5, 2))),
        # a start date inside the latest period, or ahead, bounds the first interval
        (False, utc(2026, 1, 5), None, (utc(2026, 1, 5, 2), utc(2026, 1, 6, 2))),
        (True, utc(2026, 2, 1), None, (utc(2026, 2, 1, 2), utc(2026, 2, 2, 2))),
        (False, utc(2026, 2, 1), None, (utc(2026, 2, 1, 2), utc(2026, 2, 2, 2))),
        # after runs: from the end of the last one, on a fire time or not
        (True, None, utc(2026, 1, 2, 2), (utc(2026, 1, 2, 2), utc(2026, 1, 3, 2))),
        (True, None, utc(2026, 1, 2, 1), (utc(2026, 1, 2, 1), utc(2026, 1, 2, 2))),
        (True, utc(2026, 1, 1), utc(2026, 1, 2, 1), (utc(2026, 1, 2, 1), utc(2026, 1, 2, 2))),
        # ... without catchup the latest complete interval if it is later
        (False, None, utc(2026, 1, 2, 2), (utc(2026, 1, 4, 2), utc(2026, 1, 5, 2))),
        (False, None, utc(2026, 1, 5, 1), (utc(2026, 1, 5, 1), utc(2026, 1, 5, 2))),
        # ... and never before the start date
        (True, utc(2026, 1, 10), utc(2026, 1, 2, 2), (utc(2026, 1, 10, 2), utc(2026, 1, 11, 2))),
    ],
)
def test_first_interval(
    catchup: bool,
    start: datetime | None,
    after: datetime | None,
    expected: tuple[datetime, datetime],
) -> None:
    table = Timetable(CronSchedule.parse("0 2 * * *"), start_date=start)
    first = table.first_interval(utc(2026, 1, 5, 12), catchup, after=after)
    assert first is not None and (first.logical_date, first.end) == expected


def test_first_interval_past_the_end_date() -> None:
    table = Timetable(CronSchedule.parse("0 2 * * *"), end_date=utc(2026, 1, 3))
    assert table.first_interval(utc(2026, 1, 5, 12), True, after=utc(2026, 1, 4, 2)) is None


def test_latest_complete_and_end_date() -> None:
    table = Timetable(CronSchedule.parse("0 2 * * *"), end_date=utc(2026, 1, 10))
    latest = table.latest_complete(utc(2026, 1, 5, 12))
    assert latest is not None and (latest.logical_date, latest.end) == (
        utc(2026, 1, 4, 2),
        utc(2026, 1, 5, 2),
    )
    capped = table.latest_complete(utc(2026, 3, 1))
    assert capped is not None and capped.logical_date == utc(2026, 1, 9, 2)
    assert table.interval_at(utc(2026, 1, 10, 2)) is None
