"""The ``examples`` view and the ``epoch`` column as readers see them, on shards written
without Ray: old shards (from before epochs) read epoch 0, compaction and pruning handle
the examples dataset like the others."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

import hypermetric as hm
from hypermetric.catalog.db import Database
from hypermetric.catalog.shards import live_shards
from hypermetric.catalog.types import utcnow
from hypermetric.cli import cli
from hypermetric.config import Settings
from hypermetric.query import connection
from hypermetric.query.compaction import compact
from hypermetric.query.connection import connect, sql
from hypermetric.query.retention import clean
from hypermetric.storage.files import ShardStore, store_for
from hypermetric.storage.schemas import EXAMPLES_SCHEMA
from tests.query.conftest import NOW, Runs, calls_table, ids, scores_table

README_QUERY = (
    "SELECT s.metric, e.fields->>'$.topic' AS topic, avg(s.value) AS mean "
    "FROM scores s JOIN examples e USING (run_id, example_id) GROUP BY ALL ORDER BY topic"
)


def examples_table(run_id: int, example_ids: Sequence[str], topics: Sequence[str]) -> pa.Table:
    """One examples row per example, its fields a question and a topic."""
    n = len(example_ids)
    fields = [
        json.dumps({"question": f"q {e}", "topic": t})
        for e, t in zip(example_ids, topics, strict=True)
    ]
    return pa.Table.from_pydict(
        {
            "run_id": [run_id] * n,
            "evaluation": ["qa"] * n,
            "version": ["v1"] * n,
            "example_id": list(example_ids),
            "fields": fields,
            "run_attempt": [1] * n,
            "created_at": [NOW] * n,
        },
        schema=EXAMPLES_SCHEMA,
    )


def _old(table: pa.Table) -> pa.Table:
    """``table`` as a shard written before epochs existed (no epoch column)."""
    return table.drop_columns(["epoch"])


def _with_epoch(table: pa.Table, epoch: int) -> pa.Table:
    index = table.schema.get_field_index("epoch")
    return table.set_column(index, "epoch", pa.array([epoch] * table.num_rows, pa.int32()))


def _old_and_new(runs: Runs) -> tuple[int, int]:
    """A run of old shards only, and a run of an old shard and a new one (epoch 2)."""
    old = runs.start()
    runs.commit(
        old,
        0,
        {
            "scores": _old(scores_table(old, ids(3), [1.0, 0.0, 1.0])),
            "calls": _old(calls_table(old, ids(3))),
        },
    )
    runs.finish(old)
    mixed = runs.start()
    runs.commit(mixed, 0, {"scores": _old(scores_table(mixed, ids(2), [1.0, 1.0]))})
    new = _with_epoch(scores_table(mixed, ids(2, "n"), [0.0, 0.5]), 2)
    runs.commit(mixed, 1, {"scores": new, "calls": _with_epoch(calls_table(mixed, ids(2, "n")), 2)})
    runs.finish(mixed)
    return old, mixed


def _epochs(view: str) -> list[tuple[int, int, int]]:
    return [
        (int(r), int(e), int(c))
        for r, e, c in sql(
            f"SELECT run_id, epoch, count(*) FROM {view} GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    ]


def test_rows_written_before_epochs_read_epoch_zero(runs: Runs) -> None:
    old, mixed = _old_and_new(runs)
    assert _epochs("scores") == [(old, 0, 3), (mixed, 0, 2), (mixed, 2, 2)]
    assert _epochs("calls") == [(old, 0, 3), (mixed, 2, 2)]
    # never NULL, and typed as the canonical column
    assert sql("SELECT count(*) FROM scores WHERE epoch IS NULL").fetchall() == [(0,)]
    described = dict((r[0], r[1]) for r in connect().sql("DESCRIBE scores").fetchall())
    assert described["epoch"] == "INTEGER"
    # a filter on one run (its shards only: all old) still reads epoch 0
    assert sql(f"SELECT DISTINCT epoch FROM scores WHERE run_id = {old}").fetchall() == [(0,)]


class _RemoteStore(ShardStore):
    @property
    def is_local(self) -> bool:
        return False


def test_a_non_local_store_reads_old_rows_as_epoch_zero(
    runs: Runs, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, mixed = _old_and_new(runs)
    local = store_for(settings)
    remote = _RemoteStore(uri=local.uri, fs=local.fs, root=local.root)
    monkeypatch.setattr(connection, "store_for", lambda s=None: remote)
    assert _epochs("scores") == [(old, 0, 3), (mixed, 0, 2), (mixed, 2, 2)]
    assert _epochs("calls") == [(old, 0, 3), (mixed, 2, 2)]


def test_compaction_writes_epoch_zero_into_old_rows_it_packs(
    runs: Runs, db: Database, settings: Settings
) -> None:
    _old_and_new(runs)
    before = _epochs("scores")
    compact(target_rows=1000)
    store = store_for(settings)
    (packed,) = live_shards(db, "scores")
    table = store.read(packed.path)
    assert table["epoch"].null_count == 0  # the file holds what the view shows
    assert _epochs("scores") == before
    # sorted by run, then example and epoch within a metric and component
    rows = table.select(["run_id", "example_id", "epoch"]).to_pylist()
    assert rows == sorted(rows, key=lambda r: (r["run_id"], r["example_id"], r["epoch"]))


def _topic_run(runs: Runs, n: int, evaluation: str = "qa") -> int:
    run_id = runs.start(evaluation)
    half = n // 2
    for unit in range(2):
        part = ids(n)[unit * half : (unit + 1) * half]
        topics = ["math" if int(e[2:]) % 2 else "history" for e in part]
        values = [1.0 if t == "math" else 0.0 for t in topics]
        runs.commit(
            run_id,
            unit,
            {
                "scores": scores_table(run_id, part, values),
                "examples": examples_table(run_id, part, topics),
            },
        )
    runs.finish(run_id)
    return run_id


def test_the_examples_view_joins_scores_by_run_and_example(runs: Runs) -> None:
    run_id = _topic_run(runs, 8)
    assert sql(README_QUERY).fetchall() == [
        ("exact_match", "history", 0.0),
        ("exact_match", "math", 1.0),
    ]
    ((fields,),) = sql(
        f"SELECT fields FROM examples WHERE run_id = {run_id} AND example_id = 'ex000003'"
    ).fetchall()
    assert json.loads(fields) == {"question": "q ex000003", "topic": "math"}


def test_examples_are_compacted_and_pruned_with_their_runs(
    runs: Runs, db: Database, settings: Settings
) -> None:
    _topic_run(runs, 4)
    time.sleep(0.05)
    first_cutoff = utcnow()
    second = _topic_run(runs, 8)
    time.sleep(0.05)
    second_cutoff = utcnow()
    kept = _topic_run(runs, 6, evaluation="other")
    # a run's own shards go with it
    clean(before=first_cutoff, prune_runs=True)
    assert sql("SELECT DISTINCT run_id FROM examples ORDER BY 1").fetchall() == [
        (second,),
        (kept,),
    ]
    reports = {r.dataset: r for r in compact(target_rows=1000)}
    assert reports["examples"].shards_merged == 4 and reports["examples"].rows == 14
    assert len(live_shards(db, "examples")) == 1
    counted = sql("SELECT count(*), count(DISTINCT (run_id, example_id)) FROM examples")
    assert counted.fetchall() == [(14, 14)]
    # a run's rows in a packed file shared with another run are retracted
    clean(before=second_cutoff, prune_runs=True)
    assert sql("SELECT DISTINCT run_id FROM examples").fetchall() == [(kept,)]
    assert sql("SELECT count(*) FROM examples").fetchall() == [(6,)]


def _clustered_runs(runs: Runs) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Two runs of 8 topics x 5 examples whose values move together within a topic; the
    paired deltas and each example's topic index."""
    rng = np.random.default_rng(7)
    topics = np.repeat(np.arange(8), 5)
    names = ids(40)
    base = rng.normal(size=8)[topics] + rng.normal(scale=0.3, size=40)
    shift = 0.2 + rng.normal(scale=0.5, size=8)[topics] + rng.normal(scale=0.1, size=40)
    made = []
    for values in (base, base + shift):
        run_id = runs.start()
        runs.commit(
            run_id,
            0,
            {
                "scores": scores_table(run_id, names, values),
                "examples": examples_table(run_id, names, [f"t{t}" for t in topics]),
            },
        )
        runs.finish(run_id)
        made.append(run_id)
    return made[0], made[1], shift, topics


def test_compare_summary_and_history_cluster_by_an_example_field_of_the_examples_view(
    runs: Runs, settings: Settings
) -> None:
    a, b, d, topics = _clustered_runs(runs)
    # CR1 by hand: C/(C-1) times the sum over clusters of the squared sums of residuals
    residual_sums = np.bincount(topics, weights=d - d.mean())
    se = np.sqrt(8 / 7 * (residual_sums**2).sum()) / d.size

    (m,) = hm.compare(a, b, cluster_by="topic", settings=settings).metrics
    assert (m.clusters, m.df, m.ci_method) == (8, 7, "cluster t")
    assert m.se == pytest.approx(se, rel=1e-9)
    (naive,) = hm.compare(a, b, settings=settings).metrics
    assert naive.clusters is None and m.se > 1.5 * naive.se  # the topics' shared moves

    (row,) = hm.RunResult(b, settings=settings).summary(cluster_by="topic")
    assert (row.clusters, row.interval) == (8, "cluster t")
    points = hm.history("qa", cluster_by="topic", settings=settings)
    assert [p.run_id for p in points] == [a, b]

    shown = CliRunner().invoke(cli, ["compare", str(a), str(b), "--cluster-by", "topic"])
    assert shown.exit_code == 0, shown.output
    missing = CliRunner().invoke(cli, ["compare", str(a), str(b), "--cluster-by", "nope"])
    assert missing.exit_code != 0
    (line,) = missing.output.strip().splitlines()
    assert "'nope'" in line and "topic" in line
