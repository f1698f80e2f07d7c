"""Epochs reduced per example and clusters read from the examples' fields, checked by SQL and
numpy on a plain DuckDB connection whose ``scores`` (with an ``epoch`` column, as runs with
``epochs=K`` write it) and ``examples`` tables the test makes itself."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from hypermetric.catalog.records import RunRecord
from hypermetric.errors import QueryError
from hypermetric.query.compare import compare_on
from hypermetric.query.history import series_on
from hypermetric.query.inference import pass_at_k
from hypermetric.query.result import summarize

NOW = datetime(2026, 11, 1, tzinfo=UTC)
EVALS = {"evals": {"acc": {"higher_is_better": True}, "f1": {"higher_is_better": True}}}


def record(run_id: int, version: str = "v1") -> RunRecord:
    """A successful run's record, as the catalog would hand it."""
    return RunRecord(
        id=run_id, evaluation_id=1, evaluation="qa", run_key=f"r{run_id}", logical_date=NOW,
        data_interval_start=None, data_interval_end=None, run_type="manual", state="success",
        version_label=version, code_version=None, versions=EVALS, params={}, attempt=1,
        attempt_base=0, redo_from=None, queued_at=NOW, started_at=NOW, ended_at=NOW,
        heartbeat_at=None, next_attempt_at=None, owner=None, pid=None, host=None, error=None,
        dataset=None, unit_size=None, examples_total=None, units_total=None, rows_count=0,
        calls_count=0, errors_count=0, examples_done=0, shard_count=0,
    )  # fmt: skip


def connection(values: dict[int, np.ndarray], metric: str = "acc") -> duckdb.DuckDBPyConnection:
    """A connection whose ``scores`` table holds ``values[run]`` (examples x epochs)."""
    rows: dict[str, list[Any]] = {
        k: []
        for k in [
            "run_id",
            "component",
            "metric",
            "example_id",
            "call_index",
            "value",
            "error",
            "epoch",
        ]
    }
    for run_id, grid in values.items():
        for example, epochs in enumerate(grid):
            for epoch, value in enumerate(epochs):
                missing = value is None or (isinstance(value, float) and np.isnan(value))
                for key, item in zip(
                    rows,
                    (run_id, "generate", metric, f"ex{example:04d}", 0,
                     None if missing else float(value), "boom" if missing else None, epoch),
                    strict=True,
                ):  # fmt: skip
                    rows[key].append(item)
    con = duckdb.connect()
    con.register("scores_arrow", pa.table(rows))
    con.execute("CREATE TABLE scores AS SELECT * FROM scores_arrow")
    return con


def add_examples(con: duckdb.DuckDBPyConnection, run_id: int, fields: list[dict[str, Any]]) -> None:
    """The run's examples view rows: one JSON object of fields per example."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS examples (run_id BIGINT, example_id VARCHAR, fields VARCHAR)"
    )
    con.executemany(
        "INSERT INTO examples VALUES (?, ?, ?)",
        [(run_id, f"ex{i:04d}", json.dumps(f)) for i, f in enumerate(fields)],
    )


def seeded_epochs(seed: int, examples: int = 300, epochs: int = 4, p: float = 0.6) -> np.ndarray:
    """0/1 scores of a component with seeded randomness: each example has its own pass rate."""
    rng = np.random.default_rng(seed)
    rate = np.clip(rng.beta(2, 1.5, examples) + p - 0.57, 0, 1)
    return (rng.random((examples, epochs)) < rate[:, None]).astype(float)


def test_compare_reduces_epochs_to_the_example_mean_and_reports_the_within_variance() -> None:
    a, b = seeded_epochs(1), seeded_epochs(2, p=0.7)
    con = connection({1: a, 2: b})
    m = compare_on(con, record(1), record(2)).metrics[0]
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    assert m.n == 300  # examples, not 1,200 epochs
    assert m.mean_a == pytest.approx(ma.mean()) and m.delta == pytest.approx((mb - ma).mean())
    assert m.p_value == pytest.approx(stats.ttest_rel(mb, ma).pvalue, rel=1e-7)
    assert m.within_var_a == pytest.approx(a.var(axis=1, ddof=1).mean())
    assert m.within_var_b == pytest.approx(b.var(axis=1, ddof=1).mean())
    assert not m.binary and m.mcnemar_p is None  # example means are not 0/1
    # the pairing by SQL: one reduced row a (run, example), epochs counted
    assert con.sql("SELECT count(*), min(epochs), max(epochs) FROM reduced").fetchall()[0] == (
        600,
        4,
        4,
    )


def test_majority_and_pass_at_k_reduce_each_example() -> None:
    a, b = seeded_epochs(3, epochs=5), seeded_epochs(4, epochs=5)
    b[0] = [1, 1, 0, 0, 1]  # 3 of 5: a majority
    a[0] = [1, 1, 0, 0, 0]
    con = connection({1: a, 2: b})
    majority = compare_on(con, record(1), record(2), reduce="majority").metrics[0]
    va, vb = (a.sum(axis=1) > 2.5).astype(float), (b.sum(axis=1) > 2.5).astype(float)
    assert majority.mean_a == pytest.approx(va.mean()) and majority.mean_b == pytest.approx(
        vb.mean()
    )
    assert majority.binary  # a majority is 0/1: McNemar applies
    assert majority.discordant_10 == int(((va == 1) & (vb == 0)).sum())
    k3 = compare_on(con, record(1), record(2), reduce="pass_at_k:3").metrics[0]
    want = np.mean([pass_at_k(5, int(c), 3) for c in a.sum(axis=1)])
    assert k3.mean_a == pytest.approx(want, rel=1e-12)


def test_majority_ties_are_not_a_majority() -> None:
    con = connection({1: np.array([[1.0, 0.0], [1.0, 1.0]]), 2: np.array([[0.0, 0.0], [1.0, 1.0]])})
    m = compare_on(con, record(1), record(2), reduce="majority").metrics[0]
    assert (m.mean_a, m.mean_b) == (0.5, 0.5)  # 1 of 2 is a tie: 0


def test_reducers_refuse_what_they_cannot_reduce() -> None:
    con = connection({1: seeded_epochs(5, epochs=3), 2: seeded_epochs(6, epochs=3)})
    with pytest.raises(
        QueryError,
        match=r"pass_at_k:4 needs at least 4 scored epochs per example, but generate/acc has 3",
    ):
        compare_on(con, record(1), record(2), reduce="pass_at_k:4")
    graded = connection({1: np.full((4, 2), 0.5), 2: np.full((4, 2), 0.25)})
    with pytest.raises(
        QueryError, match=r"--reduce majority needs a 0/1 metric, but generate/acc scored 0.5"
    ):
        compare_on(graded, record(1), record(2), reduce="majority")
    with pytest.raises(QueryError, match="unknown reducer 'median'"):
        compare_on(graded, record(1), record(2), reduce="median")
    with pytest.raises(QueryError, match="write pass_at_k:K"):
        compare_on(graded, record(1), record(2), reduce="pass_at_k:x")


def test_todays_data_one_row_an_example_has_no_within_variance() -> None:
    rng = np.random.default_rng(7)
    con = connection({1: rng.random((50, 1)), 2: rng.random((50, 1))})
    m = compare_on(con, record(1), record(2)).metrics[0]
    assert m.n == 50 and m.within_var_a is None and m.within_var_b is None
    assert summarize(con)[0].within_var is None


def _clustered_runs(
    seed: int, docs: int = 40, per_doc: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(docs), per_doc)
    a = rng.normal(0.5, 0.1, docs)[codes] + rng.normal(0, 0.1, codes.size)
    b = a + 0.02 + rng.normal(0, 0.05, docs)[codes] + rng.normal(0, 0.05, codes.size)
    return a, b, codes


def test_compare_clusters_by_an_example_field_like_statsmodels() -> None:
    a, b, codes = _clustered_runs(11)
    con = connection({1: a[:, None], 2: b[:, None]})
    add_examples(con, 1, [{"doc": "stale", "q": i} for i in range(codes.size)])
    add_examples(con, 2, [{"doc": f"d{c}", "q": i} for i, c in enumerate(codes)])
    m = compare_on(con, record(1), record(2), cluster_by="doc").metrics[0]
    ref = sm.OLS(b - a, np.ones(codes.size)).fit(
        cov_type="cluster", cov_kwds={"groups": codes}, use_t=True
    )
    assert m.clusters == 40  # run B's labels win over run A's single stale one
    assert m.ci_method == "cluster t" and m.df == 39
    assert m.se == pytest.approx(ref.bse[0], rel=1e-10)
    assert m.p_value == pytest.approx(ref.pvalues[0], rel=1e-7)
    assert (m.ci_low, m.ci_high) == tuple(pytest.approx(x, rel=1e-8) for x in ref.conf_int()[0])
    naive = compare_on(con, record(1), record(2)).metrics[0]
    assert naive.se is not None and m.se > 1.5 * naive.se  # clustering widens it
    assert m.mde == pytest.approx((stats.t.ppf(0.975, 39) + stats.t.ppf(0.8, 39)) * m.se)


def test_an_example_without_the_field_is_its_own_cluster_and_a_missing_field_is_named() -> None:
    a, b, codes = _clustered_runs(12, docs=10, per_doc=3)
    con = connection({1: a[:, None], 2: b[:, None]})
    fields = [{"doc": f"d{c}"} if i % 3 else {"other": 1} for i, c in enumerate(codes)]
    add_examples(con, 2, fields)
    m = compare_on(con, record(1), record(2), cluster_by="doc").metrics[0]
    assert m.clusters == 10 + 10  # ten documents, ten unlabelled examples alone
    with pytest.raises(
        QueryError,
        match=r"no example of run 1, 2 has the field 'topic'; its examples have: doc, other",
    ):
        compare_on(con, record(1), record(2), cluster_by="topic")
    bare = connection({1: a[:, None], 2: b[:, None]})
    with pytest.raises(QueryError, match="keeps no examples view"):
        compare_on(bare, record(1), record(2), cluster_by="doc")


def test_binary_metrics_get_mcnemar_and_wilson() -> None:
    rng = np.random.default_rng(21)
    a = (rng.random(80) < 0.55).astype(float)
    b = np.where(rng.random(80) < 0.2, 1 - a, a)
    con = connection({1: a[:, None], 2: b[:, None]})
    m = compare_on(con, record(1), record(2)).metrics[0]
    ten, one = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    assert m.binary and (m.discordant_10, m.discordant_01) == (ten, one)
    table = [[int(((a == 1) & (b == 1)).sum()), ten], [one, int(((a == 0) & (b == 0)).sum())]]
    assert m.mcnemar_p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-8)
    low, high = proportion_confint(int(a.sum()), 80, method="wilson")
    assert (m.mean_a_low, m.mean_a_high, m.mean_interval) == (
        pytest.approx(low),
        pytest.approx(high),
        "wilson",
    )
    row = summarize(connection({1: a[:, None]}))[0]
    assert (row.ci_low, row.ci_high, row.interval) == (
        pytest.approx(low),
        pytest.approx(high),
        "wilson",
    )


def test_p_values_are_adjusted_across_the_metrics() -> None:
    rng = np.random.default_rng(5)
    base = rng.random((120, 1))
    con = duckdb.connect()
    parts = []
    for i, shift in enumerate([0.0, 0.01, 0.02, 0.05]):
        part = connection({1: base, 2: base + shift + rng.normal(0, 0.1, (120, 1))}, metric=f"m{i}")
        parts.append(part.sql("SELECT * FROM scores").arrow().read_all())
    con.register("all_scores", pa.concat_tables(parts))
    con.execute("CREATE TABLE scores AS SELECT * FROM all_scores")
    for method, ref in (("holm", "holm"), ("bh", "fdr_bh")):
        result = compare_on(con, record(1), record(2), adjust=method)
        raw = [m.p_value for m in result.metrics]
        assert [m.p_adjusted for m in result.metrics] == pytest.approx(
            list(multipletests(raw, method=ref)[1])
        )
    none = compare_on(con, record(1), record(2), adjust="none")
    assert [m.p_adjusted for m in none.metrics] == [m.p_value for m in none.metrics]


def test_the_gate_needs_the_adjusted_p_too() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((200, 1))
    con = connection({1: a, 2: a - 0.05})
    result = compare_on(con, record(1), record(2))
    m = result.metrics[0]
    assert m.fails() and result.failing() == [m]
    unsure = replace(m, p_adjusted=0.2)  # a CI beyond 0, but not significant once adjusted
    assert unsure.regressed_beyond() and not unsure.fails()


def test_summary_clusters_and_reduces() -> None:
    a, _, codes = _clustered_runs(31)
    grid = np.stack([a, a + np.random.default_rng(1).normal(0, 0.05, a.size)], axis=1)
    con = connection({1: grid})
    add_examples(con, 1, [{"doc": f"d{c}"} for c in codes])
    row = summarize(con, cluster_by="doc")[0]
    means = grid.mean(axis=1)
    ref = sm.OLS(means, np.ones(means.size)).fit(
        cov_type="cluster", cov_kwds={"groups": codes}, use_t=True
    )
    assert row.n == means.size and row.mean == pytest.approx(means.mean())
    assert (row.stderr, row.interval, row.clusters) == (
        pytest.approx(ref.bse[0], rel=1e-10),
        "cluster t",
        40,
    )
    assert row.within_var == pytest.approx(grid.var(axis=1, ddof=1).mean())


def test_history_series_use_the_clustered_noise_of_each_run() -> None:
    a, b, codes = _clustered_runs(41)
    con = connection({1: a[:, None], 2: b[:, None]})
    add_examples(con, 1, [{"doc": f"d{c}"} for c in codes])
    add_examples(con, 2, [{"doc": f"x{c % 5}"} for c in codes])  # run 2 clusters its own way
    series = series_on(con, [1, 2], cluster_by="doc")[("generate", "acc")]
    for run_id, values, groups in ((1, a, codes), (2, b, codes % 5)):
        ref = sm.OLS(values, np.ones(values.size)).fit(
            cov_type="cluster", cov_kwds={"groups": groups}
        )
        assert series[run_id].se2 == pytest.approx(ref.bse[0] ** 2, rel=1e-10)
        assert series[run_id].noise == series[run_id].se2
    plain = series_on(con, [1, 2])[("generate", "acc")][1]
    assert plain.se2 is None and plain.noise == pytest.approx(a.var(ddof=1) / a.size)
