"""The statistics without SciPy, checked against SciPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hypermetric.query.stats import (
    mean_interval,
    paired_bootstrap,
    paired_t_pvalue,
    t_cdf,
    t_quantile,
)

DFS = [1, 2, 3, 4, 7, 10, 29, 100, 999, 10_000, 250_000, 2_000_000]


@pytest.mark.parametrize("df", DFS)
def test_t_cdf_and_quantile_match_scipy(df: int) -> None:
    for t in (-60.0, -8.0, -2.5, -1.0, -0.01, 0.0, 0.4, 1.96, 3.3, 12.0):
        assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-9, abs=1e-14)
    for p in (0.001, 0.025, 0.3, 0.5, 0.8, 0.975, 0.9995):
        assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8, abs=1e-10)


def test_paired_t_pvalue_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    for n, shift in ((5, 0.3), (40, 0.0), (40, 0.05), (3000, 0.01), (100_000, 0.002)):
        a = rng.random(n)
        b = a + shift + rng.normal(0, 0.1, n)
        d = b - a
        ours = paired_t_pvalue(float(d.mean()), float(d.std(ddof=1)), n)
        assert ours == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-7, abs=1e-300)
    assert paired_t_pvalue(0.0, 0.0, 10) == 1.0
    assert paired_t_pvalue(0.1, 0.0, 10) == 0.0
    assert paired_t_pvalue(0.1, 1.0, 1) is None


def test_mean_interval_is_students_t() -> None:
    stderr, low, high = mean_interval(12, 0.5, 0.3)
    expected = stats.t.interval(0.95, 11, loc=0.5, scale=0.3 / np.sqrt(12))
    assert stderr == pytest.approx(0.3 / np.sqrt(12))
    assert (low, high) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert mean_interval(1, 0.5, None) == (None, None, None)


def _reference(d: np.ndarray, resamples: int = 20_000) -> tuple[float, float]:
    res = stats.bootstrap(
        (d,),
        np.mean,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(99),
        batch=500,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@pytest.mark.parametrize(
    ("kind", "n", "method"),
    [
        ("binary", 5000, "exact"),
        ("grid", 3000, "exact"),
        ("normal", 800, "direct"),
        ("skewed", 8000, "binned"),
    ],
)
def test_bootstrap_paths_match_a_plain_bootstrap(kind: str, n: int, method: str) -> None:
    rng = np.random.default_rng(1)
    d = {
        "binary": lambda: (rng.random(n) < 0.3).astype(float) - (rng.random(n) < 0.2),
        "grid": lambda: rng.integers(-10, 11, n) / 10,
        "normal": lambda: rng.normal(0.1, 1.0, n),
        "skewed": lambda: rng.exponential(1.0, n) - 0.9,
    }[kind]()
    ci = paired_bootstrap(d, resamples=8000, seed=3)
    assert ci is not None and ci.method == method
    low, high = _reference(d)
    se = d.std(ddof=1) / np.sqrt(n)
    # Monte Carlo error of a 2.5% quantile: ~0.03 se at 8,000 resamples, ~0.02 at 20,000
    assert ci.low == pytest.approx(low, abs=0.12 * se)
    assert ci.high == pytest.approx(high, abs=0.12 * se)
    assert paired_bootstrap(rng.permutation(d), resamples=8000, seed=3) == ci  # order-free
    assert paired_bootstrap(d[:1]) is None


def test_the_bootstrap_covers_the_truth_at_about_95_percent() -> None:
    rng = np.random.default_rng(12)
    hits = 0
    for trial in range(300):
        d = rng.exponential(1.0, 3000) - 1.0  # true mean 0, skewed, binned path
        ci = paired_bootstrap(d, resamples=500, seed=trial)
        assert ci is not None and ci.method == "binned"
        hits += ci.low <= 0.0 <= ci.high
    assert 0.91 <= hits / 300 <= 0.985  # +-3 binomial sd around 0.95
