"""Time travel through compaction and clean, pruning, orphans — on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from hypermetric.catalog.db import Database
from hypermetric.catalog.maintenance import Rewrite, commit_rewrite
from hypermetric.catalog.models import DatasetVersion, Shard, ShardRun
from hypermetric.catalog.packing import packing_candidates
from hypermetric.catalog.runs import start_run
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings
from hypermetric.errors import ConflictError, NotFoundError, StorageError
from hypermetric.query.compaction import compact
from hypermetric.query.connection import connect
from hypermetric.query.result import RunResult
from hypermetric.query.retention import clean
from tests.query.conftest import Runs, calls_table, ids, scores_table

Snapshot = tuple[list[tuple[Any, ...]], int]


def _snapshot(as_of: int | None = None) -> Snapshot:
    con = connect(as_of=as_of)
    rows = con.sql("SELECT run_id, example_id, metric, value FROM scores ORDER BY ALL").fetchall()
    return rows, con.sql("SELECT count(*) FROM calls").fetchall()[0][0]


def _versions(db: Database) -> list[tuple[int, bool, str]]:
    with db.session() as session:
        rows = session.execute(
            select(DatasetVersion.id, DatasetVersion.expired, DatasetVersion.kind).order_by(
                DatasetVersion.id
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def _shards(db: Database) -> list[Shard]:
    with db.session() as session:
        return list(session.scalars(select(Shard).order_by(Shard.id)))


def _metric_run(runs: Runs, n: int, shards: int, evaluation: str = "qa") -> int:
    def build(run_id: int) -> pa.Table:
        return pa.concat_tables(
            [
                scores_table(run_id, ids(n), [i % 3 / 2 for i in range(n)], evaluation=evaluation),
                scores_table(run_id, ids(n), [1.0] * n, metric="f1", evaluation=evaluation),
            ]
        )

    return runs.run(evaluation, build=build, shards=shards, with_calls=True)


def test_every_unexpired_version_reads_the_same_rows(
    runs: Runs, db: Database, settings: Settings
) -> None:
    first = _metric_run(runs, 30, shards=3)
    time.sleep(0.05)
    middle = utcnow()
    second = _metric_run(runs, 20, shards=2, evaluation="other")
    running = runs.start()
    runs.commit(running, 0, {"scores": scores_table(running, ids(5), [1.0] * 5)})
    before = {v: _snapshot(v) for v, _, _ in _versions(db)}
    current = _snapshot()

    reports = {r.dataset: r for r in compact(target_rows=1000)}
    # the two finished runs packed into one file that lists them; the running one untouched
    assert reports["scores"].shards_merged == 5 and reports["scores"].files_written == 1
    assert reports["calls"].shards_merged == 5 and reports["calls"].rows == 100
    live = [s for s in _shards(db) if s.removed_version_id is None]
    assert sorted(s.run_id or 0 for s in live if s.dataset == "scores") == [0, running]
    assert all("compact-" in s.path for s in live if s.run_id != running)
    packed = next(s for s in live if s.dataset == "scores" and s.run_id is None)
    with db.session() as session:
        listed = session.execute(
            select(ShardRun.run_id, ShardRun.rows).where(ShardRun.shard_id == packed.id)
        )
        assert sorted(tuple(r) for r in listed) == [(first, 60), (second, 40)]
    assert _snapshot() == current
    for version, rows in before.items():
        assert _snapshot(version) == rows, version
    assert RunResult(second).scores().aggregate("count(*)").fetchall() == [(40,)]

    # the running run keeps committing while and after compaction ran
    runs.commit(running, 1, {"scores": scores_table(running, ids(3, "late"), [0.0] * 3)})
    runs.finish(running)
    snapshots = {v: _snapshot(v) for v, _, _ in _versions(db)}

    report = clean(before=middle)
    expired = set(report.expired_versions)
    assert sorted(expired) == [1, 2, 3, 4, 5, 6]  # the first run: 3 units x 2 datasets
    assert report.deleted_shards == ()
    for version, expired_flag, _ in _versions(db):
        assert expired_flag == (version in expired)
        if version in expired:
            with pytest.raises(NotFoundError, match="expired by `hypermetric clean`"):
                connect(as_of=version)
        else:
            assert _snapshot(version) == snapshots[version], version

    later = utcnow() + timedelta(seconds=1)
    dry = clean(before=later, dry_run=True)
    assert _versions(db) == [(v, v in expired, k) for v, _, k in _versions(db)]  # unchanged
    report = clean(before=later)
    assert (dry.expired_versions, dry.deleted_shards) == (
        report.expired_versions,
        report.deleted_shards,
    )
    newest = max(v for v, _, _ in _versions(db))
    assert [v for v, flag, _ in _versions(db) if not flag] == [newest]
    assert len(report.deleted_shards) == 10
    for path in report.deleted_shards:
        assert not Path(runs.store.full_path(path)).exists()
    assert _snapshot(newest) == snapshots[newest] == _snapshot()
    assert all(Path(runs.store.full_path(s.path)).exists() for s in _shards(db))


def test_a_stale_compaction_plan_is_refused(runs: Runs, db: Database, settings: Settings) -> None:
    _metric_run(runs, 10, shards=2)
    plan = [c.shard for c in packing_candidates(db, "scores", max_rows=1000)]
    compact(target_rows=1000)
    with pytest.raises(ConflictError, match="run the command again"):
        commit_rewrite(db, {"scores": Rewrite(tuple(s.id for s in plan))}, kind="compact")


def test_running_runs_are_not_compacted(runs: Runs, db: Database) -> None:
    failed = runs.run(
        build=lambda rid: scores_table(rid, ids(4), [1.0] * 4), shards=2, state="failed"
    )
    running = runs.start()
    for unit in range(2):
        runs.commit(running, unit, {"scores": scores_table(running, ids(2, f"u{unit}"), [1.0] * 2)})
    reports = compact(target_rows=1000)
    merged = [(r.dataset, r.shards_merged) for r in reports]
    assert merged == [("scores", 2), ("calls", 0), ("examples", 0)]
    live = [s for s in _shards(db) if s.removed_version_id is None]
    assert sorted(s.run_id for s in live) == [failed, running, running]


def test_prune_runs_keeps_old_versions_readable(
    runs: Runs, db: Database, settings: Settings
) -> None:
    old = _metric_run(runs, 10, shards=2)
    time.sleep(0.05)
    cutoff = utcnow()
    kept = _metric_run(runs, 6, shards=2, evaluation="other")
    compact(target_rows=1000)
    compacted = max(v for v, _, _ in _versions(db))
    at_compaction = _snapshot(compacted)

    dry = clean(before=cutoff, prune_runs=True, dry_run=True)
    assert dry.pruned_runs == (old,) and dry.deleted_shards == ()
    assert _snapshot() == at_compaction

    report = clean(before=cutoff, prune_runs=True)
    assert report.pruned_runs == (old,)
    assert {r[0] for r in _snapshot()[0]} == {kept}
    assert _snapshot()[1] == 12
    assert _snapshot(compacted) == at_compaction  # still readable: created after the cutoff
    con = connect()
    assert con.sql("SELECT id FROM runs").fetchall() == [(kept,)]
    assert RunResult(kept).summary()[0].n == 6
    versions = _versions(db)
    assert versions[-1][2] == "prune"

    clean(before=utcnow() + timedelta(seconds=1))
    assert {r[0] for r in _snapshot()[0]} == {kept}
    files = {f.path for f in runs.store.files() if f.path.endswith(".parquet")}
    assert files == {s.path for s in _shards(db)}


def test_orphans_older_than_the_grace_period_are_deleted(
    runs: Runs, db: Database, settings: Settings
) -> None:
    run_id = _metric_run(runs, 5, shards=1)
    store = runs.store
    stale = store.write("scores", run_id, scores_table(run_id, ids(2), [0.0, 0.0]), "lost")
    young = store.write("calls", run_id, calls_table(run_id, ids(2)), "inflight")
    tmp = Path(store.full_path("_tmp/leftover.parquet"))
    tmp.write_bytes(b"half a file")
    keep_note = Path(store.full_path("README.txt"))
    keep_note.write_text("not ours")
    hours_ago = time.time() - 2 * 3600
    for path in (Path(store.full_path(stale.path)), tmp, keep_note):
        os.utime(path, (hours_ago, hours_ago))

    dry = clean(before=utcnow() - timedelta(days=1), dry_run=True)
    assert set(dry.orphans) == {stale.path, "_tmp/leftover.parquet"}
    assert Path(store.full_path(stale.path)).exists()

    report = clean(before=utcnow() - timedelta(days=1))
    assert set(report.orphans) == {stale.path, "_tmp/leftover.parquet"}
    assert report.expired_versions == ()
    assert not Path(store.full_path(stale.path)).exists() and not tmp.exists()
    assert Path(store.full_path(young.path)).exists() and keep_note.exists()
    assert _snapshot()[1] == 10


def test_compaction_of_one_evaluation(runs: Runs, db: Database) -> None:
    mine = _metric_run(runs, 10, shards=3, evaluation="mine")
    theirs = _metric_run(runs, 10, shards=3, evaluation="theirs")
    reports = compact(evaluation="mine", datasets=("scores",), target_rows=1000)
    assert [(r.dataset, r.shards_merged, r.files_written) for r in reports] == [("scores", 3, 1)]
    live = [s for s in _shards(db) if s.removed_version_id is None and s.dataset == "scores"]
    assert sorted(s.run_id for s in live) == [mine] + [theirs] * 3
    assert RunResult(mine).summary()[0].n == 10


def test_shards_that_cannot_merge_leave_everything_as_it_was(runs: Runs, db: Database) -> None:
    run_id = runs.start()
    good = scores_table(run_id, ids(3), [1.0, 0.0, 1.0])
    odd = good.set_column(7, "value", pa.array([[1.0], [2.0], [3.0]]))
    runs.commit(run_id, 0, {"scores": good})
    runs.commit(run_id, 1, {"scores": odd})
    runs.finish(run_id)
    before = {f.path for f in runs.store.files()}
    with pytest.raises(StorageError, match="cannot be merged"):
        compact(target_rows=1000)
    assert {f.path for f in runs.store.files()} == before
    assert [kind for _, _, kind in _versions(db)] == ["append", "append"]


def test_a_compacted_run_reprocessed_by_a_backfill_counts_once(runs: Runs, db: Database) -> None:
    from hypermetric.catalog.backfills import reprocess_run

    run_id = _metric_run(runs, 10, shards=3)
    other = _metric_run(runs, 4, shards=2, evaluation="other")
    compact(target_rows=1000)
    reprocess_run(db, run_id, utcnow(), version_label="v2", code_version=None, params={})
    assert {r[0] for r in _snapshot()[0]} == {other}
    start_run(db, run_id, owner="test", pid=os.getpid(), host="localhost")
    runs.commit(run_id, 0, {"scores": scores_table(run_id, ids(10), [0.25] * 10)})
    runs.finish(run_id)
    assert RunResult(run_id).summary()[0].n == 10
    assert RunResult(run_id).summary()[0].mean == 0.25
