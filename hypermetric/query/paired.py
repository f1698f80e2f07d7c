"""The statistics of one (component, metric) of a paired comparison: :class:`MetricDelta`.

:func:`metric_delta` takes the paired values of run A and run B (one per example and call,
each already reduced across its epochs) and, when ``cluster_by`` was given, each pair's
cluster code. What it computes, and why:

- the delta ``mean(B - A)`` with a 95% (``1 - alpha``) interval: without clusters the
  seeded **paired bootstrap**; with clusters the **cluster-robust (CR1) t interval** with
  ``C-1`` degrees of freedom. With clusters a row-level bootstrap would ignore the
  correlation inside a cluster and be too narrow, and a percentile bootstrap over clusters
  undercovers when there are few of them (Cameron, Gelbach & Miller 2008); CR1 with t at
  ``C-1`` degrees of freedom is what Miller (2024) recommends, and its coverage is checked
  by simulation in the tests;
- the p-value of the paired t-test (CR1 t-test with clusters), ``se`` and ``df`` of the
  delta, and ``mde``, the smallest true delta this comparison detects at ``power`` (80%)
  and level ``alpha``: ``(t_{1-alpha/2,df} + t_{power,df}) · se``;
- intervals of ``mean_a`` and ``mean_b``: Wilson score intervals for a 0/1 metric (always:
  Wilson is never worse than the t interval for a proportion and agrees with it for large
  ``n``, so no size cut-off is needed), CR1 t with clusters, Student's t otherwise;
- for a 0/1 metric (both runs' values all 0 or 1), McNemar's exact test on the discordant
  pairs: ``discordant_10`` (A=1, B=0) and ``discordant_01`` (A=0, B=1);
- ``within_var_a``/``within_var_b``: each run's within-example variance across epochs
  (None when every example was scored once).

``p_adjusted`` is filled in by :func:`~hypermetric.query.compare.compare` once every metric
is known (it adjusts across them).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from hypermetric.query.inference import (
    cluster_mean,
    detectable_effect,
    is_binary,
    mcnemar_exact,
    wilson_interval,
)
from hypermetric.query.stats import mean_interval, paired_bootstrap, paired_t_pvalue

__all__ = ["TOLERANCE", "ExampleChange", "MetricDelta", "PairedValues", "metric_delta"]

#: differences smaller than this count as unchanged (float noise, not a change)
TOLERANCE = 1e-12


@dataclass(frozen=True)
class MetricDelta:
    """The paired comparison of one (component, metric); see the module docstring."""

    component: str | None
    metric: str
    #: None when neither run records the metric's direction
    higher_is_better: bool | None
    n: int
    mean_a: float | None
    mean_b: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    #: None for a metric of unknown direction (better and worse are undefined there)
    improved: int | None
    regressed: int | None
    unchanged: int
    errored: int
    only_a: int
    only_b: int
    #: standard error and degrees of freedom of the delta (CR1 and C-1 with clusters)
    se: float | None = None
    df: int | None = None
    #: how many clusters the pairs fall in (None without cluster_by)
    clusters: int | None = None
    #: "bootstrap" (paired, seeded) or "cluster t" (CR1, t with C-1 degrees of freedom)
    ci_method: str = "bootstrap"
    #: smallest true delta detected with the comparison's power at its alpha
    mde: float | None = None
    #: p_value adjusted across the compared metrics (the comparison's ``adjust``)
    p_adjusted: float | None = None
    mean_a_low: float | None = None
    mean_a_high: float | None = None
    mean_b_low: float | None = None
    mean_b_high: float | None = None
    #: "t", "wilson" or "cluster t": how the intervals of mean_a and mean_b were made
    mean_interval: str = "t"
    #: both runs' values are all 0 or 1
    binary: bool = False
    discordant_10: int | None = None
    discordant_01: int | None = None
    mcnemar_p: float | None = None
    within_var_a: float | None = None
    within_var_b: float | None = None

    def regressed_beyond(self, threshold: float = 0.0) -> bool:
        """True when the delta's CI lies wholly on the bad side of ``threshold``.

        Higher-is-better: ``ci_high < -threshold``; lower-is-better: ``ci_low > threshold``;
        never for a metric of unknown direction.
        """
        if self.ci_low is None or self.ci_high is None or self.higher_is_better is None:
            return False
        if self.higher_is_better:
            return self.ci_high < -threshold
        return self.ci_low > threshold

    def improved_beyond(self, threshold: float = 0.0) -> bool:
        """True when the delta's CI lies wholly on the good side of ``threshold``."""
        if self.ci_low is None or self.ci_high is None or self.higher_is_better is None:
            return False
        if self.higher_is_better:
            return self.ci_low > threshold
        return self.ci_high < -threshold

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the adjusted p-value (the raw one if not adjusted) is below ``alpha``."""
        p = self.p_value if self.p_adjusted is None else self.p_adjusted
        return p is not None and p < alpha

    def fails(self, threshold: float = 0.0, alpha: float = 0.05) -> bool:
        """The gate's rule: the CI lies wholly beyond ``threshold`` on the bad side *and*
        the adjusted p-value is below ``alpha`` (so testing many metrics at once does not
        multiply false alarms)."""
        return self.regressed_beyond(threshold) and self.significant(alpha)

    def verdict(self, threshold: float = 0.0, alpha: float = 0.05) -> str:
        """``regressed`` when the gate fails the metric, ``improved`` when its CI lies
        wholly above 0 on the good side and its adjusted p is below ``alpha``, else
        ``same``: the word the comparison tables show."""
        if self.fails(threshold, alpha):
            return "regressed"
        if self.improved_beyond() and self.significant(alpha):
            return "improved"
        return "same"


@dataclass(frozen=True)
class ExampleChange:
    """One paired row whose value changed; ``gain`` is the change in the good direction."""

    component: str | None
    metric: str
    example_id: str
    call_index: int
    value_a: float
    value_b: float
    delta: float
    gain: float


@dataclass(frozen=True)
class PairedValues:
    """One (component, metric)'s pairs and counts, as compare read them."""

    component: str | None
    metric: str
    va: np.ndarray
    vb: np.ndarray
    #: cluster codes of the pairs (None without cluster_by)
    codes: np.ndarray | None
    errored: int
    only_a: int
    only_b: int
    within_var_a: float | None
    within_var_b: float | None


def _mean_bounds(
    values: np.ndarray, codes: np.ndarray | None, binary: bool, level: float
) -> tuple[float | None, float | None, str]:
    if codes is not None:
        clustered = cluster_mean(values, codes, level)
        if clustered is None:
            return None, None, "cluster t"
        return clustered.ci_low, clustered.ci_high, "cluster t"
    if binary:
        if values.size < 2:
            return None, None, "wilson"
        low, high = wilson_interval(float(values.sum()), int(values.size), level)
        return low, high, "wilson"
    sd = float(values.std(ddof=1)) if values.size > 1 else None
    _, low, high = mean_interval(int(values.size), float(values.mean()), sd, level)
    return low, high, "t"


def _delta_test(
    p: PairedValues, d: np.ndarray, resamples: int, seed: int, level: float
) -> dict[str, Any]:
    n = int(d.size)
    if p.codes is not None:
        c = cluster_mean(d, p.codes, level)
        if c is None:
            return {"clusters": int(np.unique(p.codes).size), "ci_method": "cluster t"}
        return {
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "p_value": c.p_value,
            "se": c.se,
            "df": c.df,
            "clusters": c.clusters,
            "ci_method": "cluster t",
        }
    key = zlib.crc32(f"{p.component}\x00{p.metric}".encode())
    boot = paired_bootstrap(d, resamples=resamples, level=level, seed=[seed, key])
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    return {
        "ci_low": boot.low if boot else None,
        "ci_high": boot.high if boot else None,
        "p_value": paired_t_pvalue(mean, sd, n) if n else None,
        "se": sd / math.sqrt(n) if n > 1 else None,
        "df": n - 1 if n > 1 else None,
    }


def _mcnemar(va: np.ndarray, vb: np.ndarray) -> dict[str, Any]:
    ten = int(((va == 1.0) & (vb == 0.0)).sum())
    one = int(((va == 0.0) & (vb == 1.0)).sum())
    return {"discordant_10": ten, "discordant_01": one, "mcnemar_p": mcnemar_exact(ten, one)}


def metric_delta(
    p: PairedValues,
    up: bool | None,
    *,
    resamples: int,
    seed: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> MetricDelta:
    """The statistics of one (component, metric) (module docstring)."""
    va, vb = p.va, p.vb
    d = vb - va
    n = int(d.size)
    level = 1.0 - alpha
    gain = None if up is None else d if up else -d
    binary = is_binary(va) and is_binary(vb)
    test = _delta_test(p, d, resamples, seed, level)
    se, df = test.get("se"), test.get("df")
    a_low, a_high, how = _mean_bounds(va, p.codes, binary, level)
    b_low, b_high, _ = _mean_bounds(vb, p.codes, binary, level)
    return MetricDelta(
        component=p.component,
        metric=p.metric,
        higher_is_better=up,
        n=n,
        mean_a=float(va.mean()) if n else None,
        mean_b=float(vb.mean()) if n else None,
        delta=float(d.mean()) if n else None,
        ci_low=test.get("ci_low"),
        ci_high=test.get("ci_high"),
        p_value=test.get("p_value"),
        improved=None if gain is None else int((gain > TOLERANCE).sum()),
        regressed=None if gain is None else int((gain < -TOLERANCE).sum()),
        unchanged=int((np.abs(d) <= TOLERANCE).sum()),
        errored=p.errored,
        only_a=p.only_a,
        only_b=p.only_b,
        se=se,
        df=df,
        clusters=test.get("clusters"),
        ci_method=test.get("ci_method", "bootstrap"),
        mde=detectable_effect(se, df, alpha, power) if se is not None and df else None,
        mean_a_low=a_low,
        mean_a_high=a_high,
        mean_b_low=b_low,
        mean_b_high=b_high,
        mean_interval=how,
        binary=binary,
        **(_mcnemar(va, vb) if binary else {}),
        within_var_a=p.within_var_a,
        within_var_b=p.within_var_b,
    )
