"""Power from an evaluation's history: the variance split recomputed with numpy, the answer
checked against statsmodels' TTestPower and against the truth of the simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from statsmodels.stats.power import TTestPower

import hypermetric as hm
from hypermetric.cli import cli
from hypermetric.errors import NotFoundError, QueryError
from hypermetric.query.power import power_on
from tests.query.conftest import Runs, ids, scores_table
from tests.query.test_epochs_clusters import connection, record

N, K = 400, 4
WITHIN, BETWEEN, PAIRED = 0.1**2, 0.2**2, 0.05**2  # the simulation's true variances


def two_versions(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Examples x epochs of version A and version B: B moves each example by its own
    amount (variance PAIRED), each epoch adds noise (variance WITHIN)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.5, math.sqrt(BETWEEN), N)
    moved = truth + rng.normal(0.02, math.sqrt(PAIRED), N)
    a = truth[:, None] + rng.normal(0, math.sqrt(WITHIN), (N, K))
    b = moved[:, None] + rng.normal(0, math.sqrt(WITHIN), (N, K))
    return a, b


def examples_for(variance: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> float:
    effect = delta / math.sqrt(variance)
    return float(TTestPower().solve_power(effect_size=effect, alpha=alpha, power=power))


def test_two_versions_give_the_measured_paired_variance_split_by_epochs() -> None:
    a, b = two_versions()
    con = connection({1: a, 2: b})
    (e,) = power_on(con, [record(1, "v1"), record(2, "v2")], metric="acc", delta=0.01)
    within = np.concatenate([a.var(axis=1, ddof=1), b.var(axis=1, ddof=1)]).mean()
    spread = (a.mean(axis=1).var(ddof=1) + b.mean(axis=1).var(ddof=1)) / 2
    d = b.mean(axis=1) - a.mean(axis=1)
    fixed = d.var(ddof=1) - 2 * within / K
    assert (e.source, e.versions, e.runs, e.examples_now, e.epochs_now) == (
        "versions", ("v1", "v2"), 2, N, K
    )  # fmt: skip
    assert e.within_var == pytest.approx(within)
    assert e.between_var == pytest.approx(spread - within / K)
    assert [p.epochs for p in e.plans] == [1, 2, 4, 8]
    for plan in e.plans:
        assert plan.paired_var == pytest.approx(fixed + 2 * within / plan.epochs)
        # against statsmodels' noncentral t, and against the simulation's true variance
        assert plan.examples == pytest.approx(examples_for(plan.paired_var, 0.01), rel=0.01, abs=2)
        truth = PAIRED + 2 * WITHIN / plan.epochs
        assert plan.paired_var == pytest.approx(truth, rel=0.2)
    one, eight = e.plans[0].examples, e.plans[-1].examples
    assert one > 4 * eight  # epochs shrink the within part only, which dominates here
    assert e.mde_now == pytest.approx(
        (2.8 * math.sqrt((fixed + 2 * within / K) / N)), rel=0.01
    )  # (t_.975 + t_.8) ≈ 1.966 + 0.842 at 399 df


def test_one_version_is_twice_its_own_variance_and_epochs_can_be_asked() -> None:
    a, _ = two_versions(1)
    con = connection({1: a, 3: a + np.random.default_rng(2).normal(0, 0.1, (N, K))})
    runs = [record(1, "v1"), record(3, "v1")]
    (e,) = power_on(con, runs, metric="acc", delta=0.02, alpha=0.01, power=0.9, epochs=3)
    assert e.source == "conservative" and e.versions is None
    assert [p.epochs for p in e.plans] == [3]
    plan = e.plans[0]
    assert plan.paired_var == pytest.approx(2 * (e.between_var + (e.within_var or 0) / 3))
    assert plan.examples == pytest.approx(
        examples_for(plan.paired_var, 0.02, 0.01, 0.9), rel=0.01, abs=2
    )


def test_one_epoch_histories_do_not_count_on_more_epochs() -> None:
    rng = np.random.default_rng(3)
    con = connection({1: rng.random((200, 1)), 2: rng.random((200, 1))})
    (e,) = power_on(con, [record(1, "v1"), record(2, "v2")], metric="acc", delta=0.05)
    assert e.within_var is None and [p.epochs for p in e.plans] == [1]
    (asked,) = power_on(con, [record(1, "v1"), record(2, "v2")], metric="acc", delta=0.05, epochs=4)
    assert asked.plans[0].paired_var == e.plans[0].paired_var  # no within part to shrink


def test_power_input_errors_are_one_line() -> None:
    con = connection({1: np.ones((5, 1))})
    runs = [record(1)]
    with pytest.raises(QueryError, match=r"has no values of metric 'nope'; its metrics: acc"):
        power_on(con, runs, metric="nope", delta=0.1)
    with pytest.raises(QueryError, match=r"--delta must be > 0"):
        power_on(con, runs, metric="acc", delta=0.0)
    with pytest.raises(QueryError, match="no successful runs"):
        power_on(con, [], metric="acc", delta=0.1)


def test_power_through_the_api_and_the_cli(runs: Runs) -> None:
    rng = np.random.default_rng(4)
    base = (rng.random(300) < 0.6).astype(float)
    for version, flip in (("v1", 0.0), ("v2", 0.1)):
        values = np.where(rng.random(300) < flip, 1 - base, base)
        runs.run(build=lambda rid, v=values: scores_table(rid, ids(300), v), version=version)
    (e,) = hm.power("qa", metric="exact_match", delta=0.05)
    assert (e.source, e.runs, e.examples_now, e.component) == ("versions", 2, 300, "generate")
    out = CliRunner().invoke(cli, ["power", "qa", "--metric", "exact_match", "--delta", "0.05"])
    assert out.exit_code == 0, out.output
    assert "examples needed" in out.output and f" {e.plans[0].examples} " in out.output
    assert "measured between versions v1 and v2" in out.output
    bad = CliRunner().invoke(cli, ["power", "qa", "--metric", "f1", "--delta", "0.05"])
    assert (
        bad.exit_code == 1
        and "has no values of metric 'f1'; its metrics: exact_match" in bad.output
    )
    zero = CliRunner().invoke(cli, ["power", "qa", "-m", "exact_match", "-d", "-1"])
    assert zero.exit_code == 1 and "--delta must be > 0" in zero.output
    with pytest.raises(NotFoundError):
        hm.power("nope", metric="exact_match", delta=0.1)
    runs.start("empty")
    with pytest.raises(QueryError, match="'empty' has no successful runs"):
        hm.power("empty", metric="exact_match", delta=0.1)


def test_clustered_examples_need_more_and_come_in_clusters() -> None:
    import statsmodels.api as sm
    from scipy import stats

    from hypermetric.cli.tables import power_notes, power_table
    from hypermetric.query.inference import examples_needed
    from tests.query.test_epochs_clusters import _clustered_runs, add_examples

    a, b, codes = _clustered_runs(11)  # 40 documents of 6 examples
    con = connection({1: a[:, None], 2: b[:, None]})
    add_examples(con, 2, [{"doc": f"d{c}"} for c in codes])
    runs = [record(1, "v1"), record(2, "v2")]
    (plain,) = power_on(con, runs, metric="acc", delta=0.01)
    (e,) = power_on(con, runs, metric="acc", delta=0.01, cluster_by="doc")
    d = b - a
    fit = sm.OLS(d, np.ones(d.size)).fit(cov_type="cluster", cov_kwds={"groups": codes})
    effect = fit.bse[0] ** 2 / (d.var(ddof=1) / d.size)
    assert (e.cluster_by, e.clusters_now, e.cluster_size) == ("doc", 40, 6.0)
    assert e.design_effect == pytest.approx(effect, rel=1e-9) and effect > 2
    (plan,) = e.plans
    assert plan.paired_var == plain.plans[0].paired_var  # per example, as without clusters
    assert plan.examples == examples_needed(effect * plan.paired_var, 0.01, cluster_size=6.0)
    assert plan.clusters == math.ceil(plan.examples / 6)
    assert plan.examples == pytest.approx(effect * plain.plans[0].examples, rel=0.02)
    t = stats.t.ppf(0.975, 39) + stats.t.ppf(0.8, 39)
    assert e.mde_now == pytest.approx(t * math.sqrt(effect * plan.paired_var / d.size))
    assert plain.mde_now is not None and e.mde_now > 1.4 * plain.mde_now
    assert "in clusters" in [c.header for c in power_table(e).columns]
    assert power_notes(e)[3].startswith(
        f"clustered by doc: 40 clusters of 6.0 examples on average; design effect {effect:.2f}"
    )


def test_the_clusters_planned_detect_the_change_as_often_as_asked() -> None:
    """The plan's formula against the truth: clusters of 6 whose examples share half their
    variance (design effect 1 + 5 x 0.5), tested cluster by cluster at C - 1 df."""
    from scipy import stats

    from hypermetric.query.inference import examples_needed

    size, per_example, icc, delta = 6, 0.005, 0.5, 0.01
    effect = 1 + (size - 1) * icc
    clusters = examples_needed(effect * per_example, delta, cluster_size=size) // size
    rng = np.random.default_rng(3)
    trials = 4000
    shared = rng.normal(0, math.sqrt(icc * per_example), (trials, clusters, 1))
    own = rng.normal(0, math.sqrt((1 - icc) * per_example), (trials, clusters, size))
    means = (delta + shared + own).mean(axis=2)  # equal sizes: CR1 is the t of these
    t = means.mean(axis=1) / (means.std(axis=1, ddof=1) / math.sqrt(clusters))
    detected = np.mean(np.abs(t) > stats.t.ppf(0.975, clusters - 1))
    assert 0.77 < detected < 0.83
