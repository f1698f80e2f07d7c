"""Paired comparison, checked against numpy/SciPy computed here, not against the code."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from scipy import stats

from hypermetric.catalog.db import Database
from hypermetric.cli import cli
from hypermetric.errors import NotFoundError, QueryError
from hypermetric.query.compare import Comparison, MetricDelta, compare, higher_is_better
from tests.query.conftest import Runs, ids, scores_table

N = 1000


def _pair(runs: Runs, a: np.ndarray, b: np.ndarray, **kw: Any) -> tuple[int, int]:
    names = ids(len(a))
    first = runs.run(build=lambda rid: scores_table(rid, names, a, **kw), shards=2)
    second = runs.run(build=lambda rid: scores_table(rid, names, b, **kw), shards=3)
    return first, second


def _scipy_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    res = stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        random_state=np.random.default_rng(2024),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _only(result: Comparison) -> MetricDelta:
    assert len(result.metrics) == 1
    return result.metrics[0]


def _check_against_scipy(m: MetricDelta, a: np.ndarray, b: np.ndarray, tol: float) -> None:
    d = b - a
    assert m.n == len(a)
    assert m.delta == pytest.approx(d.mean(), abs=1e-12)
    assert m.mean_a == pytest.approx(a.mean()) and m.mean_b == pytest.approx(b.mean())
    low, high = _scipy_ci(a, b)
    assert m.ci_low == pytest.approx(low, abs=tol) and m.ci_high == pytest.approx(high, abs=tol)
    expected_p = stats.ttest_rel(b, a).pvalue
    assert m.p_value == pytest.approx(expected_p, rel=1e-6, abs=1e-300)
    assert (m.improved, m.regressed, m.unchanged) == (
        int((d > 1e-12).sum()),
        int((d < -1e-12).sum()),
        int((np.abs(d) <= 1e-12).sum()),
    )


def test_a_paired_shift_of_a_tenth(runs: Runs) -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(0.2, 0.8, N)
    b = a + 0.1 + rng.normal(0.0, 0.05, N)
    first, second = _pair(runs, a, b)
    m = _only(compare(first, second))
    _check_against_scipy(m, a, b, tol=5e-4)
    assert m.ci_low is not None and m.ci_high is not None
    assert m.ci_low < 0.1 < m.ci_high and m.ci_low > 0
    assert m.improved_beyond(0.0) and not m.regressed_beyond(0.0)
    backwards = _only(compare(second, first))
    assert backwards.delta == pytest.approx(-m.delta)  # type: ignore[operator]
    assert backwards.regressed_beyond(0.05) and not backwards.regressed_beyond(0.2)


def test_no_shift(runs: Runs) -> None:
    rng = np.random.default_rng(11)
    a = rng.uniform(0.0, 1.0, N)
    b = a + rng.choice([-0.05, 0.05], N)
    first, second = _pair(runs, a, b)
    m = _only(compare(first, second))
    _check_against_scipy(m, a, b, tol=5e-4)
    assert m.ci_low is not None and m.ci_high is not None and m.ci_low < 0 < m.ci_high
    assert not m.regressed_beyond() and not m.improved_beyond()
    same = _only(compare(first, first))
    assert (same.delta, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert same.unchanged == N and same.improved == same.regressed == 0


def test_binary_scores_use_the_exact_bootstrap(runs: Runs) -> None:
    rng = np.random.default_rng(3)
    a = (rng.random(N) < 0.6).astype(float)
    b = np.where(rng.random(N) < 0.15, 1.0 - a, a)
    first, second = _pair(runs, a, b)
    m = _only(compare(first, second))
    _check_against_scipy(m, a, b, tol=2e-3)


def test_many_distinct_values_use_the_binned_bootstrap(runs: Runs) -> None:
    rng = np.random.default_rng(5)
    n = 6000  # more distinct differences than the exact path takes, too many to resample
    a = rng.normal(0.5, 0.2, n)
    b = a + rng.standard_t(4, n) * 0.1 - 0.01
    first, second = _pair(runs, a, b)
    m = _only(compare(first, second, resamples=4000))
    _check_against_scipy(m, a, b, tol=5e-4)
    assert m.regressed_beyond(0.0)


def test_missing_examples_and_errors(runs: Runs) -> None:
    a_ids, b_ids = ids(100), ids(110)[10:]
    values_b: list[float | None] = [0.5] * 100
    errors: list[str | None] = [None] * 100
    for i in (0, 1, 2):  # ex000010..12 failed in B
        values_b[i], errors[i] = None, "ValueError: boom"
    first = runs.run(build=lambda rid: scores_table(rid, a_ids, [0.25] * 100))
    second = runs.run(build=lambda rid: scores_table(rid, b_ids, values_b, errors=errors))
    m = _only(compare(first, second))
    assert (m.only_a, m.only_b, m.errored, m.n) == (10, 10, 3, 87)
    assert m.delta == pytest.approx(0.25) and m.improved == 87


def test_lower_is_better_and_dict_evals(runs: Runs) -> None:
    versions = {"evals": {"brier": {"hash": "x", "higher_is_better": False}, "rouge": {}}}
    names = ids(200)
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.6, 200)

    def build(values: np.ndarray) -> Any:
        return lambda rid: pa.concat_tables(
            [
                scores_table(rid, names, values, metric="brier"),
                scores_table(rid, names, values, metric="rouge.f"),
            ]
        )

    first = runs.run(build=build(base), versions=versions)
    worse = runs.run(build=build(base + 0.05), versions=versions)
    result = compare(first, worse, examples=5)
    brier, rouge = result.metrics
    assert (brier.metric, brier.higher_is_better, rouge.higher_is_better) == ("brier", False, None)
    assert brier.regressed == 200 and (rouge.improved, rouge.regressed) == (None, None)
    assert [m.metric for m in result.failing()] == ["brier"]
    assert [m.metric for m in result.unknown_direction()] == ["rouge.f"]
    assert {c.metric for c in result.regressions} == {"brier"}  # rouge: no better or worse
    assert all(c.gain < 0 for c in result.regressions)
    assert higher_is_better("brier.sub", result.run_a) is False
    assert higher_is_better("brier") is None  # no run records it


def test_a_gate_refuses_a_metric_of_unknown_direction(runs: Runs) -> None:
    names = ids(100)
    build = lambda v: lambda rid: scores_table(rid, names, np.full(100, v), metric="cost")  # noqa: E731
    first = runs.run(build=build(1.0), versions={"evals": {}})
    second = runs.run(build=build(0.5), versions={"evals": {}})
    runner = CliRunner()
    shown = runner.invoke(cli, ["compare", str(first), str(second)])
    assert shown.exit_code == 0 and "?: neither run records" in shown.output
    gate = runner.invoke(cli, ["compare", str(first), str(second), "--fail-on-regression"])
    assert gate.exit_code == 1
    assert gate.output.splitlines()[-1].startswith(
        f"error: cannot gate on generate/cost: neither run {first} nor run {second} records "
        "its direction"
    )
    assert "regression:" not in gate.output


def test_runs_by_evaluation_and_version(runs: Runs, db: Database) -> None:
    build = lambda values: lambda rid: scores_table(rid, ids(3), values)  # noqa: E731
    older = runs.run(build=build([0.0, 0.0, 1.0]), version="v7")
    newer = runs.run(build=build([1.0, 0.0, 1.0]), version="v7")
    runs.run(build=build([1.0, 1.0, 1.0]), version="v8", state="failed")
    target = runs.run(build=build([1.0, 1.0, 0.0]), version="v8")
    result = compare("qa@v7", "qa@v8")
    assert (result.run_a.id, result.run_b.id) == (newer, target)
    assert result.run_a.id != older
    with pytest.raises(NotFoundError, match="no successful run of evaluation 'qa' with version"):
        compare("qa@v9", target)
    with pytest.raises(QueryError, match="EVALUATION@VERSION"):
        compare("qa", target)


def test_the_bootstrap_is_seeded(runs: Runs) -> None:
    rng = np.random.default_rng(0)
    a = rng.random(300)
    first, second = _pair(runs, a, a + rng.normal(0.02, 0.1, 300))
    one, two = _only(compare(first, second)), _only(compare(first, second))
    other = _only(compare(first, second, seed=1))
    assert (one.ci_low, one.ci_high) == (two.ci_low, two.ci_high)
    assert (one.ci_low, one.ci_high) != (other.ci_low, other.ci_high)


def test_cli_exit_codes_and_regressions(runs: Runs) -> None:
    rng = np.random.default_rng(9)
    a = rng.uniform(0.3, 0.7, N)
    b = a - 0.1 + rng.normal(0.0, 0.02, N)
    first, second = _pair(runs, a, b)
    runner = CliRunner()
    ok = runner.invoke(cli, ["compare", str(first), str(second)])
    assert ok.exit_code == 0, ok.output
    assert "regressed" in ok.output and "exact_match" in ok.output
    gate = runner.invoke(cli, ["compare", str(first), str(second), "--fail-on-regression"])
    assert gate.exit_code == 1
    assert "regression: generate/exact_match" in gate.output
    loose = runner.invoke(cli, ["compare", str(first), str(second), "--fail-on-regression", "0.2"])
    assert loose.exit_code == 0, loose.output
    fine = runner.invoke(cli, ["compare", str(second), str(first), "--fail-on-regression"])
    assert fine.exit_code == 0, fine.output
    shown = runner.invoke(
        cli, ["compare", str(first), str(second), "--show", "regressions", "--limit", "5"]
    )
    assert shown.exit_code == 0, shown.output
    worst = np.argsort(b - a, kind="stable")[:5]
    lines = [line for line in shown.output.splitlines() if " ex0" in line]
    assert [line.split()[5] for line in lines] == [ids(N)[i] for i in worst]
    missing = runner.invoke(cli, ["compare", str(first), "999"])
    assert missing.exit_code == 1 and "no run 999" in missing.output


def test_one_metric_and_json_output(runs: Runs) -> None:
    names = ids(50)

    def build(shift: float) -> Any:
        return lambda rid: pa.concat_tables(
            [
                scores_table(rid, names, np.full(50, 0.5 + shift), metric=metric)
                for metric in ("judge", "judge.relevance", "judgement", "f1")
            ]
        )

    first, second = runs.run(build=build(0.0)), runs.run(build=build(0.1))
    picked = compare(first, second, metric="judge")
    assert [m.metric for m in picked.metrics] == ["judge", "judge.relevance"]
    assert [m.delta for m in picked.metrics] == [pytest.approx(0.1)] * 2
    with pytest.raises(QueryError, match="have no scores for metric 'nope'"):
        compare(first, second, metric="nope")
    out = CliRunner().invoke(
        cli, ["compare", str(first), str(second), "-m", "f1", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (data["run_a"], data["run_b"], data["seed"]) == (first, second, 0)
    assert [(m["metric"], m["n"], m["improved"]) for m in data["metrics"]] == [("f1", 50, 50)]


def test_the_gate_uses_holm_adjusted_p_values_across_metrics(runs: Runs) -> None:
    # three metrics that each regressed with raw p ≈ 0.02: each CI lies below 0, but the
    # Holm-adjusted p (≈ 0.06) is not below 0.05, so the gate passes unless told --adjust none
    rng = np.random.default_rng(17)
    n = 200
    a = rng.uniform(0.3, 0.7, n)
    noise = rng.normal(0.0, 0.1, n)
    d = noise - noise.mean() - 2.4 * noise.std(ddof=1) / np.sqrt(n)
    names = ids(n)

    def build(values: np.ndarray) -> Any:
        return lambda rid: pa.concat_tables(
            [scores_table(rid, names, values, metric=m) for m in ("m1", "m2", "m3")]
        )

    first, second = runs.run(build=build(a)), runs.run(build=build(a + d))
    result = compare(first, second)
    raw = stats.ttest_rel(a + d, a).pvalue
    for m in result.metrics:
        assert m.p_value == pytest.approx(raw, rel=1e-6) and 0.05 / 3 < raw < 0.05
        assert m.p_adjusted == pytest.approx(min(1.0, 3 * raw))
        assert m.regressed_beyond() and not m.fails()
    assert result.failing() == [] and result.adjust == "holm"
    runner = CliRunner()
    gate = runner.invoke(cli, ["compare", str(first), str(second), "--fail-on-regression"])
    assert gate.exit_code == 0, gate.output
    assert "p holm" in gate.output and "MDE" in gate.output and "regressed" not in gate.output
    raw_gate = [str(first), str(second), "--fail-on-regression", "--adjust", "none"]
    unadjusted = runner.invoke(cli, ["compare", *raw_gate])
    assert unadjusted.exit_code == 1
    assert unadjusted.output.count("regression: generate/m") == 3
    bh = compare(first, second, adjust="bh")
    assert [m.p_adjusted for m in bh.metrics] == [pytest.approx(raw)] * 3  # equal p: BH keeps
    with pytest.raises(QueryError, match="unknown adjustment 'bonferroni'"):
        compare(first, second, adjust="bonferroni")


def test_compare_json_carries_the_new_statistics(runs: Runs) -> None:
    rng = np.random.default_rng(2)
    a = (rng.random(150) < 0.5).astype(float)
    first, second = _pair(runs, a, np.where(rng.random(150) < 0.2, 1 - a, a))
    out = CliRunner().invoke(cli, ["compare", str(first), str(second), "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    (m,) = data["metrics"]
    assert (data["adjust"], data["alpha"], data["power"], data["reduce"]) == (
        "holm",
        0.05,
        0.8,
        "mean",
    )
    assert data["cluster_by"] is None and m["binary"] is True and m["mean_interval"] == "wilson"
    for key in ("p_adjusted", "mde", "se", "df", "mcnemar_p", "discordant_10", "discordant_01"):
        assert m[key] is not None, key
    table = CliRunner().invoke(cli, ["compare", str(first), str(second)])
    shown = " ".join(table.output.split())  # the caption wraps at the table's width
    assert "McNemar p" in shown and "exact test of the discordant pairs" in shown


def test_cluster_by_needs_the_examples_of_the_runs(runs: Runs) -> None:
    first, second = _pair(runs, np.zeros(10), np.ones(10))
    out = CliRunner().invoke(cli, ["compare", str(first), str(second), "--cluster-by", "doc"])
    assert out.exit_code == 1
    assert "cannot cluster by 'doc'" in out.output.splitlines()[-1]
    reduced = CliRunner().invoke(
        cli, ["compare", str(first), str(second), "--reduce", "pass_at_k:1"]
    )
    assert reduced.exit_code == 0 and "epochs reduced by pass_at_k:1" in reduced.output
