"""Files that mix runs: after compaction packed several runs' rows into one file, a
reprocess, a retry or a prune of one run leaves every other run's rows intact and that
run's rows exactly once, and every older version reads as it did — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from hypermetric.catalog.attempts import queue_retry
from hypermetric.catalog.backfills import reprocess_run
from hypermetric.catalog.db import Database
from hypermetric.catalog.models import DatasetVersion, Shard, ShardRun
from hypermetric.catalog.packing import (
    PackCandidate,
    acquire_lease,
    lease_holder,
    release_lease,
)
from hypermetric.catalog.records import FailedExample, ShardRecord, UnitSummary
from hypermetric.catalog.runs import start_run
from hypermetric.catalog.shards import commit_units, live_shards
from hypermetric.catalog.types import utcnow
from hypermetric.query import connection
from hypermetric.query.compaction import compact, plan_groups
from hypermetric.query.connection import connect, sql
from hypermetric.query.retention import clean
from tests.query.conftest import NOW, Runs, ids, scores_table

Rows = list[tuple[Any, ...]]


def _rows(as_of: int | None = None, run_id: int | None = None) -> Rows:
    where = f"WHERE run_id = {run_id}" if run_id is not None else ""
    columns = "run_id, example_id, metric, value, run_attempt"
    query = f"SELECT {columns} FROM scores {where} ORDER BY ALL"
    return connect(as_of=as_of).sql(query).fetchall()


def _versions(db: Database) -> list[int]:
    with db.session() as session:
        return list(session.scalars(select(DatasetVersion.id).order_by(DatasetVersion.id)))


def _every_version(db: Database) -> dict[int, Rows]:
    return {v: _rows(v) for v in _versions(db)}


def _packed(db: Database) -> dict[int, dict[int, int]]:
    """Live packed scores files: their runs and rows."""
    with db.session() as session:
        stmt = (
            select(ShardRun.shard_id, ShardRun.run_id, ShardRun.rows)
            .join(Shard, Shard.id == ShardRun.shard_id)
            .where(Shard.dataset == "scores", Shard.removed_version_id.is_(None))
        )
        out: dict[int, dict[int, int]] = {}
        for shard_id, run_id, rows in session.execute(stmt):
            out.setdefault(shard_id, {})[run_id] = rows
        return out


def _run(runs: Runs, n: int, value: float, evaluation: str = "qa", shards: int = 3) -> int:
    def build(run_id: int) -> pa.Table:
        return pa.concat_tables(
            [
                scores_table(run_id, ids(n), [value] * n, evaluation=evaluation),
                scores_table(run_id, ids(n), [value / 2] * n, metric="f1", evaluation=evaluation),
            ]
        )

    return runs.run(evaluation, build=build, shards=shards)


def _three_packed(runs: Runs, db: Database) -> tuple[int, int, int]:
    a, b, c = _run(runs, 10, 1.0), _run(runs, 12, 0.5, "other"), _run(runs, 8, 0.25)
    (report, _, _) = compact(target_rows=1000)
    assert report.files_written == 1 and report.shards_merged == 9
    assert list(_packed(db).values()) == [{a: 20, b: 24, c: 16}]
    return a, b, c


def test_a_reprocessed_run_packed_with_others_counts_once(runs: Runs, db: Database) -> None:
    a, b, c = _three_packed(runs, db)
    others = {r: _rows(run_id=r) for r in (a, c)}
    before = _every_version(db)

    for round_ in (1, 2):  # reprocessed twice: the second retracts the first's rows too
        redo = reprocess_run(db, b, utcnow(), version_label="v2", code_version=None, params={})
        assert _rows(run_id=b) == []  # the packed rows left the dataset with the reprocess
        start_run(db, b, owner="t", pid=os.getpid(), host="h")
        value = 0.1 * round_
        runs.commit(b, 0, {"scores": scores_table(b, ids(12), [value] * 12, evaluation="other")})
        runs.finish(b)
        rows = _rows(run_id=b)
        assert [(r[1], r[3], r[4]) for r in rows] == [(e, value, redo.attempt + 1) for e in ids(12)]
        assert {r: _rows(run_id=r) for r in (a, c)} == others
        for version, expected in before.items():
            assert _rows(version) == expected, version
        before = _every_version(db)
        compact(target_rows=1000)  # packs b's new shard with the packed file (b's old rows)
        assert _rows(run_id=b) == rows and {r: _rows(run_id=r) for r in (a, c)} == others
        assert _every_version(db) | before == _every_version(db)  # older ones unchanged
        assert all(_rows(v) == before[v] for v in before)
        before = _every_version(db)
    assert sql("SELECT count(*) FROM scores").fetchall() == [(20 + 12 + 16,)]


def test_a_retried_run_packed_with_others_keeps_each_example_once(runs: Runs, db: Database) -> None:
    a = _run(runs, 6, 1.0)
    failing = runs.start("qa")
    table = scores_table(failing, ids(4), [1.0, None, 1.0, None], errors=[None, "boom", None, "x"])
    failed = (FailedExample(1, "ex000001", 1, 0, 1), FailedExample(3, "ex000003", 1, 0, 1))
    files = [runs.store.write("scores", failing, table, "u0")]
    unit = UnitSummary(0, examples=4, rows=4, calls=0, errors=2, failed=failed)
    commit_units(db, failing, files, [unit], attempt=1)
    runs.finish(failing, "failed")
    c = _run(runs, 5, 0.5)
    compact(target_rows=1000)
    assert [set(p) for p in _packed(db).values()] == [{a, failing, c}]
    others = {r: _rows(run_id=r) for r in (a, c)}
    before = _every_version(db)

    queue_retry(db, failing)
    assert start_run(db, failing, owner="t", pid=1, host="h").attempt == 2  # as launched
    redo = scores_table(failing, ["ex000001", "ex000003"], [0.75, 0.5])
    redo = redo.set_column(9, "run_attempt", pa.array([2, 2], pa.int32()))
    files = [runs.store.write("scores", failing, redo, "u0-retry")]
    commit_units(db, failing, files, [UnitSummary(0, 2, 2, 0, 0)], attempt=2)
    runs.finish(failing)

    expected = [
        (failing, "ex000000", "exact_match", 1.0, 1),
        (failing, "ex000001", "exact_match", 0.75, 2),
        (failing, "ex000002", "exact_match", 1.0, 1),
        (failing, "ex000003", "exact_match", 0.5, 2),
    ]
    assert _rows(run_id=failing) == expected
    assert {r: _rows(run_id=r) for r in (a, c)} == others
    assert all(_rows(v) == rows for v, rows in before.items())
    compact(target_rows=1000)  # the retry's rows packed beside the retracted ones
    assert _rows(run_id=failing) == expected
    assert {r: _rows(run_id=r) for r in (a, c)} == others
    assert all(_rows(v) == rows for v, rows in before.items())


def test_pruning_packed_runs_retracts_their_rows_and_frees_whole_files(
    runs: Runs, db: Database
) -> None:
    old = _run(runs, 10, 1.0)
    time.sleep(0.05)
    cutoff = utcnow()
    time.sleep(0.05)
    kept = _run(runs, 6, 0.5)
    compact(target_rows=1000)
    (packed_id,) = _packed(db)
    packed_at = max(_versions(db))
    at_packing = _rows(packed_at)

    report = clean(before=cutoff, prune_runs=True)
    assert report.pruned_runs == (old,) and report.deleted_shards == ()  # packing reads them
    assert {r[0] for r in _rows()} == {kept}
    assert len(_rows(run_id=kept)) == 12
    assert _rows(packed_at) == at_packing  # created after the cutoff: still readable
    assert packed_id in _packed(db)  # the packed file stays: it holds kept's rows

    second = pa.scalar(1, pa.duration("s")).as_py()
    report = clean(before=utcnow() + second, prune_runs=True)
    assert report.pruned_runs == (kept,)
    assert _rows() == [] and _packed(db) == {}  # no run left in it: the packed file went
    clean(before=utcnow() + second)  # and once no version reads it, so does its file
    stored = {f.path for f in runs.store.files() if f.path.endswith(".parquet")}
    assert stored == set()  # both runs pruned: no file of theirs is left


def test_a_query_on_one_run_lists_only_the_files_holding_its_rows(
    runs: Runs, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed = [_run(runs, 100, 1.0) for _ in range(4)]
    compact(target_rows=500)  # 200 rows a run: two packed files of two runs each
    files = _packed(db)
    assert sorted(sorted(runs_) for runs_ in files.values()) == [packed[:2], packed[2:]]
    alone = _run(runs, 5, 0.5)  # not packed: its own shards
    listed: list[list[str]] = []
    real = connection.live_shards

    def spy(db: Database, dataset: str, **kw: Any) -> Any:
        found = real(db, dataset, **kw)
        listed.append(sorted(s.path for s in found))
        return found

    monkeypatch.setattr(connection, "live_shards", spy)
    first = sql(f"SELECT count(*), sum(value) FROM scores WHERE run_id = {packed[0]}").fetchall()
    assert first == [(200, 150.0)]
    assert [len(paths) for paths in listed] == [1]  # the one file holding its rows
    listed.clear()
    assert sql(f"SELECT count(*) FROM scores WHERE run_id = {alone}").fetchall() == [(10,)]
    assert listed == [sorted(s.path for s in live_shards(db, "scores", run_ids=[alone]))]
    assert all("compacted" not in p for p in listed[0]) and len(listed[0]) == 3
    listed.clear()
    both = f"SELECT run_id, count(*) FROM scores WHERE run_id IN ({packed[1]}, {alone}) GROUP BY 1"
    assert sorted(sql(both).fetchall()) == [(packed[1], 200), (alone, 10)]
    assert len(listed[0]) == 4
    listed.clear()
    # anything the pruning cannot be sure of reads every file
    assert sql("SELECT count(*) FROM scores WHERE run_id = 1 OR true").fetchall() == [(810,)]
    assert len(listed[0]) == 2 + 3


def test_a_lease_has_one_holder_until_it_expires_or_is_given_up(db: Database) -> None:
    ttl = pa.scalar(60, pa.duration("s")).as_py()
    assert acquire_lease(db, "compaction", "a", NOW, ttl)
    assert not acquire_lease(db, "compaction", "b", NOW + ttl / 2, ttl)
    assert acquire_lease(db, "compaction", "a", NOW + ttl / 2, ttl)  # renewed
    assert lease_holder(db, "compaction", NOW + ttl) == "a"
    assert acquire_lease(db, "compaction", "b", NOW + 2 * ttl, ttl)  # a's expired: b's now
    release_lease(db, "compaction", "a")  # not a's any more: nothing happens
    assert lease_holder(db, "compaction", NOW + 2 * ttl) == "b"
    release_lease(db, "compaction", "b")
    assert lease_holder(db, "compaction", NOW + 2 * ttl) is None


def _candidate(shard_id: int, run_id: int | None, rows: int, size: int) -> PackCandidate:
    record = ShardRecord(shard_id, run_id, "scores", f"p{shard_id}", rows, size, "f", 1, None, None)
    return PackCandidate(record, "qa", {run_id or 0: rows})


def test_groups_are_cut_between_runs_by_rows_and_by_bytes() -> None:
    shards = [_candidate(i, 1 + i // 2, 50, 10) for i in range(8)]  # 4 runs, 2 shards each
    grouped = [[c.shard.run_id for c in g] for g in plan_groups(shards, 200)]
    assert grouped == [[1, 1, 2, 2], [3, 3, 4, 4]]
    assert [[c.shard.run_id for c in g] for g in plan_groups(shards, 150)] == [
        [1, 1],
        [2, 2],
        [3, 3],
        [4, 4],
    ]
    by_bytes = plan_groups(shards, 10_000, target_bytes=30)
    assert [[c.shard.run_id for c in g] for g in by_bytes] == [[1, 1], [2, 2], [3, 3], [4, 4]]
    big = [_candidate(i, 9, 50, 10) for i in range(5)]  # one run larger than a file
    assert [len(g) for g in plan_groups(big, 100)] == [2, 2]  # the fifth alone: left as is
