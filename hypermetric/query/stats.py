"""Statistics with numpy and the standard library only (no SciPy at run time).

- Student's t distribution: the regularized incomplete beta function by its continued
  fraction (Lentz's method, with the log-beta prefactor computed without cancellation for
  large degrees of freedom), its quantile by bisection on that CDF. Agrees with SciPy to
  ~1e-9 relative or better, checked in the tests.
- Confidence intervals of a mean: ``mean ± t(0.975, n-1) · s / sqrt(n)``.
- The paired bootstrap of a mean difference, vectorised: resampling ``n`` values with
  replacement picks each distinct value a multinomial number of times, so when the
  differences take few distinct values (scores that are 0/1 or on a small grid: most
  evals) the bootstrap draws multinomial counts over those values — exactly the bootstrap
  distribution, at a cost independent of ``n`` (up to 512 distinct values). Samples of up
  to 2,000 are resampled index by index. Otherwise the sorted differences are cut into
  equal-count bins: the counts per bin are drawn exactly (multinomial) and the sum inside
  a bin, given its count ``c``, by its normal approximation ``c·mean_bin + sqrt(c)·sd_bin·Z``
  (independent normals, so one normal per resample carries all bins). Sorted bins are
  narrow, so the within-bin part is a small share of the variance and its approximation
  costs little accuracy; the cost is O(resamples x 256) whatever ``n`` is.

The rest of the toolbox for comparing evaluation runs (Miller 2024, "Adding Error Bars to
Evals") lives in :mod:`~hypermetric.query.inference`: cluster-robust errors, McNemar,
Wilson, power, multiple-testing adjustments and the per-example reducers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

__all__ = [
    "BootstrapCI",
    "binomial_cdf",
    "mean_interval",
    "paired_bootstrap",
    "paired_t_pvalue",
    "t_cdf",
    "t_quantile",
]

_EPS = 1e-15
_TINY = 1e-300
#: at most this many distinct differences: the bootstrap is drawn exactly over them
EXACT_CATEGORIES = 512
#: samples up to this size are resampled index by index
DIRECT_MAX_N = 2000
#: at most this many bins in the approximate bootstrap for many distinct differences, of
#: at least MIN_BIN values each (the multinomial draws cost resamples x bins)
BINS = 256
MIN_BIN = 64


def _beta_cf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def _stirling_rest(x: float) -> float:
    """lgamma(x) minus its Stirling approximation, for x >= 100 (error < 1e-17)."""
    return 1.0 / (12.0 * x) - 1.0 / (360.0 * x**3) + 1.0 / (1260.0 * x**5)


def _log_beta_front(a: float, b: float) -> float:
    """lgamma(a + b) - lgamma(a) - lgamma(b), without cancellation when a or b is large."""
    if max(a, b) < 100.0:
        return math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    big, small = (a, b) if a >= b else (b, a)
    ratio = (big - 0.5) * math.log1p(small / big) + small * math.log(big + small) - small
    ratio += _stirling_rest(big + small) - _stirling_rest(big)
    return ratio - math.lgamma(small)


def _betainc(a: float, b: float, x: float, y: float, log_x: float, log_y: float) -> float:
    """I_x(a, b), given ``y = 1 - x`` and both logs computed accurately by the caller."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(_log_beta_front(a, b) + a * log_x + b * log_y)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, y) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    if t == 0.0:
        return 0.5
    ratio = t * t / df
    x, y = 1.0 / (1.0 + ratio), ratio / (1.0 + ratio)
    log_x = -math.log1p(ratio)
    log_y = math.log(ratio) + log_x
    tail = 0.5 * _betainc(df / 2.0, 0.5, x, y, log_x, log_y)
    return 1.0 - tail if t > 0 else tail


def paired_t_pvalue(mean: float, sd: float, n: int) -> float | None:
    """The two-sided p-value of the paired t-test of mean difference 0 (None for n < 2)."""
    if n < 2 or math.isnan(mean) or math.isnan(sd):
        return None
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (sd / math.sqrt(n))
    return min(1.0, 2.0 * t_cdf(-abs(t), n - 1))


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, not {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, max(1.0, NormalDist().inv_cdf(p))
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_interval(
    n: int, mean: float | None, sd: float | None, level: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """(stderr, low, high) of a mean by Student's t; Nones when ``n < 2``."""
    if n < 2 or mean is None or sd is None or math.isnan(sd):
        return None, None, None
    stderr = sd / math.sqrt(n)
    half = t_quantile(0.5 + level / 2.0, n - 1) * stderr
    return stderr, mean - half, mean + half


@dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap interval and how it was drawn (exact, direct or binned)."""

    low: float
    high: float
    method: str


def _exact(d: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray | None:
    values, counts = np.unique(d, return_counts=True)
    if values.size > EXACT_CATEGORIES:
        return None
    draws = rng.multinomial(d.size, counts / d.size, size=resamples)
    return (draws @ values) / d.size


def _direct(d: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    d = np.sort(d)  # the rows' order is not part of the result: same seed, same interval
    out = np.empty(resamples)
    step = max(1, 2_000_000 // d.size)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        out[start:stop] = d[idx].mean(axis=1)
    return out


def _binned(d: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    ordered = np.sort(d)
    bins = max(1, min(BINS, ordered.size // MIN_BIN))
    edges = np.linspace(0, ordered.size, bins + 1).astype(np.int64)
    sizes = np.diff(edges)
    means = np.add.reduceat(ordered, edges[:-1]) / sizes
    squares = np.add.reduceat(ordered * ordered, edges[:-1]) / sizes
    variances = np.maximum(squares - means * means, 0.0)
    counts = rng.multinomial(ordered.size, sizes / ordered.size, size=resamples)
    # the within-bin sums are independent normals, so their total is one normal per resample
    spread = np.sqrt(counts @ variances) * rng.standard_normal(resamples)
    return (counts @ means + spread) / ordered.size


def paired_bootstrap(
    d: np.ndarray, *, resamples: int = 2000, level: float = 0.95, seed: int | list[int] = 0
) -> BootstrapCI | None:
    """A percentile bootstrap CI of ``mean(d)`` (paired differences); None for fewer than 2."""
    if d.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = _exact(d, resamples, rng)
    method = "exact"
    if means is None:
        if d.size <= DIRECT_MAX_N:
            means, method = _direct(d, resamples, rng), "direct"
        else:
            means, method = _binned(d, resamples, rng), "binned"
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return BootstrapCI(low=float(low), high=float(high), method=method)


def binomial_cdf(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p), through the regularized incomplete beta function
    (``I_{1-p}(n-k, k+1)``), accurate for any ``n``."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    x, y = 1.0 - p, p
    return _betainc(float(n - k), float(k + 1), x, y, math.log(x), math.log(y))
