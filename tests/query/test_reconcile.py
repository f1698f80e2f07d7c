"""The views: exactly the committed shards, reconciled by column name, on both backends."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import func, select

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Shard
from hypermetric.catalog.records import UnitSummary
from hypermetric.catalog.shards import UnitsAlreadyCommitted, commit_units
from hypermetric.config import Settings
from hypermetric.errors import ConflictError, NotFoundError, QueryError
from hypermetric.query import connection
from hypermetric.query.connection import connect, sql
from hypermetric.storage.files import ShardStore, store_for
from hypermetric.storage.schemas import CALLS_SCHEMA, EXAMPLES_SCHEMA, SCORES_SCHEMA
from tests.query.conftest import Runs, ids, scores_table


def _columns(view: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in connect().sql(f"DESCRIBE {view}").fetchall()]


def test_views_exist_empty_on_a_fresh_home(settings: Settings, db: Database) -> None:
    con = connect()
    for view, schema in (
        ("scores", SCORES_SCHEMA),
        ("calls", CALLS_SCHEMA),
        ("examples", EXAMPLES_SCHEMA),
    ):
        assert [name for name, _ in _columns(view)] == schema.names
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall()[0] == (0,)
    assert dict(_columns("scores"))["value"] == "DOUBLE"
    assert dict(_columns("scores"))["created_at"] == "TIMESTAMP WITH TIME ZONE"
    for view in ("runs", "evaluations", "dataset_versions"):
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall()[0] == (0,)
    assert "evaluation" in [name for name, _ in _columns("runs")]
    assert dict(_columns("runs"))["logical_date"] == "TIMESTAMP WITH TIME ZONE"


def test_a_query_reads_only_the_views_it_names(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = runs.run(build=lambda rid: scores_table(rid, ids(3), [1.0, 0.0, 1.0]))
    read: list[str] = []
    real_table, real_shards = connection.metadata_table, connection.live_shards
    monkeypatch.setattr(
        connection, "metadata_table", lambda db, name: read.append(name) or real_table(db, name)
    )
    monkeypatch.setattr(
        connection,
        "live_shards",
        lambda db, dataset, **kw: read.append(dataset) or real_shards(db, dataset, **kw),
    )
    assert sql("SELECT sum(value) FROM scores").fetchall() == [(2.0,)]
    assert read == ["scores"]  # not the calls' shards, nor runs, evaluations, versions
    read.clear()
    joined = sql("SELECT r.state, count(*) FROM Scores s JOIN runs r ON s.run_id = r.id GROUP BY 1")
    assert joined.fetchall() == [("success", 3)] and sorted(read) == ["runs", "scores"]
    read.clear()
    # a query that names no view, or something else, gets every view; the metadata tables
    # are read from the DB only when a query scans them, once per connection
    tables = {r[0] for r in sql("SHOW TABLES").fetchall()}
    assert tables == {"scores", "calls", "examples", "runs", "evaluations", "dataset_versions"}
    assert sorted(read) == ["calls", "examples", "scores"]
    read.clear()
    con = connection.connect()
    assert read == ["scores", "calls", "examples"]
    assert con.sql("SELECT count(*) FROM runs").fetchall() == [(1,)]
    assert con.sql("SELECT max(id) FROM runs").fetchall() == [(run_id,)]
    assert read == ["scores", "calls", "examples", "runs"]
    assert sql(f"SELECT count(*) FROM scores WHERE run_id = {run_id}").fetchall() == [(3,)]


def test_a_hundred_shards_sum_to_the_registry(runs: Runs, db: Database) -> None:
    for r in range(4):
        runs.run(
            build=lambda rid, r=r: scores_table(rid, ids(25 * 7 + r), [0.5] * (175 + r)), shards=25
        )
    with db.session() as session:
        registered = session.scalar(select(func.sum(Shard.rows)).where(Shard.dataset == "scores"))
        shard_count = session.scalar(select(func.count()).select_from(Shard))
    assert shard_count == 100
    assert sql("SELECT count(*) FROM scores").fetchall()[0] == (registered,)
    assert registered == 4 * 175 + 6
    per_run = dict(sql("SELECT run_id, count(*) FROM scores GROUP BY ALL").fetchall())
    assert per_run == {1: 175, 2: 176, 3: 177, 4: 178}
    dupes = sql(
        "SELECT count(*) FROM (SELECT run_id, example_id FROM scores GROUP BY ALL "
        "HAVING count(*) > 1)"
    ).fetchall()[0]
    assert dupes == (0,)


def test_unregistered_and_twice_committed_files_never_show(
    runs: Runs, db: Database, settings: Settings
) -> None:
    run_id = runs.start()
    runs.commit(run_id, 0, {"scores": scores_table(run_id, ids(10), [1.0] * 10)})
    store = store_for(settings)
    # a flush written but never committed (the evaluator died before its commit)
    store.write("scores", run_id, scores_table(run_id, ids(10, "lost"), [0.0] * 10), "u9")
    # the same unit flushed again by a replacement evaluator: refused, file left unregistered
    again = store.write("scores", run_id, scores_table(run_id, ids(10), [1.0] * 10), "u0")
    unit = UnitSummary(unit_id=0, examples=10, rows=10, calls=0, errors=0)
    with pytest.raises(UnitsAlreadyCommitted):
        commit_units(db, run_id, [again], [unit], attempt=1)
    # the same file registered a second time under a new unit id: the path is unique
    first = runs.store.write("scores", run_id, scores_table(run_id, ids(5, "b"), [1.0] * 5), "u1")
    commit_units(db, run_id, [first], [dataclasses.replace(unit, unit_id=1, rows=5)], attempt=1)
    with pytest.raises(ConflictError):
        commit_units(db, run_id, [first], [dataclasses.replace(unit, unit_id=2, rows=5)], attempt=1)
    runs.finish(run_id)
    assert sum(1 for f in store.files() if f.path.endswith(".parquet")) == 4
    rows = sql("SELECT example_id FROM scores ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == sorted(ids(10) + ids(5, "b"))


def test_schemas_reconcile_by_column_name(runs: Runs) -> None:
    run_id = runs.start()
    full = scores_table(run_id, ids(3), [1.0, 0.0, 1.0])
    older = full.drop_columns(["error", "created_at"]).select(
        [
            "metric",
            "value",
            "run_id",
            "example_id",
            "evaluation",
            "version",
            "component",
            "call_index",
        ]
    )
    newer = scores_table(run_id, ids(2, "n"), [0.5, 0.5]).append_column(
        "judge", pa.array(["gpt", "gpt"])
    )
    runs.commit(run_id, 0, {"scores": older})
    runs.commit(run_id, 1, {"scores": newer})
    runs.finish(run_id)
    names = [name for name, _ in _columns("scores")]
    assert names == [*SCORES_SCHEMA.names, "judge"]
    rows = sql("SELECT example_id, value, error, judge FROM scores ORDER BY 1").fetchall()
    assert rows == [
        ("ex000000", 1.0, None, None),
        ("ex000001", 0.0, None, None),
        ("ex000002", 1.0, None, None),
        ("n000000", 0.5, None, "gpt"),
        ("n000001", 0.5, None, "gpt"),
    ]
    only_old = sql("SELECT count(created_at) FROM scores").fetchall()[0]
    assert only_old == (2,)


class _RemoteStore(ShardStore):
    @property
    def is_local(self) -> bool:
        return False


def test_a_non_local_store_is_read_through_arrow(
    runs: Runs, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = runs.run(build=lambda rid: scores_table(rid, ids(4), [1.0, 0.0, 1.0, 1.0]), shards=2)
    second = runs.run(build=lambda rid: scores_table(rid, ids(3), [0.0, 0.0, 1.0]))
    local = store_for(settings)
    remote = _RemoteStore(uri=local.uri, fs=local.fs, root=local.root)
    monkeypatch.setattr(connection, "store_for", lambda s=None: remote)
    con = connect()
    assert con.sql("SELECT run_id, sum(value) FROM scores GROUP BY 1 ORDER BY 1").fetchall() == [
        (first, 3.0),
        (second, 1.0),
    ]
    assert [n for n, _ in _columns("scores")] == SCORES_SCHEMA.names
    assert con.sql("SELECT count(*) FROM calls").fetchall()[0] == (0,)
    table = connection.open_connection(run_ids=[second]).table("scores").arrow().read_all()
    assert pc.unique(table["run_id"]).to_pylist() == [second]


def test_as_of_a_version_that_does_not_exist(settings: Settings, db: Database) -> None:
    with pytest.raises(NotFoundError, match="no dataset version 3; nothing has been committed"):
        connect(as_of=3)


def test_the_connection_is_read_only(runs: Runs, settings: Settings, tmp_path: Path) -> None:
    runs.run(build=lambda rid: scores_table(rid, ids(3), [1.0, 1.0, 0.0]))
    shard = Path(runs.store.full_path(_live_shards(runs)[0].path))
    before = shard.read_bytes()
    con = connect()
    refused = [
        f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
        f"COPY (SELECT 1) TO '{shard.parent / 'new.parquet'}'",
        f"COPY (SELECT 42 AS a) TO '{shard}'",
        f"ATTACH '{tmp_path / 'other.duckdb'}'",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_parquet('{shard.parent}/*.parquet')",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'",
        "INSTALL httpfs",
        "SET enable_external_access=true",
    ]
    for statement in refused:
        with pytest.raises(duckdb.Error) as info:
            con.execute(statement)
        assert "Permission Error" in str(info.value) or "locked" in str(info.value), statement
    assert not (tmp_path / "out.csv").exists() and not (shard.parent / "new.parquet").exists()
    assert not (tmp_path / "other.duckdb").exists() and not (tmp_path / "dump").exists()
    # hm.sql refuses COPY outright, even onto a path the views read
    with pytest.raises(QueryError, match="COPY statements are refused"):
        sql(f"COPY (SELECT 42 AS a) TO '{shard}' (USE_TMP_FILE false)")
    with pytest.raises(QueryError, match=r"Permission Error.*read-only"):
        sql(f"SELECT * FROM read_csv('{tmp_path}/x.csv')")
    assert shard.read_bytes() == before
    # scratch work in memory is fine, and the views still read
    con.execute("CREATE TEMP TABLE t AS SELECT * FROM scores")
    assert con.sql("SELECT count(*) FROM t").fetchall()[0] == (3,)
    assert sql("SELECT count(*) FROM scores").fetchall()[0] == (3,)


def _live_shards(runs: Runs) -> list[Shard]:
    with runs.db.session() as session:
        return list(session.scalars(select(Shard).where(Shard.removed_version_id.is_(None))))


def test_metadata_json_columns_are_json_text(runs: Runs) -> None:
    versions = {"code_version": "abc", "evals": {"brier": {"higher_is_better": False}}}
    declared = runs.run(build=lambda rid: scores_table(rid, ids(1), [1.0]), versions=versions)
    plain = runs.run(build=lambda rid: scores_table(rid, ids(1), [1.0]))
    rows = sql(
        "SELECT id, json_extract_string(versions, '$.evals.brier.higher_is_better'), "
        "versions IS NULL, params FROM runs ORDER BY id"
    ).fetchall()
    # a run records the evals it scored (plain functions: higher is better)
    assert rows == [(declared, "false", False, "{}"), (plain, None, False, "{}")]
    ((recorded,),) = sql(
        f"SELECT json_extract_string(versions, '$.evals.exact_match.higher_is_better') "
        f"FROM runs WHERE id = {plain}"
    ).fetchall()
    assert recorded == "true"
