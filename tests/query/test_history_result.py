"""RunResult's summary and rows, and a metric's history with its shift rule."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from scipy import stats

from hypermetric.catalog.db import Database
from hypermetric.cli import cli
from hypermetric.errors import NotFoundError, QueryError
from hypermetric.query.history import history
from hypermetric.query.render import table_text
from hypermetric.query.result import RunResult, render_summary
from tests.query.conftest import Runs, calls_table, ids, scores_table


def test_summary_against_scipy(runs: Runs) -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(0.6, 0.2, 50)
    errors: list[str | None] = [None] * 50 + ["TimeoutError"] * 3
    names = ids(53)

    def build(rid: int) -> pa.Table:
        return pa.concat_tables(
            [
                scores_table(rid, names, [*values, None, None, None], errors=errors),
                scores_table(rid, names[:1], [1.0], metric="single", component="retrieve"),
            ]
        )

    run_id = runs.run(build=build, shards=2)
    other = runs.run(build=lambda rid: scores_table(rid, names, [0.0] * 53))
    result = RunResult(run_id)
    main, single = result.summary()  # by component: generate, retrieve
    assert (single.component, single.metric, single.n, single.mean) == ("retrieve", "single", 1, 1)
    assert single.ci_low is None and single.stderr is None
    assert (main.component, main.metric, main.n, main.errors) == ("generate", "exact_match", 50, 3)
    assert main.mean == pytest.approx(values.mean())
    assert main.stderr == pytest.approx(stats.sem(values))
    low, high = stats.t.interval(0.95, 49, loc=values.mean(), scale=stats.sem(values))
    assert (main.ci_low, main.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert result.scores().aggregate("count(*)").fetchall() == [(54,)]
    assert result.calls().aggregate("count(*)").fetchall() == [(0,)]
    assert result.run.state == "success" and result.run_id == run_id
    assert RunResult(other).summary()[0].mean == 0.0
    text = str(result)
    assert "exact_match" in text and "retrieve" in text and f"run {run_id}" in text
    assert "no scores" in table_text(render_summary([]))
    with pytest.raises(NotFoundError):
        RunResult(999)


def test_calls_of_a_run(runs: Runs) -> None:
    run_id = runs.start()
    runs.commit(
        run_id,
        0,
        {"scores": scores_table(run_id, ids(4), [1.0] * 4), "calls": calls_table(run_id, ids(4))},
    )
    result = RunResult(run_id)
    assert result.calls().aggregate("count(*), avg(latency_ms)").fetchall() == [(4, 1.5)]
    assert result.summary()[0].n == 4  # a running run shows what it committed so far


def _nightly(runs: Runs, means: list[float], n: int = 400, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    out = []
    for night, mean in enumerate(means):
        values = np.clip(rng.normal(mean, 0.1, n), 0, 1)
        out.append(
            runs.run(
                "nightly",
                build=lambda rid, v=values: pa.concat_tables(
                    [
                        scores_table(rid, ids(n), v, evaluation="nightly", metric="acc"),
                        scores_table(rid, ids(n), 1 - v, evaluation="nightly", metric="loss"),
                    ]
                ),
                version=f"v{night}",
            )
        )
    return out


def test_history_marks_the_night_that_moved(runs: Runs, db: Database) -> None:
    run_ids = _nightly(runs, [0.70] * 8 + [0.60, 0.60])
    runs.run(
        "nightly",
        build=lambda rid: scores_table(rid, ids(3), [0.0] * 3, metric="acc"),
        state="failed",
    )
    points = history("nightly", metric="acc")
    assert [p.run_id for p in points] == run_ids
    assert points[0].expected_low is None and points[0].shift == ""
    assert [p.shift for p in points[1:8]] == [""] * 7
    assert points[8].shift == "down" and points[8].baseline_runs == 7
    # the second night at 0.60 is judged against a week that holds the first: the nights'
    # own spread now includes the drop, and no longer marks it (the first night was marked)
    assert points[9].shift == "" and points[9].expected_low < 0.60
    assert [p.version for p in points] == [f"v{i}" for i in range(10)]
    both = history("nightly")
    assert {(p.metric, p.shift) for p in both if p.run_id == run_ids[8]} == {
        ("acc", "down"),
        ("loss", "up"),
    }
    one_back = history("nightly", metric="acc", window=1)
    assert one_back[9].shift == "" and one_back[9].baseline_runs == 1
    with pytest.raises(NotFoundError):
        history("nope")


def test_history_reduces_epochs_and_refuses_what_it_cannot_cluster(runs: Runs) -> None:
    _nightly(runs, [0.7] * 3, n=50)
    plain = history("nightly", metric="acc")
    same = history("nightly", metric="acc", reduce="mean")
    assert [p.mean for p in plain] == pytest.approx([p.mean for p in same], rel=1e-12)
    with pytest.raises(QueryError, match="--reduce majority needs a 0/1 metric"):
        history("nightly", metric="acc", reduce="majority")
    out = CliRunner().invoke(cli, ["history", "nightly", "--cluster-by", "doc"])
    assert out.exit_code == 1 and "cannot cluster by 'doc'" in out.output
    shown = CliRunner().invoke(cli, ["history", "nightly", "-m", "acc", "--reduce", "mean"])
    assert shown.exit_code == 0 and "acc" in shown.output


def test_a_runs_summary_reduces_its_epochs_and_needs_examples_to_cluster(runs: Runs) -> None:
    names = ids(40)
    rng = np.random.default_rng(6)
    epochs = (rng.random((40, 3)) < 0.5).astype(float)
    run_id = runs.run(
        build=lambda rid: pa.concat_tables(
            [scores_table(rid, names, epochs[:, k]) for k in range(3)]  # three epochs a row
        )
    )
    result = RunResult(run_id)
    (mean,) = result.summary()
    assert mean.n == 40 and mean.mean == pytest.approx(epochs.mean())
    assert mean.within_var == pytest.approx(epochs.var(axis=1, ddof=1).mean())
    (majority,) = result.summary(reduce="majority")
    assert majority.mean == pytest.approx((epochs.sum(axis=1) >= 2).mean())
    assert majority.interval == "wilson" and "within var" in str(result)
    with pytest.raises(QueryError, match="cannot cluster by 'doc'"):
        result.summary(cluster_by="doc")
