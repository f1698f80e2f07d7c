"""Backfill: every interval of a range once, idempotently; reprocessing on request."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from hypermetric.catalog.db import Database
from hypermetric.catalog.records import EvaluationRecord, ShardFile, UnitSummary
from hypermetric.catalog.runs import finish_run, get_run, list_runs, start_run
from hypermetric.catalog.shards import commit_units, committed_unit_ids, live_shards
from hypermetric.cli import cli
from hypermetric.errors import ScheduleError
from hypermetric.scheduler.backfill import backfill, plan_backfill
from hypermetric.scheduler.clock import ManualClock
from tests.scheduler.helpers import logical_dates

Define = Callable[..., EvaluationRecord]
ROOT = Path(__file__).resolve().parents[2]


def day(d: int) -> datetime:
    return datetime(2026, 10, d, 2, tzinfo=UTC)


@pytest.fixture
def nightly(define: Define) -> EvaluationRecord:
    """A nightly definition at 02:00 UTC; the clock says 2026-11-02 09:00."""
    return define("nightly", schedule="0 2 * * *", catchup=False)


def finish(db: Database, run_id: int, state: str) -> None:
    start_run(db, run_id, owner="t", pid=1, host="h")
    finish_run(db, run_id, state, None if state == "success" else "boom")


def test_backfill_twice_creates_nothing_the_second_time(
    db: Database, clock: ManualClock, nightly: EvaluationRecord
) -> None:
    first = backfill(db, "nightly", "2026-10-01", "2026-10-05", clock=clock)
    assert len(first.run_ids) == 5 and first.plan.count("create") == 5
    assert logical_dates(db, "nightly", "backfill") == [day(d) for d in range(1, 6)]
    run = get_run(db, first.run_ids[0])
    assert (run.data_interval_start, run.data_interval_end) == (day(1), day(2))
    assert run.params == {"k": 1} and run.run_type == "backfill"
    again = backfill(db, "nightly", "2026-10-01", "2026-10-05", clock=clock)
    assert again.run_ids == () and again.plan.count("skip") == 5
    assert len(list_runs(db, limit=None)) == 5


def test_reprocess_failed_reruns_only_failed_intervals(
    db: Database, clock: ManualClock, nightly: EvaluationRecord
) -> None:
    ids = backfill(db, "nightly", "2026-10-01", "2026-10-04", clock=clock).run_ids
    for run_id, state in zip(ids, ["success", "failed", "success", "canceled"], strict=True):
        finish(db, run_id, state)
    result = backfill(db, "nightly", "2026-10-01", "2026-10-04", reprocess="failed", clock=clock)
    assert result.run_ids == (ids[1], ids[3])
    # a reprocessed run keeps counting its attempts (an attempt from before can never write
    # again), and its retry budget starts over
    states = {r.id: (r.state, r.attempt, r.attempt_base) for r in list_runs(db, limit=None)}
    assert states == {
        ids[0]: ("success", 1, 0),
        ids[1]: ("queued", 1, 1),
        ids[2]: ("success", 1, 0),
        ids[3]: ("queued", 1, 1),
    }
    everything = backfill(db, "nightly", "2026-10-01", "2026-10-04", reprocess="all", clock=clock)
    assert everything.run_ids == (ids[0], ids[2])  # the queued ones are left alone


def test_reprocessing_retracts_the_old_scores(
    db: Database, clock: ManualClock, nightly: EvaluationRecord
) -> None:
    (run_id,) = backfill(db, "nightly", "2026-10-01", "2026-10-01", clock=clock).run_ids
    start_run(db, run_id, owner="t", pid=1, host="h")
    files = [
        ShardFile(dataset=d, path=f"/s/{d}.parquet", rows=4, bytes=9, schema_fingerprint="f")
        for d in ("scores", "calls")
    ]
    commit_units(
        db, run_id, files, [UnitSummary(0, examples=2, rows=4, calls=2, errors=0)], attempt=1
    )
    finish_run(db, run_id, "success")
    assert len(live_shards(db, "scores", run_ids=[run_id])) == 1
    backfill(db, "nightly", "2026-10-01", "2026-10-01", reprocess="all", clock=clock)
    run = get_run(db, run_id)
    assert (run.state, run.attempt, run.rows_count, run.shard_count) == ("queued", 1, 0, 0)
    assert live_shards(db, "scores", run_ids=[run_id]) == []
    assert committed_unit_ids(db, run_id) == set()
    before = live_shards(db, "scores", as_of=2, run_ids=[run_id])
    assert len(before) == 1  # still there in the versions before the retraction


def test_dry_run_changes_nothing_and_future_intervals_are_left_out(
    db: Database, clock: ManualClock, nightly: EvaluationRecord
) -> None:
    result = backfill(db, "nightly", "2026-10-30", "2026-12-31", dry_run=True, clock=clock)
    # 2026-10-30 .. 2026-11-01 are complete at 2026-11-02 09:00; Nov 2's is not due yet
    assert [a.logical_date for a in result.plan.actions] == [
        day(30),
        day(31),
        datetime(2026, 11, 1, 2, tzinfo=UTC),
    ]
    assert result.dry_run and result.run_ids == () and list_runs(db) == []


def test_dates_are_read_in_the_definitions_timezone(
    db: Database, clock: ManualClock, define: Define
) -> None:
    define("tokyo", schedule="0 2 * * *", timezone="Asia/Tokyo")
    plan = plan_backfill(db, "tokyo", "2026-10-01", "2026-10-02", clock=clock)
    assert [a.logical_date for a in plan.actions] == [
        datetime(2026, 9, 30, 17, tzinfo=UTC),
        datetime(2026, 10, 1, 17, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-10-05", "2026-10-01", "is before the start"),
        ("yesterday", "2026-10-01", "'yesterday' is not a date or datetime"),
    ],
)
def test_bad_ranges_are_refused(
    db: Database, clock: ManualClock, nightly: EvaluationRecord, start: str, end: str, message: str
) -> None:
    with pytest.raises(ScheduleError, match=message):
        backfill(db, "nightly", start, end, clock=clock)
    assert list_runs(db) == []


def test_an_unscheduled_evaluation_has_nothing_to_backfill(
    db: Database, clock: ManualClock, define: Define
) -> None:
    define("adhoc", schedule=None)
    with pytest.raises(ScheduleError, match="has no schedule"):
        backfill(db, "adhoc", "2026-10-01", "2026-10-02", clock=clock)


def test_max_active_runs_feeds_runs_as_others_finish(
    db: Database, clock: ManualClock, nightly: EvaluationRecord
) -> None:
    queued: list[int] = []
    finished: list[int] = []

    def on_queued(action: object, run_id: int) -> None:
        queued.append(run_id)
        if len(queued) > 2:  # the run queued two before this one must have finished
            assert queued[-3] in finished

    def finish_oldest(seconds: float) -> None:
        oldest = next(r for r in queued if r not in finished)
        finish(db, oldest, "success")
        finished.append(oldest)

    result = backfill(
        db,
        "nightly",
        "2026-10-01",
        "2026-10-06",
        max_active_runs=2,
        clock=clock,
        on_queued=on_queued,
        sleep=finish_oldest,
    )
    assert len(result.run_ids) == 6 and len(finished) == 4


def test_cli_and_script_backfill(db: Database, nightly: EvaluationRecord) -> None:
    runner = CliRunner()
    dry = runner.invoke(
        cli, ["backfill", "nightly", "--start", "2026-10-01", "--end", "2026-10-03", "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "dry run: 3 to create, 0 to reprocess, 0 skipped of 3 intervals" in dry.output
    done = runner.invoke(
        cli, ["backfill", "nightly", "--start", "2026-10-01", "--end", "2026-10-03"]
    )
    assert "queued 3 runs" in done.output
    bad = runner.invoke(
        cli, ["backfill", "nightly", "--start", "2026-10-03", "--end", "2026-10-01"]
    )
    assert bad.exit_code == 1 and bad.output.startswith("error: the end ")
    spec = importlib.util.spec_from_file_location("backfill_script", ROOT / "scripts/backfill.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["nightly", "--start", "2026-10-01", "--end", "2026-10-04"]) == 0
    assert len(logical_dates(db, "nightly")) == 4
    assert script.main(["nightly", "--start", "2026-10-04", "--end", "2026-10-01"]) == 1
