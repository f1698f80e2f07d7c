"""The intervals a definition's runs cover, through edits, downtime, pauses and DST days.

Each scenario is a definition's life told as steps (register, edit, the scheduler running
from one time to another, pause, unpause) and the exact list of run intervals it leaves,
on SQLite and on PostgreSQL. Times without an offset are UTC. Where Airflow's intervals
differ, the scenario says how and the README says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.runs import list_runs
from hypermetric.catalog.scheduling import create_due_runs
from hypermetric.scheduler.clock import ManualClock
from hypermetric.scheduler.definitions import pause, plan_due, store_definition, unpause
from tests.scheduler.conftest import DEFAULTS

NAME = "nightly"


def at(text: str) -> datetime:
    """An ISO time; UTC unless it carries an offset."""
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class Step:
    """``define`` (register or edit, fields merged over the last ones), ``run`` (the
    scheduler up from ``when`` to ``until``, a pass at ``when`` and at every due time),
    ``pause`` or ``unpause``."""

    what: str
    when: str
    until: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


def define(when: str, **fields: Any) -> Step:
    return Step("define", when, fields=fields)


def run(when: str, until: str = "") -> Step:
    return Step("run", when, until or when)


def play(db: Database, steps: Sequence[Step]) -> list[tuple[datetime, datetime]]:
    """Play ``steps``; the data intervals of the definition's runs, in order."""
    clock = ManualClock(at(steps[0].when))
    fields: dict[str, Any] = {**DEFAULTS, "start_date": None}
    for step in steps:
        clock.set(at(step.when))
        if step.what == "define":
            fields.update({k: _value(k, v) for k, v in step.fields.items()})
            store_definition(db, NAME, fields, clock=clock)
        elif step.what == "pause":
            pause(db, NAME)
        elif step.what == "unpause":
            unpause(db, NAME, clock=clock)
        else:
            _run(db, clock.now(), at(step.until))
    runs = sorted(list_runs(db, evaluation=NAME, limit=None), key=lambda r: r.logical_date)
    assert all(r.logical_date == r.data_interval_start for r in runs)
    return [(r.data_interval_start, r.data_interval_end) for r in runs]  # type: ignore[misc]


def _value(key: str, value: Any) -> Any:
    return at(value) if key.endswith("_date") and value is not None else value


def _run(db: Database, now: datetime, until: datetime) -> None:
    create_due_runs(db, now, plan_due)
    ev = get_evaluation(db, NAME)
    while not ev.paused and ev.next_due_at is not None and now < ev.next_due_at <= until:
        now = ev.next_due_at
        create_due_runs(db, now, plan_due)
        ev = get_evaluation(db, NAME)


def spans(*pairs: tuple[str, str]) -> list[tuple[datetime, datetime]]:
    return [(at(a), at(b)) for a, b in pairs]


def daily(
    first_day: int, last_day: int, time: str, month: str = "2026-10"
) -> list[tuple[str, str]]:
    """Whole days of a UTC daily schedule at ``time``, starting on the given days."""
    return [
        (f"{month}-{d:02d} {time}", f"{month}-{d + 1:02d} {time}")
        for d in range(first_day, last_day + 1)
    ]


def hourly(day: str, first: int, last: int, minute: str = "00") -> list[tuple[str, str]]:
    """Hours of a UTC hourly schedule at ``minute``, starting at the given hours."""
    return [
        (f"{day} {h:02d}:{minute}", f"{day} {h + 1:02d}:{minute}") for h in range(first, last + 1)
    ]


EDITS = {
    # the case: the hourly runs continue from the last daily interval's end, as in
    # Airflow (the old behaviour made 23 hourly runs inside the day already covered)
    "daily 00:30 to hourly at :30": (
        [
            define(
                "2026-10-03 12:00", schedule="30 0 * * *", catchup=True, start_date="2026-10-01"
            ),
            run("2026-10-03 12:00"),
            define("2026-10-03 12:00", schedule="30 * * * *"),
            run("2026-10-03 12:00", "2026-10-03 13:30"),
        ],
        daily(1, 2, "00:30") + hourly("2026-10-03", 0, 12, "30"),
    ),
    # 00:30 is not an hourly fire time: the first hourly interval runs from there to 01:00
    # (Airflow starts it at 00:00, covering 00:00-00:30 twice)
    "daily 00:30 to hourly at :00": (
        [
            define(
                "2026-10-03 12:00", schedule="30 0 * * *", catchup=True, start_date="2026-10-01"
            ),
            run("2026-10-03 12:00"),
            define("2026-10-03 12:00", schedule="0 * * * *"),
            run("2026-10-03 12:00", "2026-10-03 13:00"),
        ],
        [
            *daily(1, 2, "00:30"),
            ("2026-10-03 00:30", "2026-10-03 01:00"),
            *hourly("2026-10-03", 1, 12),
        ],
    ),
    # the first daily interval runs from the last hourly one's end to midnight, and is
    # created at midnight as Airflow's is (Airflow's starts at the previous midnight)
    "hourly to daily": (
        [
            define("2026-10-03 09:30", schedule="0 * * * *", catchup=False),
            run("2026-10-03 09:30", "2026-10-03 10:05"),
            define("2026-10-03 10:05", schedule="0 0 * * *"),
            run("2026-10-03 10:05", "2026-10-05 00:00"),
        ],
        [
            *hourly("2026-10-03", 8, 9),
            ("2026-10-03 10:00", "2026-10-04 00:00"),
            *daily(4, 4, "00:00"),
        ],
    ),
    # 02:00 in Paris is 00:00 UTC before the autumn change and 01:00 UTC after it: the
    # interval spanning the change is 25 hours long
    "timezone UTC to Paris across the autumn change": (
        [
            define("2026-10-22 12:00", schedule="0 2 * * *", catchup=True, start_date="2026-10-20"),
            run("2026-10-22 12:00", "2026-10-24 12:00"),
            define("2026-10-24 12:00", timezone="Europe/Paris"),
            run("2026-10-24 12:00", "2026-10-27 12:00"),
        ],
        [
            *daily(20, 23, "02:00"),
            ("2026-10-24 02:00", "2026-10-25T02:00+02:00"),
            ("2026-10-25T02:00+02:00", "2026-10-26T02:00+01:00"),
            ("2026-10-26T02:00+01:00", "2026-10-27T02:00+01:00"),
        ],
    ),
    "timezone UTC to New York across the autumn change": (
        [
            define("2026-10-30 12:00", schedule="0 2 * * *", catchup=True, start_date="2026-10-28"),
            run("2026-10-30 12:00", "2026-10-31 12:00"),
            define("2026-10-31 12:00", timezone="America/New_York"),
            run("2026-10-31 12:00", "2026-11-02 12:00"),
        ],
        [
            *daily(28, 30, "02:00"),
            ("2026-10-31 02:00", "2026-10-31T02:00-04:00"),
            ("2026-10-31T02:00-04:00", "2026-11-01T02:00-05:00"),
            ("2026-11-01T02:00-05:00", "2026-11-02T02:00-05:00"),
        ],
    ),
    # the second case: every night since the last run is caught up after the edit
    "edit after downtime, start date, catchup": (
        [
            define("2026-10-01 00:00", schedule="0 2 * * *", catchup=True, start_date="2026-10-01"),
            run("2026-10-01 00:00", "2026-10-02 03:00"),
            define("2026-10-10 12:00", schedule="0 3 * * *"),
            run("2026-10-10 12:00"),
        ],
        [*daily(1, 1, "02:00"), ("2026-10-02 02:00", "2026-10-02 03:00"), *daily(2, 9, "03:00")],
    ),
    "edit after downtime, no start date, catchup": (
        [
            define("2026-10-01 03:00", schedule="0 2 * * *", catchup=True),
            run("2026-10-01 03:00", "2026-10-02 03:00"),
            define("2026-10-10 12:00", schedule="0 3 * * *"),
            run("2026-10-10 12:00"),
        ],
        [
            ("2026-09-30 02:00", "2026-10-01 02:00"),
            *daily(1, 1, "02:00"),
            ("2026-10-02 02:00", "2026-10-02 03:00"),
            *daily(2, 9, "03:00"),
        ],
    ),
    "edit after downtime, no catchup: the latest complete interval only": (
        [
            define("2026-10-01 03:00", schedule="0 2 * * *", catchup=False),
            run("2026-10-01 03:00", "2026-10-02 03:00"),
            define("2026-10-10 12:00", schedule="0 3 * * *"),
            run("2026-10-10 12:00"),
        ],
        [("2026-09-30 02:00", "2026-10-01 02:00"), *daily(1, 1, "02:00"), *daily(9, 9, "03:00")],
    ),
    "a start date moved past the last interval": (
        [
            define("2026-10-01 00:00", schedule="0 2 * * *", catchup=True, start_date="2026-10-01"),
            run("2026-10-01 00:00", "2026-10-03 03:00"),
            define("2026-10-03 03:00", start_date="2026-10-06"),
            run("2026-10-03 03:00", "2026-10-08 03:00"),
        ],
        daily(1, 2, "02:00") + daily(6, 7, "02:00"),
    ),
    # an earlier start date never reaches back before the last interval: backfill does
    "a start date moved back": (
        [
            define("2026-10-05 00:00", schedule="0 2 * * *", catchup=True, start_date="2026-10-05"),
            run("2026-10-05 00:00", "2026-10-07 03:00"),
            define("2026-10-07 03:00", start_date="2026-10-01"),
            run("2026-10-07 03:00", "2026-10-08 03:00"),
        ],
        daily(5, 7, "02:00"),
    ),
    # without catchup, a start date within the latest period bounds the first interval
    "registered after a start date inside the latest period": (
        [
            define(
                "2026-10-05 12:00", schedule="0 2 * * *", catchup=False, start_date="2026-10-05"
            ),
            run("2026-10-05 12:00", "2026-10-06 12:00"),
        ],
        daily(5, 5, "02:00"),
    ),
}


@pytest.mark.parametrize(("steps", "expected"), list(EDITS.values()), ids=list(EDITS))
def test_intervals_through_edits_and_downtime(
    db: Database, steps: list[Step], expected: list[tuple[str, str]]
) -> None:
    assert play(db, steps) == spans(*expected)


#: "30 2 * * *" in Paris: on 2026-03-29 02:30 does not exist (it fires at 03:30 CEST); on
#: 2026-10-25 it exists twice (it fires at the first). "30 2 * * *" in New York skips on
#: 2026-03-08; "30 1 * * *" repeats on 2026-11-01.
PARIS, NEW_YORK = "Europe/Paris", "America/New_York"
REGISTRATIONS = {
    "Paris spring, 01:00 before the gap": (
        PARIS, "30 2 * * *", "2026-03-29T01:00+01:00",
        [("2026-03-27T02:30+01:00", "2026-03-28T02:30+01:00"),
         ("2026-03-28T02:30+01:00", "2026-03-29T03:30+02:00")],
    ),
    "Paris spring, 03:45 after the moved fire time": (
        PARIS, "30 2 * * *", "2026-03-29T03:45+02:00",
        [("2026-03-28T02:30+01:00", "2026-03-29T03:30+02:00"),
         ("2026-03-29T03:30+02:00", "2026-03-30T02:30+02:00")],
    ),
    "Paris spring, noon": (
        PARIS, "30 2 * * *", "2026-03-29T12:00+02:00",
        [("2026-03-28T02:30+01:00", "2026-03-29T03:30+02:00"),
         ("2026-03-29T03:30+02:00", "2026-03-30T02:30+02:00")],
    ),
    "Paris autumn, 02:15 before the first 02:30": (
        PARIS, "30 2 * * *", "2026-10-25T02:15+02:00",
        [("2026-10-23T02:30+02:00", "2026-10-24T02:30+02:00"),
         ("2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00")],
    ),
    # Airflow ends this interval at the second 02:30 (+01:00)
    "Paris autumn, the second 02:45": (
        PARIS, "30 2 * * *", "2026-10-25T02:45+01:00",
        [("2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00"),
         ("2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00")],
    ),
    "Paris autumn, noon": (
        PARIS, "30 2 * * *", "2026-10-25T12:00+01:00",
        [("2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00"),
         ("2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00")],
    ),
    "New York spring, 01:59 before the gap": (
        NEW_YORK, "30 2 * * *", "2026-03-08T01:59-05:00",
        [("2026-03-06T02:30-05:00", "2026-03-07T02:30-05:00"),
         ("2026-03-07T02:30-05:00", "2026-03-08T03:30-04:00")],
    ),
    "New York spring, on the moved fire time": (
        NEW_YORK, "30 2 * * *", "2026-03-08T03:30-04:00",
        [("2026-03-07T02:30-05:00", "2026-03-08T03:30-04:00"),
         ("2026-03-08T03:30-04:00", "2026-03-09T02:30-04:00")],
    ),
    "New York spring, late evening": (
        NEW_YORK, "30 2 * * *", "2026-03-08T23:00-04:00",
        [("2026-03-07T02:30-05:00", "2026-03-08T03:30-04:00"),
         ("2026-03-08T03:30-04:00", "2026-03-09T02:30-04:00")],
    ),
    "New York autumn, 01:15 before the first 01:30": (
        NEW_YORK, "30 1 * * *", "2026-11-01T01:15-04:00",
        [("2026-10-30T01:30-04:00", "2026-10-31T01:30-04:00"),
         ("2026-10-31T01:30-04:00", "2026-11-01T01:30-04:00")],
    ),
    # Airflow ends this interval at the second 01:30 (-05:00)
    "New York autumn, the second 01:45": (
        NEW_YORK, "30 1 * * *", "2026-11-01T01:45-05:00",
        [("2026-10-31T01:30-04:00", "2026-11-01T01:30-04:00"),
         ("2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00")],
    ),
    "New York autumn, evening": (
        NEW_YORK, "30 1 * * *", "2026-11-01T18:00-05:00",
        [("2026-10-31T01:30-04:00", "2026-11-01T01:30-04:00"),
         ("2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00")],
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "cron", "now", "expected"), list(REGISTRATIONS.values()), ids=list(REGISTRATIONS)
)
def test_registered_without_catchup_the_latest_complete_interval_runs_at_once(
    db: Database, zone: str, cron: str, now: str, expected: list[tuple[str, str]]
) -> None:
    registered = define(now, schedule=cron, timezone=zone, catchup=False)
    assert play(db, [registered, run(now)]) == spans(expected[0])
    # and the next one a day later
    following = spans(*expected)[1][1].isoformat()
    assert play(db, [run(now, following)]) == spans(*expected)


def _paused_nightly(zone: str, month: str) -> list[Step]:
    """A nightly at 03:00 without catchup, run from the 3rd at noon to the 5th, paused."""
    return [
        define(f"{month}-03 12:00", schedule="0 3 * * *", timezone=zone, catchup=False),
        run(f"{month}-03 12:00", f"{month}-05 12:00"),
        Step("pause", f"{month}-05 12:00"),
    ]


#: 03:00 in Paris on 2026-10-25 exists once, after the clocks went back (02:00 UTC); 03:00
#: in New York on 2026-03-08 is the first time after the gap (07:00 UTC)
UNPAUSES = {
    "Paris autumn, 02:30 after the change": (
        PARIS, "2026-10", "2026-10-25T02:30+01:00",
        ("2026-10-23T03:00+02:00", "2026-10-24T03:00+02:00"),
    ),
    "Paris autumn, 03:30": (
        PARIS, "2026-10", "2026-10-25T03:30+01:00",
        ("2026-10-24T03:00+02:00", "2026-10-25T03:00+01:00"),
    ),
    "Paris autumn, evening": (
        PARIS, "2026-10", "2026-10-25T23:00+01:00",
        ("2026-10-24T03:00+02:00", "2026-10-25T03:00+01:00"),
    ),
    "New York spring, 01:30 before the gap": (
        NEW_YORK, "2026-03", "2026-03-08T01:30-05:00",
        ("2026-03-06T03:00-05:00", "2026-03-07T03:00-05:00"),
    ),
    "New York spring, on the fire time": (
        NEW_YORK, "2026-03", "2026-03-08T03:00-04:00",
        ("2026-03-07T03:00-05:00", "2026-03-08T03:00-04:00"),
    ),
    "New York spring, noon": (
        NEW_YORK, "2026-03", "2026-03-08T12:00-04:00",
        ("2026-03-07T03:00-05:00", "2026-03-08T03:00-04:00"),
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "month", "now", "latest"), list(UNPAUSES.values()), ids=list(UNPAUSES)
)
def test_unpaused_without_catchup_the_latest_complete_interval_runs_at_once(
    db: Database, zone: str, month: str, now: str, latest: tuple[str, str]
) -> None:
    before = play(db, _paused_nightly(zone, month))
    assert [a.astimezone(UTC).day for a, _ in before] == [2, 3, 4]  # registered on the 3rd
    assert play(db, [run(now)]) == before  # paused: nothing
    play(db, [Step("unpause", now)])
    # due at once, and `evals unpause` says so
    ev = get_evaluation(db, NAME)
    assert (ev.next_logical_date, ev.next_due_at) == spans(latest)[0]
    assert play(db, [run(now)]) == [*before, *spans(latest)]


def test_an_hourly_schedule_through_the_repeated_hour_runs_it_once(db: Database) -> None:
    # New York, 2026-11-01: 01:00-02:00 happens twice; the hour starting at the first
    # 01:00 runs to 02:00 EST, two hours (Airflow makes two one-hour intervals)
    steps = [
        define("2026-11-01T00:30-04:00", schedule="0 * * * *", timezone=NEW_YORK, catchup=False),
        run("2026-11-01T00:30-04:00", "2026-11-01T03:30-05:00"),
    ]
    assert play(db, steps) == spans(
        ("2026-10-31T23:00-04:00", "2026-11-01T00:00-04:00"),
        ("2026-11-01T00:00-04:00", "2026-11-01T01:00-04:00"),
        ("2026-11-01T01:00-04:00", "2026-11-01T02:00-05:00"),
        ("2026-11-01T02:00-05:00", "2026-11-01T03:00-05:00"),
    )
