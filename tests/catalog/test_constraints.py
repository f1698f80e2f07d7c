"""The database itself refuses duplicates: runs per logical date, units per run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import get_evaluation, upsert_evaluation
from hypermetric.catalog.models import Run, UnitCommit
from hypermetric.catalog.records import ShardFile, UnitSummary
from hypermetric.catalog.runs import create_run, get_run, list_runs, start_run
from hypermetric.catalog.shards import (
    UnitsAlreadyCommitted,
    commit_units,
    committed_unit_ids,
    ledger_totals,
    live_shards,
)
from hypermetric.errors import ConflictError, NotFoundError

DAY = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def _running_run(db: Database) -> int:
    ev = upsert_evaluation(db, "qa")
    run = create_run(db, ev.id, run_type="manual", logical_date=DAY)
    start_run(db, run.id, owner="test", pid=1, host="h")
    return run.id


def _file(dataset: str, n: int) -> ShardFile:
    return ShardFile(
        dataset=dataset,
        path=f"/s/{dataset}-{n}.parquet",
        rows=10,
        bytes=100,
        schema_fingerprint="f",
    )


def test_second_run_for_the_same_logical_date_is_refused(db: Database) -> None:
    ev = upsert_evaluation(db, "qa")
    create_run(db, ev.id, run_type="scheduled", logical_date=DAY)
    with pytest.raises(ConflictError):
        create_run(db, ev.id, run_type="backfill", logical_date=DAY)
    # the database itself holds the line, not only our pre-check
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(Run(evaluation_id=ev.id, run_key="other", logical_date=DAY, run_type="manual"))
    assert len(list_runs(db)) == 1
    create_run(db, ev.id, run_type="scheduled", logical_date=DAY + timedelta(days=1))
    assert len(list_runs(db)) == 2


def test_same_run_key_is_refused(db: Database) -> None:
    ev = upsert_evaluation(db, "qa")
    create_run(db, ev.id, run_type="manual", logical_date=DAY, run_key="k")
    with pytest.raises(ConflictError):
        create_run(db, ev.id, run_type="manual", logical_date=DAY + timedelta(hours=1), run_key="k")


def test_a_unit_cannot_be_committed_to_two_shards(db: Database) -> None:
    run_id = _running_run(db)
    units = [UnitSummary(unit_id=i, examples=5, rows=5, calls=5, errors=0) for i in (0, 1)]
    commit_units(db, run_id, [_file("scores", 1), _file("calls", 1)], units, attempt=1)
    with pytest.raises(UnitsAlreadyCommitted) as info:
        commit_units(
            db,
            run_id,
            [_file("scores", 2)],
            [UnitSummary(1, 5, 5, 5, 0), UnitSummary(2, 5, 5, 5, 0)],
            attempt=1,
        )
    assert info.value.unit_ids == {1}
    # nothing of the refused flush was registered
    assert [s.path for s in live_shards(db, "scores")] == ["/s/scores-1.parquet"]
    assert committed_unit_ids(db, run_id) == {0, 1}
    # the primary key is the backstop under the pre-check
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(UnitCommit(run_id=run_id, unit_id=0, examples=1, rows=1, calls=1, errors=0))
    totals = ledger_totals(db, run_id)
    assert (totals.unit_id, totals.examples, totals.rows) == (2, 10, 10)
    assert get_run(db, run_id).rows_count == 10


def test_commit_to_a_run_that_is_not_running_is_refused(db: Database) -> None:
    ev = upsert_evaluation(db, "qa")
    run = create_run(db, ev.id, run_type="manual", logical_date=DAY)
    with pytest.raises(ConflictError, match="queued"):
        commit_units(db, run.id, [_file("scores", 1)], [UnitSummary(0, 1, 1, 1, 0)], attempt=0)
    assert live_shards(db, "scores") == []


def test_versions_follow_commits_and_time_travel(db: Database) -> None:
    run_id = _running_run(db)
    first = commit_units(db, run_id, [_file("scores", 1)], [UnitSummary(0, 1, 10, 1, 0)], attempt=1)
    second = commit_units(
        db, run_id, [_file("scores", 2)], [UnitSummary(1, 1, 10, 1, 0)], attempt=1
    )
    assert first.version_ids[0] < second.version_ids[0]
    assert len(live_shards(db, "scores", as_of=first.version_ids[0])) == 1
    assert len(live_shards(db, "scores")) == 2


def test_times_are_timezone_aware_utc(db: Database) -> None:
    ev = upsert_evaluation(db, "qa", start_date=datetime(2026, 1, 1, tzinfo=UTC))
    run = create_run(db, ev.id, run_type="manual", logical_date=DAY)
    assert get_evaluation(db, "qa").start_date == datetime(2026, 1, 1, tzinfo=UTC)
    assert run.logical_date.tzinfo is not None and get_run(db, run.id).queued_at.tzinfo is not None
    with db.session() as session:
        stored = session.scalar(select(Run.logical_date))
    assert stored == DAY and stored.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive"):
        upsert_evaluation(db, "qa", start_date=datetime(2026, 1, 1))


def test_unknown_things_are_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError, match="evals list"):
        get_evaluation(db, "missing")
    with pytest.raises(NotFoundError, match="runs list"):
        get_run(db, 404)


def test_registering_a_path_twice_says_so(db: Database) -> None:
    run_id = _running_run(db)
    commit_units(db, run_id, [_file("scores", 1)], [UnitSummary(0, 1, 1, 1, 0)], attempt=1)
    with pytest.raises(ConflictError, match="shard path is registered already") as info:
        commit_units(db, run_id, [_file("scores", 1)], [UnitSummary(1, 1, 1, 1, 0)], attempt=1)
    assert not isinstance(info.value, UnitsAlreadyCommitted)
    assert committed_unit_ids(db, run_id) == {0}


def test_two_first_writers_of_a_new_evaluation_share_one_row(db: Database) -> None:
    """Two processes starting the first runs of a new evaluation at once: the one whose
    insert loses takes the winner's row (before, it failed on the unique name)."""
    if db.url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers: the second cannot insert before the first commits")
    import threading
    import time

    from hypermetric.catalog.evaluations import _lock_or_create

    made = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with db.session() as session:
                _lock_or_create(db, session, "new-eval")
                made.set()
                release.wait(10)
        except BaseException as exc:  # the test reads it
            errors.append(exc)

    writer = threading.Thread(target=first)
    writer.start()
    assert made.wait(10)
    # the second finds no committed row, inserts and waits on the first's uncommitted one
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    second = upsert_evaluation(db, "new-eval", description="from the second")
    waited = time.monotonic() - started
    writer.join(10)
    assert not errors
    assert waited > 0.5, "the second writer did not meet the first's insert"
    assert get_evaluation(db, "new-eval").id == second.id
    assert second.description == "from the second"
