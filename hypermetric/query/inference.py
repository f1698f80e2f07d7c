"""Error bars for evaluation runs beyond a plain mean: numpy and the standard library only.

Each formula is checked against an independent reference in ``tests/query/test_inference.py``
(statsmodels, SciPy, brute-force enumeration).

- **Cluster-robust errors** (Miller 2024, "Adding Error Bars to Evals"): examples that share
  a document, a topic or a template are not independent, and the plain ``s/sqrt(n)``
  understates the error. :func:`cluster_mean` is the CR1 sandwich estimator of a mean, the
  one ``statsmodels`` OLS on a constant with ``cov_type="cluster"`` computes by default:
  ``Var = C/(C-1) · (N-1)/(N-K) · Σ_g (Σ_{i∈g} (x_i - x̄))² / N²`` with ``K = 1`` regressor,
  so the ``(N-1)/(N-K)`` factor is 1 and only ``C/(C-1)`` is left; intervals and p-values
  use Student's t with ``C-1`` degrees of freedom. A paired delta is the mean of the
  per-example differences, so the same function serves both.
- **Binary metrics**: McNemar's exact test (:func:`mcnemar_exact`: two-sided, twice the
  binomial tail of the smaller discordant count, capped at 1, as ``statsmodels``' exact
  ``mcnemar`` does) and Wilson score intervals (:func:`wilson_interval`).
- **Power**: :func:`detectable_effect` (the minimum detectable effect
  ``(t_{1-alpha/2} + t_{power}) · SE``) and :func:`examples_needed` (the smallest ``n`` whose
  MDE is at most a given delta). This is the usual central-t approximation of the
  noncentral-t power of a t-test; it is within 1% of the exact answer from 30 examples on.
- **Many metrics**: Holm's step-down and Benjamini-Hochberg's step-up adjustments
  (:func:`adjust_pvalues`).
- **Epochs**: the unbiased pass@k estimator from ``n`` samples with ``c`` correct
  (:func:`pass_at_k`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from hypermetric.query.stats import binomial_cdf, t_cdf, t_quantile

__all__ = [
    "ADJUSTMENTS",
    "ClusteredMean",
    "adjust_pvalues",
    "cluster_codes",
    "cluster_mean",
    "cluster_means_by",
    "detectable_effect",
    "examples_needed",
    "is_binary",
    "mcnemar_exact",
    "pass_at_k",
    "wilson_interval",
]

#: the multiple-testing adjustments compare knows
ADJUSTMENTS = ("holm", "bh", "none")


@dataclass(frozen=True)
class ClusteredMean:
    """A mean with its cluster-robust (CR1) standard error, ``C-1`` degrees of freedom,
    a ``level`` interval and the two-sided p-value of "the true mean is 0"."""

    n: int
    clusters: int
    mean: float
    se: float
    df: int
    ci_low: float
    ci_high: float
    p_value: float


def cluster_codes(labels: Sequence[object] | np.ndarray) -> np.ndarray:
    """Integer codes 0..C-1 of ``labels`` (any hashable values)."""
    _, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    return np.asarray(codes, dtype=np.int64)


def cluster_mean(
    values: np.ndarray, clusters: np.ndarray, level: float = 0.95
) -> ClusteredMean | None:
    """The mean of ``values`` with a CR1 cluster-robust error (``clusters``: integer codes
    from :func:`cluster_codes`); None with fewer than two clusters (no variance)."""
    n = int(values.size)
    codes = np.unique(clusters, return_inverse=True)[1] if n else clusters
    count = int(codes.max()) + 1 if n else 0
    if count < 2:
        return None
    mean = float(values.mean())
    sums = np.bincount(codes, weights=values - mean, minlength=count)
    var = count / (count - 1) * float(sums @ sums) / (n * n)
    se = math.sqrt(var)
    df = count - 1
    half = t_quantile(0.5 + level / 2.0, df) * se
    p = min(1.0, 2.0 * t_cdf(-abs(mean / se), df)) if se > 0.0 else float(mean == 0.0)
    return ClusteredMean(n, count, mean, se, df, mean - half, mean + half, p)


def cluster_means_by(
    keys: Sequence[Hashable], values: np.ndarray, codes: np.ndarray
) -> dict[Hashable, ClusteredMean | None]:
    """:func:`cluster_mean` of each run of equal ``keys`` (rows sorted by key)."""
    out: dict[Hashable, ClusteredMean | None] = {}
    start = 0
    while start < len(keys):
        stop = start
        while stop < len(keys) and keys[stop] == keys[start]:
            stop += 1
        out[keys[start]] = cluster_mean(values[start:stop], codes[start:stop])
        start = stop
    return out


def is_binary(values: np.ndarray) -> bool:
    """True when every value is 0 or 1 (and there is at least one)."""
    return bool(values.size) and bool(np.all((values == 0.0) | (values == 1.0)))


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value from the discordant counts ``b`` and ``c``: twice
    the Binomial(b+c, 1/2) tail of ``min(b, c)``, capped at 1 (1 when there are none)."""
    return min(1.0, 2.0 * binomial_cdf(min(b, c), b + c, 0.5))


def wilson_interval(
    successes: float, n: int, level: float = 0.95
) -> tuple[float, float] | tuple[None, None]:
    """The Wilson score interval of a proportion (Nones when ``n`` is 0)."""
    if n <= 0:
        return None, None
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def detectable_effect(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The minimum detectable effect of a two-sided level-``alpha`` t-test with standard
    error ``se``: ``(t_{1-alpha/2, df} + t_{power, df}) · se``."""
    _check_levels(alpha, power)
    return (t_quantile(1.0 - alpha / 2.0, df) + t_quantile(power, df)) * se


def examples_needed(
    variance: float,
    delta: float,
    alpha: float = 0.05,
    power: float = 0.8,
    cluster_size: float = 1.0,
) -> int:
    """The fewest examples whose paired test, at per-example variance ``variance``, detects
    ``delta`` with probability ``power`` (the MDE at ``n`` is at most ``delta``).

    With clusters of ``cluster_size`` examples on average, ``variance`` is the design
    effect times the per-example variance, and the test has ``n / cluster_size - 1``
    degrees of freedom (at least two clusters)."""
    _check_levels(alpha, power)
    if delta <= 0:
        raise ValueError(f"delta must be > 0, not {delta}")
    if cluster_size < 1.0:
        raise ValueError(f"cluster_size must be at least 1, not {cluster_size}")
    smallest = max(2, math.ceil(2.0 * cluster_size))  # two clusters
    if variance <= 0:
        return smallest

    def mde(n: int) -> float:
        df = n / cluster_size - 1.0
        return detectable_effect(math.sqrt(variance / n), df, alpha, power)

    z = NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)
    hi = max(smallest, math.ceil(variance * (z / delta) ** 2))
    while mde(hi) > delta:
        hi *= 2
    lo = smallest - 1  # mde(lo) > delta, or lo is below the smallest valid n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid >= smallest and mde(mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def _check_levels(alpha: float, power: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be between 0 and 1, not {power}")


def adjust_pvalues(pvalues: Sequence[float | None], method: str) -> list[float | None]:
    """``pvalues`` adjusted for testing them together: ``holm`` (family-wise error, any
    dependence), ``bh`` (Benjamini-Hochberg false discovery rate) or ``none``. Nones stay
    None and are not part of the family."""
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {method!r}; use one of {', '.join(ADJUSTMENTS)}")
    present = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = list(pvalues)
    if method == "none" or not present:
        return out
    p = np.array([pvalues[i] for i in present], dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    adjusted = np.minimum(adjusted, 1.0)
    for rank, index in enumerate(order):
        out[present[index]] = float(adjusted[rank])
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k from ``n`` samples of which ``c`` are correct:
    ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021), as a stable product."""
    if not 0 < k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples, not n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))
