"""The quickstart backfills three nights that have ended, whatever the time of day."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from hypermetric.cli.quickstart import last_nights
from hypermetric.examples.qa import qa_nightly
from hypermetric.scheduler.triggers import CronSchedule, Timetable

SPEC = qa_nightly.schedule
NIGHTLY = Timetable(CronSchedule.parse(SPEC.schedule or "", SPEC.timezone))


@pytest.mark.parametrize(
    ("now", "first", "last"),
    [
        # before 02:00 the night of the 29th is still running: its interval ends at 02:00
        (datetime(2026, 11, 30, 0, 8, tzinfo=UTC), date(2026, 11, 26), date(2026, 11, 28)),
        (datetime(2026, 11, 30, 2, 0, tzinfo=UTC), date(2026, 11, 27), date(2026, 11, 29)),
        (datetime(2026, 11, 30, 23, 59, tzinfo=UTC), date(2026, 11, 27), date(2026, 11, 29)),
    ],
)
def test_the_backfill_window_holds_three_ended_nights(
    now: datetime, first: date, last: date
) -> None:
    assert last_nights(NIGHTLY, now) == (first, last)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    ended = [i for i in NIGHTLY.intervals(start, now) if i.due_at <= now]
    assert len(ended) == 3, "a backfill of this window queues three runs"


def test_a_zone_ahead_of_utc_reads_the_nights_in_its_own_days() -> None:
    tokyo = Timetable(CronSchedule.parse("0 2 * * *", "Asia/Tokyo"))
    # 18:00 UTC on the 29th is 03:00 on the 30th in Tokyo: the night that began at 02:00
    # local on the 29th has just ended, though in UTC it is still the 29th
    now = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    assert last_nights(tokyo, now) == (date(2026, 11, 27), date(2026, 11, 29))
