"""No two scheduled or backfill runs of a definition cover the same time, whoever tries.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from hypermetric.catalog.backfills import create_backfill_run
from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.records import EvaluationRecord
from hypermetric.catalog.runs import create_run, list_runs
from hypermetric.catalog.scheduling import DuePlan, PlannedRun, create_due_runs
from hypermetric.scheduler.backfill import backfill, plan_backfill
from hypermetric.scheduler.clock import ManualClock
from hypermetric.scheduler.definitions import plan_due, store_definition, trigger
from tests.scheduler.conftest import DEFAULTS, T0

Define = Callable[..., EvaluationRecord]
HOUR = timedelta(hours=1)


def oct_(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, minute, tzinfo=UTC)


def covering(db: Database, name: str) -> list[tuple[datetime, datetime]]:
    """The intervals of the scheduled and backfill runs of ``name``, by start."""
    runs = [r for r in list_runs(db, evaluation=name, limit=None) if r.run_type != "manual"]
    return sorted((r.data_interval_start, r.data_interval_end) for r in runs)  # type: ignore[misc]


def assert_disjoint(spans: list[tuple[datetime, datetime]]) -> None:
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"{end} is after {start}: two runs cover the same time"


@pytest.fixture
def covered(db: Database, define: Define) -> EvaluationRecord:
    """A nightly with a scheduled run for Oct 1, a backfill run for Oct 2 and a manual run
    whose data interval is Oct 3; due now."""
    ev = define("nightly", schedule="0 2 * * *", catchup=False)
    for kind, day in (("scheduled", 1), ("backfill", 2)):
        window = (oct_(day, 2), oct_(day + 1, 2))
        create_run(db, ev.id, run_type=kind, logical_date=window[0], data_interval=window)
    window = (oct_(3, 2), oct_(4, 2))
    create_run(db, ev.id, run_type="manual", logical_date=T0, data_interval=window)
    return ev


def planner_of(*windows: tuple[datetime, datetime]) -> Callable[..., DuePlan]:
    """A planner that plans these intervals, whatever the schedule says."""
    runs = tuple(PlannedRun(start, (start, end)) for start, end in windows)
    return lambda ev, now: DuePlan(runs, T0 + HOUR, T0 + 2 * HOUR)


@pytest.mark.parametrize(
    ("windows", "kept"),
    [
        # starting inside the Oct 1 run (found only by looking one run back)
        ([(oct_(1, 14), oct_(2, 2)), (oct_(3, 2), oct_(4, 2))], [(oct_(3, 2), oct_(4, 2))]),
        # across both runs, up to the manual run's interval
        (
            [
                (oct_(1, 14), oct_(2, 14)),
                (oct_(2, 14), oct_(3, 2)),
                (oct_(3, 2), oct_(4, 2)),
            ],
            [(oct_(3, 2), oct_(4, 2))],
        ),
        # ending inside the Oct 1 run; the same interval as the Oct 2 run
        (
            [(oct_(1), oct_(1, 2)), (oct_(1, 2), oct_(1, 3)), (oct_(2, 2), oct_(3, 2))],
            [(oct_(1), oct_(1, 2))],
        ),
        # one interval over both runs
        ([(oct_(1), oct_(4))], []),
    ],
    ids=["starting-inside", "across-both", "ending-inside-and-equal", "spanning"],
)
def test_the_scheduler_creates_no_run_overlapping_a_covered_interval(
    db: Database,
    covered: EvaluationRecord,
    caplog: pytest.LogCaptureFixture,
    windows: list[tuple[datetime, datetime]],
    kept: list[tuple[datetime, datetime]],
) -> None:
    before = covering(db, "nightly")
    with caplog.at_level(logging.WARNING, "hypermetric.catalog.scheduling"):
        created = create_due_runs(db, T0, planner_of(*windows))
    assert [(r.data_interval_start, r.data_interval_end) for r in created] == kept
    assert covering(db, "nightly") == sorted(before + kept)
    assert_disjoint(covering(db, "nightly"))
    skipped = [m for m in caplog.messages if "no run for" in m]
    assert len(skipped) == len(windows) - len(kept)
    assert all(" covers 2026-10-0" in m for m in skipped)
    # the definition advanced all the same: the skipped intervals are not tried again
    assert get_evaluation(db, "nightly").next_due_at == T0 + 2 * HOUR


def test_a_manual_run_does_not_cover_the_schedule(
    db: Database, clock: ManualClock, define: Define
) -> None:
    define("nightly", schedule="0 2 * * *", catchup=False)
    manual = trigger(db, "nightly", clock=clock)
    latest = (T0.replace(hour=2) - timedelta(days=1), T0.replace(hour=2))
    assert (manual.data_interval_start, manual.data_interval_end) == latest
    created = create_due_runs(db, T0, plan_due)
    assert [(r.data_interval_start, r.data_interval_end) for r in created] == [latest]


def test_a_backfill_run_overlapping_a_covered_interval_is_refused(
    db: Database, covered: EvaluationRecord
) -> None:
    def attempt(start: datetime, end: datetime) -> bool:
        run = create_backfill_run(
            db,
            covered.id,
            logical_date=start,
            data_interval=(start, end),
            version_label=None,
            code_version=None,
            params={},
        )
        return run is not None

    assert not attempt(oct_(1, 14), oct_(2, 14))
    assert not attempt(oct_(2, 2), oct_(2, 3))
    assert attempt(oct_(3, 2), oct_(4, 2))  # only the manual run has this interval
    assert attempt(oct_(1), oct_(1, 2))
    assert_disjoint(covering(db, "nightly"))


def test_backfill_after_a_schedule_change_skips_overlapping_intervals(
    db: Database, clock: ManualClock
) -> None:
    fields = {**DEFAULTS, "schedule": "30 0 * * *", "catchup": False}
    store_definition(db, "nightly", fields, clock=clock)
    create_due_runs(db, T0, plan_due)  # Nov 1 00:30 .. Nov 2 00:30, at once
    (daily,) = list_runs(db, evaluation="nightly")
    store_definition(db, "nightly", {**fields, "schedule": "0 * * * *"}, clock=clock)

    plan = plan_backfill(db, "nightly", "2026-10-31", "2026-11-01", reprocess="all", clock=clock)
    assert (plan.count("create"), plan.count("skip"), plan.count("reprocess")) == (24, 24, 0)
    first_skip = next(a for a in plan.actions if a.action == "skip")
    assert first_skip.data_interval == (
        datetime(2026, 11, 1, tzinfo=UTC),
        T0.replace(day=1, hour=1),
    )
    assert (
        first_skip.reason == f"overlaps run {daily.id} (2026-11-01 00:30 .. 2026-11-02 00:30 UTC)"
    )
    assert first_skip.run_id == daily.id

    done = backfill(db, "nightly", "2026-10-31", "2026-11-01", clock=clock)
    assert len(done.run_ids) == 24
    spans = covering(db, "nightly")
    assert spans[0] == (oct_(31), oct_(31, 1)) and spans[-1] == (
        daily.data_interval_start,
        daily.data_interval_end,
    )
    assert_disjoint(spans)
    assert backfill(db, "nightly", "2026-10-31", "2026-11-01", clock=clock).run_ids == ()
