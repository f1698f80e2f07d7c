"""Every formula of ``query.inference`` against an independent reference: statsmodels for
clustered errors, McNemar, Wilson, power and multiple testing; brute force for pass@k; and
the coverage of the clustered interval by simulation."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.proportion import proportion_confint

from hypermetric.query.inference import (
    adjust_pvalues,
    cluster_codes,
    cluster_mean,
    detectable_effect,
    examples_needed,
    is_binary,
    mcnemar_exact,
    pass_at_k,
    wilson_interval,
)
from hypermetric.query.stats import binomial_cdf


def clustered_sample(
    rng: np.random.Generator, clusters: int, size: int, icc: float, mean: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``clusters`` x ``size`` values of unit variance whose intra-cluster correlation is
    ``icc``, and their cluster codes."""
    shared = rng.normal(0.0, math.sqrt(icc), clusters)
    codes = np.repeat(np.arange(clusters), size)
    values = mean + shared[codes] + rng.normal(0.0, math.sqrt(1.0 - icc), clusters * size)
    return values, codes


def _statsmodels_cluster(
    values: np.ndarray, codes: np.ndarray
) -> sm.regression.linear_model.RegressionResultsWrapper:
    model = sm.OLS(values, np.ones_like(values))
    return model.fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)


@pytest.mark.parametrize(
    ("clusters", "size", "uneven"), [(50, 10, False), (7, 4, True), (200, 3, True)]
)
def test_cluster_mean_is_statsmodels_cr1(clusters: int, size: int, uneven: bool) -> None:
    rng = np.random.default_rng(clusters)
    values, codes = clustered_sample(rng, clusters, size, 0.3, mean=0.2)
    if uneven:  # drop a random third of the rows: clusters of different sizes
        keep = rng.random(values.size) > 0.33
        values, codes = values[keep], codes[keep]
    ours = cluster_mean(values, codes)
    ref = _statsmodels_cluster(values, codes)
    assert ours is not None
    assert ours.mean == pytest.approx(ref.params[0], rel=1e-12)
    assert ours.se == pytest.approx(ref.bse[0], rel=1e-10)
    assert ours.df == len(np.unique(codes)) - 1 == ref.df_resid_inference
    low, high = ref.conf_int(alpha=0.05)[0]
    assert (ours.ci_low, ours.ci_high) == (
        pytest.approx(low, rel=1e-8),
        pytest.approx(high, rel=1e-8),
    )
    assert ours.p_value == pytest.approx(ref.pvalues[0], rel=1e-7)


def test_a_paired_delta_is_clustered_like_statsmodels() -> None:
    rng = np.random.default_rng(3)
    a, codes = clustered_sample(rng, 40, 6, 0.4)
    b = a + 0.1 + clustered_sample(rng, 40, 6, 0.3)[0] * 0.2
    labels = [f"doc-{c}" for c in codes]
    ours = cluster_mean(b - a, cluster_codes(labels))
    ref = _statsmodels_cluster(b - a, codes)
    assert ours is not None
    assert (ours.se, ours.p_value) == (
        pytest.approx(ref.bse[0], rel=1e-10),
        pytest.approx(ref.pvalues[0], rel=1e-7),
    )
    assert cluster_mean(np.ones(5), np.zeros(5, dtype=np.int64)) is None  # one cluster


def test_the_clustered_interval_covers_where_the_naive_one_does_not() -> None:
    # 50 clusters of 10 items, ICC 0.3: the naive s/sqrt(n) is about sqrt(1 + 9 * 0.3) ≈ 1.9
    # times too small; CR1 with t(C-1) must cover at about 95%
    rng = np.random.default_rng(2024)
    reps, clustered, naive = 600, 0, 0
    for _ in range(reps):
        values, codes = clustered_sample(rng, 50, 10, 0.3)
        c = cluster_mean(values, codes)
        assert c is not None
        clustered += c.ci_low <= 0.0 <= c.ci_high
        half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
        naive += abs(values.mean()) <= half
    assert clustered / reps >= 0.93, clustered / reps
    assert naive / reps <= 0.80, naive / reps  # measured: 0.73 (clustered: 0.95)


@pytest.mark.parametrize(
    ("b", "c"), [(0, 0), (0, 5), (3, 9), (12, 12), (40, 61), (700, 810), (5000, 5200)]
)
def test_mcnemar_is_statsmodels_exact(b: int, c: int) -> None:
    ref = mcnemar(np.array([[10, b], [c, 20]]), exact=True).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-8, abs=1e-300)


def test_binomial_cdf_matches_a_direct_sum() -> None:
    for n in (1, 2, 9, 30, 101):
        for k in range(-1, n + 1):
            direct = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
            assert binomial_cdf(k, n) == pytest.approx(direct, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    ("count", "n"), [(0, 1), (0, 12), (3, 12), (12, 12), (47, 90), (700, 1000)]
)
def test_wilson_is_statsmodels_wilson(count: int, n: int) -> None:
    low, high = proportion_confint(count, n, alpha=0.05, method="wilson")
    ours = wilson_interval(count, n)
    assert ours == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert wilson_interval(0, 0) == (None, None)


@pytest.mark.parametrize("n", [30, 100, 1000])
@pytest.mark.parametrize(("alpha", "power"), [(0.05, 0.8), (0.01, 0.9)])
def test_mde_and_sample_size_agree_with_ttestpower(n: int, alpha: float, power: float) -> None:
    # TTestPower solves the one-sample (paired) t-test's noncentral t exactly; the MDE's
    # central-t approximation is within 1% of it from 30 examples on
    sd = 0.4
    effect = TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided")
    ours = detectable_effect(sd / math.sqrt(n), n - 1, alpha, power)
    assert ours == pytest.approx(effect * sd, rel=0.01)
    needed = examples_needed(sd * sd, effect * sd, alpha, power)
    assert abs(needed - n) <= max(1, 0.01 * n)
    assert detectable_effect(sd / math.sqrt(needed), needed - 1, alpha, power) <= effect * sd
    assert detectable_effect(sd / math.sqrt(needed - 1), needed - 2, alpha, power) > effect * sd


def test_sample_size_errors() -> None:
    with pytest.raises(ValueError, match="delta must be > 0"):
        examples_needed(1.0, 0.0)
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        detectable_effect(1.0, 10, alpha=1.5)


@pytest.mark.parametrize(("method", "ref"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjustments_are_multipletests(method: str, ref: str) -> None:
    rng = np.random.default_rng(8)
    for size in (1, 2, 7, 40):
        p = np.concatenate([rng.uniform(0, 0.02, size // 2), rng.uniform(0, 1, size - size // 2)])
        p[rng.integers(0, size)] = p[0]  # a tie
        expected = multipletests(p, method=ref)[1]
        assert adjust_pvalues(list(p), method) == pytest.approx(list(expected), rel=1e-12)
    with_none = adjust_pvalues([0.01, None, 0.04], "holm")
    assert with_none == [pytest.approx(0.02), None, pytest.approx(0.04)]
    assert adjust_pvalues([0.01, 0.5], "none") == [0.01, 0.5]
    with pytest.raises(ValueError, match="unknown adjustment 'bonf'"):
        adjust_pvalues([0.1], "bonf")


def test_pass_at_k_is_the_share_of_k_subsets_with_a_pass() -> None:
    for n in range(1, 8):
        for c in range(n + 1):
            samples = [1] * c + [0] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(samples, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError, match="needs 1 <= k <= n"):
        pass_at_k(3, 1, 4)


def test_is_binary() -> None:
    assert is_binary(np.array([0.0, 1.0, 1.0])) and not is_binary(np.array([0.0, 0.5]))
    assert not is_binary(np.array([]))


def test_the_statistics_need_neither_scipy_nor_statsmodels_at_run_time() -> None:
    code = (
        "import sys\n"
        "import hypermetric.query.inference, hypermetric.query.paired, hypermetric.query.power\n"
        "print(sorted(m for m in ('scipy', 'statsmodels') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
