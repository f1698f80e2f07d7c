"""Fenced attempts, the retry ledger and retractions, in the catalog (no Ray): every write an
attempt makes is refused once the run moved on, a retry commits each failed example once
more and retracts its old rows, and retractions live between versions like shards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hypermetric.catalog.attempts import (
    RunNotRunning,
    finish_attempt,
    heartbeat,
    list_attempts,
    queue_retry,
    update_attempt,
)
from hypermetric.catalog.backfills import reprocess_run
from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.ledger import plan_units
from hypermetric.catalog.maintenance import Rewrite, commit_rewrite, forget_retractions
from hypermetric.catalog.models import DatasetVersion
from hypermetric.catalog.records import FailedExample, ShardFile, UnitSummary
from hypermetric.catalog.runs import cancel_run, create_run, get_run, start_run, update_run
from hypermetric.catalog.shards import (
    UnitsAlreadyCommitted,
    commit_units,
    latest_version_id,
    ledger_totals,
    live_retractions,
    live_shards,
)
from hypermetric.catalog.supervision import recover_lost, requeue_for_retry
from hypermetric.catalog.types import utcnow
from hypermetric.errors import ConflictError, SupersededError
from hypermetric.scheduler.options import retry_delay

DAY = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
_paths = iter(range(1_000_000))


def _run(db: Database, retries: int = 0) -> int:
    ev = upsert_evaluation(db, "qa", retries=retries, retry_delay_s=0.0)
    return create_run(db, ev.id, run_type="manual", logical_date=DAY).id


def _start(db: Database, run_id: int, mode: str = "resume") -> int:
    return start_run(db, run_id, owner="t", pid=1, host="h", mode=mode).attempt


def _files(rows: int = 10, size: int = 100) -> list[ShardFile]:
    n = next(_paths)
    return [
        ShardFile(
            dataset=d, path=f"/s/{d}-{n}.parquet", rows=rows, bytes=size, schema_fingerprint="f"
        )
        for d in ("scores", "calls")
    ]


def test_a_superseded_attempt_can_write_nothing(db: Database) -> None:
    run_id = _run(db)
    assert _start(db, run_id) == 1
    assert _start(db, run_id, mode="force") == 2  # taken over (runs resume --force)
    for write in (
        lambda: heartbeat(db, run_id, 1),
        lambda: update_attempt(db, run_id, 1, examples_total=5),
        lambda: commit_units(db, run_id, _files(), [UnitSummary(0, 5, 10, 10, 0)], attempt=1),
        lambda: finish_attempt(db, run_id, 1, "success"),
    ):
        with pytest.raises(SupersededError, match="attempt 1 was superseded by attempt 2"):
            write()
    assert live_shards(db, "scores") == [] and get_run(db, run_id).examples_total is None
    heartbeat(db, run_id, 2)
    commit_units(db, run_id, _files(), [UnitSummary(0, 5, 10, 10, 0)], attempt=2)
    finish_attempt(db, run_id, 2, "success")
    assert [(a.attempt, a.kind, a.state, a.reason) for a in list_attempts(db, run_id)] == [
        (1, "start", "superseded", "taken over by attempt 2"),
        (2, "takeover", "success", None),
    ]


def test_an_attempt_found_lost_or_canceled_is_refused(db: Database) -> None:
    run_id = _run(db)
    _start(db, run_id)
    now = utcnow()
    lost = recover_lost(
        db, run_id, now, seen_before=now + timedelta(days=1), max_attempts=3, reason="gone"
    )
    assert lost == "queued"
    with pytest.raises(SupersededError, match="the run was queued again"):
        heartbeat(db, run_id, 1)
    assert _start(db, run_id) == 2
    cancel_run(db, run_id)
    with pytest.raises(RunNotRunning, match="canceled"):
        heartbeat(db, run_id, 2)
    assert [(a.kind, a.state) for a in list_attempts(db, run_id)] == [
        ("start", "lost"),
        ("resume", "canceled"),
    ]


def test_a_failed_run_is_retried_not_resumed_and_the_budget_counts_rounds(db: Database) -> None:
    run_id = _run(db, retries=1)
    _start(db, run_id)
    finish_attempt(db, run_id, 1, "failed", "API down")
    with pytest.raises(ConflictError, match=f"runs retry {run_id}"):
        _start(db, run_id)
    queued = requeue_for_retry(db, run_id, utcnow(), retry_delay)
    assert queued is not None and (queued.state, queued.redo_from) == ("queued", 2)
    assert _start(db, run_id) == 2
    finish_attempt(db, run_id, 2, "failed", "API down")
    assert requeue_for_retry(db, run_id, utcnow(), retry_delay) is None  # one retry, spent
    # a retry by hand starts a new round: the scheduler's retries count again from it
    again = queue_retry(db, run_id)
    assert (again.state, again.attempt_base, again.redo_from) == ("queued", 2, 3)
    assert _start(db, run_id) == 3
    finish_attempt(db, run_id, 3, "failed", "still down")
    assert requeue_for_retry(db, run_id, utcnow(), retry_delay) is not None
    assert [a.kind for a in list_attempts(db, run_id)] == ["start", "retry", "retry"]
    with pytest.raises(ConflictError, match="only a failed or canceled run is retried"):
        queue_retry(db, run_id)  # queued


def _failed_unit() -> UnitSummary:
    failed = (FailedExample(1, "b", rows=2, calls=2, errors=2), FailedExample(3, "d", 2, 2, 2))
    return UnitSummary(0, examples=4, rows=8, calls=8, errors=4, failed_examples=2, failed=failed)


def test_a_retry_commits_each_failed_example_once_and_retracts_its_rows(db: Database) -> None:
    run_id = _run(db)
    _start(db, run_id)
    commit_units(db, run_id, _files(8), [_failed_unit()], attempt=1)
    finish_attempt(db, run_id, 1, "failed", "2 of 4 examples had errors")
    before = latest_version_id(db)
    assert plan_units(db, run_id).redo == {}  # only a retry drives failed examples again
    assert _start(db, run_id, mode="retry") == 2
    plan = plan_units(db, run_id)
    assert plan.done == frozenset() and [f.example_id for f in plan.redo[0]] == ["b", "d"]
    # the two examples again: one is fixed, one still fails (and is counted again)
    redo = UnitSummary(
        0, examples=2, rows=4, calls=4, errors=1, failed=(FailedExample(3, "d", 2, 2, 1),)
    )
    commit_units(db, run_id, _files(4), [redo], attempt=2)
    with pytest.raises(UnitsAlreadyCommitted):
        commit_units(db, run_id, _files(4), [redo], attempt=2)
    totals = ledger_totals(db, run_id)
    assert (totals.examples, totals.rows, totals.errors, totals.failed_examples) == (4, 8, 1, 1)
    run = get_run(db, run_id)
    assert (run.rows_count, run.calls_count, run.errors_count, run.examples_done) == (8, 8, 1, 4)
    assert sorted(live_retractions(db, "scores")) == [(run_id, "b", 2), (run_id, "d", 2)]
    assert live_retractions(db, "calls", as_of=before) == []
    assert live_retractions(db, "scores", run_ids=[run_id + 1]) == []
    assert plan_units(db, run_id).done == {0}  # a resume of this round does not redo it


def _retried(db: Database) -> int:
    """A run whose first attempt failed on two examples and whose retry fixed them."""
    run_id = _run(db)
    _start(db, run_id)
    commit_units(db, run_id, _files(8), [_failed_unit()], attempt=1)
    finish_attempt(db, run_id, 1, "failed", "errors")
    _start(db, run_id, mode="retry")
    commit_units(db, run_id, _files(4), [UnitSummary(0, 2, 4, 4, 0)], attempt=2)
    finish_attempt(db, run_id, 2, "success")
    return run_id


def test_retractions_leave_with_their_run_and_go_once_no_version_needs_them(
    db: Database,
) -> None:
    run_id = _retried(db)
    retried = latest_version_id(db)
    redo = reprocess_run(db, run_id, utcnow(), version_label=None, code_version=None, params={})
    # the attempt number goes on: attempt 2 can never write into the reprocessed run
    assert (redo.state, redo.attempt, redo.attempt_base, redo.redo_from) == ("queued", 2, 2, None)
    assert live_retractions(db, "scores") == []
    assert len(live_retractions(db, "scores", as_of=retried)) == 2  # time travel unchanged
    assert forget_retractions(db) == 0  # the version before the reprocess still reads them
    with db.session() as session:
        session.query(DatasetVersion).filter(DatasetVersion.id < latest_version_id(db)).update(
            {"expired": True}
        )
    assert forget_retractions(db) == 6  # two examples, three datasets (scores, calls, examples)


def test_a_pruned_run_takes_its_retractions_along(db: Database) -> None:
    run_id = _retried(db)
    shards = {d: tuple(s.id for s in live_shards(db, d)) for d in ("scores", "calls")}
    commit_rewrite(
        db, {d: Rewrite(ids) for d, ids in shards.items()}, kind="prune", delete_runs=[run_id]
    )
    assert live_retractions(db, "scores") == live_retractions(db, "calls") == []


def test_counters_hold_more_than_two_billion(db: Database) -> None:
    run_id = _run(db)
    _start(db, run_id)
    big = 3 * 2**30  # a compacted calls shard of LLM prompts, a run of billions of scores
    update_run(db, run_id, rows_count=big, calls_count=big, examples_done=big)
    commit_units(db, run_id, _files(rows=big, size=big), [UnitSummary(0, 5, 10, 10, 0)], attempt=1)
    (shard,) = live_shards(db, "calls")
    assert (shard.rows, shard.bytes) == (big, big)
    run = get_run(db, run_id)
    assert (run.rows_count, run.calls_count, run.examples_done) == (big + 10, big + 10, big + 5)
