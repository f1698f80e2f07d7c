"""The query names the package root re-exports, used the way a user would."""

from __future__ import annotations

import gc

import duckdb

import hypermetric as hm
from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import update_run
from hypermetric.query import compare, connection, history, result
from tests.query.conftest import Runs, ids, scores_table


def test_root_names_are_the_query_functions(runs: Runs) -> None:
    assert hm.sql is connection.sql and hm.connect is connection.connect
    assert hm.compare is compare.compare and hm.history is history.history
    assert hm.RunResult is result.RunResult
    first = runs.run(build=lambda rid: scores_table(rid, ids(4), [1.0, 0.0, 1.0, 1.0]))
    second = runs.run(build=lambda rid: scores_table(rid, ids(4), [1.0, 1.0, 1.0, 1.0]))
    frame = hm.sql("SELECT run_id, avg(value) AS mean FROM scores GROUP BY 1 ORDER BY 1").df()
    assert frame["mean"].tolist() == [0.75, 1.0]
    table = hm.connect().sql("SELECT * FROM runs ORDER BY id").arrow().read_all()
    assert table["id"].to_pylist() == [first, second]
    assert table["evaluation"].to_pylist() == ["qa", "qa"]
    assert hm.compare(first, second).metrics[0].improved == 1
    assert [p.run_id for p in hm.history("qa")] == [first, second]
    assert hm.RunResult(first).summary()[0].mean == 0.75


def _live_connections() -> int:
    gc.collect()
    return sum(isinstance(o, duckdb.DuckDBPyConnection) for o in gc.get_objects())


def test_every_connection_is_closed_or_owned_by_what_it_returns(runs: Runs) -> None:
    first = runs.run(build=lambda rid: scores_table(rid, ids(4), [1.0, 0.0, 1.0, 1.0]))
    second = runs.run(build=lambda rid: scores_table(rid, ids(4), [1.0, 1.0, 1.0, 1.0]))
    before = _live_connections()
    # what returns plain values closes its connection
    hm.compare(first, second)
    hm.history("qa")
    hm.RunResult(first).summary()
    assert _live_connections() == before
    # a relation owns the connection it reads: it lives exactly as long as the relation
    relations = [hm.sql("SELECT count(*) FROM scores"), hm.RunResult(first).scores()]
    assert [r.fetchall()[0][0] for r in relations[:1]] == [8]
    assert _live_connections() == before + 2
    del relations
    assert _live_connections() == before


def test_the_metadata_views_mask_credentials(runs: Runs, db: Database) -> None:
    run_id = runs.run(build=lambda rid: scores_table(rid, ids(2), [1.0, 1.0]))
    update_run(
        db,
        run_id,
        dataset="s3://AKIDEXAMPLE:s3cr3t-key@bucket/qa.parquet",
        params={"api_key": "sk-very-secret-123", "top_k": 3},
    )
    ((dataset, params),) = hm.sql(
        f"SELECT dataset, params FROM runs WHERE id = {run_id}"
    ).fetchall()
    assert dataset == "s3://***@bucket/qa.parquet"
    assert "sk-very-secret-123" not in params and '"top_k": 3' in params
