"""A metric across an evaluation's runs, oldest first, with shifts marked.

For each (component, metric), each successful run gets its mean, its own 95% interval
(Student's t) and the interval its mean was *expected* in, from the previous runs. A run
is marked when its mean falls outside that expected interval.

**The previous runs' interval.** Take the previous ``window`` (default 7) successful runs
that have values for the metric, K of them, with sizes ``n_i``, means ``m_i`` and
variances ``v_i``. Then

- centre ``M``: their pooled mean (all their values together);
- half-width ``1.96 · sqrt(SE_now² + SE_prev² + τ²·(1 + 1/K))``, where ``SE_now`` is this
  run's standard error, ``SE_prev`` the pooled mean's (within-run variance over all the
  previous values), and ``τ²`` the night-to-night variance of the true mean: the variance
  of the ``m_i`` beyond what their own sampling noise explains (0 when K < 2);
- but never narrower than the prediction interval of the nights' means themselves,
  ``t(0.975, K-1) · sqrt(s_m²·(1 + 1/K))`` with ``s_m²`` the sample variance of the ``m_i``:
  when the wobble between nights is of the order of their noise, ``τ²`` estimated from K
  nights is too uncertain for a normal quantile, and the first form alone marked 7-10% of
  nights of a metric whose true mean wobbles by one standard error.

Calibrated by simulation (``tests/query/test_history_calibration.py``): a steady metric is
marked on 2-3% of nights, one that wobbles between nights on under 5%, and a move of five
standard errors on more than 95%; over a year of nights (365, several seeds) a steady metric
stays under 5% too, also with clustered examples.

**Epochs and clusters.** Each run's values are first reduced per example across epochs
(``reduce``, as in compare), so ``n`` counts examples. With ``cluster_by=FIELD`` a run's
own noise (``SE_now`` and each previous run's part in ``SE_prev`` and in the noise ``τ²`` is
measured against) is its cluster-robust (CR1) squared standard error instead of ``s²/n``:
examples that share a document move together, and ``s²/n`` would make the interval too
narrow and mark steady nights (the tests show it). The pooled previous mean's variance is
then ``Σ n_i² SE_i² / (Σ n_i)²``, the variance of that weighted mean of independent runs.

This is what someone watching a nightly metric wants from "did tonight move?": a 5%-level
test of tonight against the last week taken together. The interval of the pooled previous
mean alone would be far too narrow (it ignores tonight's own noise and the usual wobble
between nights, and would flag a steady metric on about half the nights); the previous
run alone would make one odd night the baseline.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb

from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.reading import successful_runs
from hypermetric.catalog.records import RunRecord
from hypermetric.config import Settings, get_settings
from hypermetric.query.compare import higher_is_better
from hypermetric.query.connection import open_connection, query_error
from hypermetric.query.inference import ClusteredMean
from hypermetric.query.reduce import (
    Reducer,
    attach_labels,
    cluster_means,
    parse_reducer,
    reduce_scores,
    views_for,
)
from hypermetric.query.sources import metric_condition
from hypermetric.query.stats import mean_interval, t_quantile

__all__ = ["HistoryPoint", "RunStat", "expected_interval", "history", "history_of", "series_on"]

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class HistoryPoint:
    """One run's value of one (component, metric), and whether it moved.

    ``expected_low``/``expected_high`` is the previous runs' interval (None for the first
    run); ``shift`` is ``"up"``, ``"down"`` or ``""``.
    """

    run_id: int
    logical_date: datetime
    version: str | None
    component: str | None
    metric: str
    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    expected_low: float | None
    expected_high: float | None
    baseline_runs: int
    shift: str
    #: the metric's direction as the newest run that records it says (None: unknown)
    higher_is_better: bool | None = None

    @property
    def shifted(self) -> bool:
        """True when the mean fell outside the previous runs' interval."""
        return bool(self.shift)


@dataclass(frozen=True)
class RunStat:
    """A run's count, mean and sample variance (0 when n < 2) of one metric; with clusters
    also its CR1 squared standard error ``se2`` and its number of clusters."""

    n: int
    mean: float
    var: float  # sample variance; 0 when n < 2
    se2: float | None = None
    clusters: int | None = None

    @property
    def noise(self) -> float:
        """The squared standard error of the run's mean: CR1 with clusters, else s²/n."""
        if self.se2 is not None:
            return self.se2
        return self.var / self.n if self.n > 0 else 0.0


def _previous_noise(previous: Sequence[RunStat], total: int) -> float:
    """The squared standard error of the previous runs' pooled mean."""
    if any(p.se2 is not None for p in previous):
        return sum(p.n * p.n * p.noise for p in previous) / (total * total)
    dof = total - len(previous)
    within = sum((p.n - 1) * p.var for p in previous) / dof if dof > 0 else 0.0
    return within / total


def expected_interval(previous: Sequence[RunStat], now: RunStat) -> tuple[float, float]:
    """The interval ``now.mean`` is expected in given ``previous`` runs (module docstring)."""
    total = sum(p.n for p in previous)
    centre = sum(p.n * p.mean for p in previous) / total
    se_prev2 = _previous_noise(previous, total)
    se_now2 = now.noise
    tau2 = spread = 0.0
    k = len(previous)
    if k >= 2:
        grand = sum(p.mean for p in previous) / k
        spread = sum((p.mean - grand) ** 2 for p in previous) / (k - 1)
        noise = sum(p.noise for p in previous) / k
        tau2 = max(0.0, spread - noise)
    half = _Z95 * math.sqrt(se_now2 + se_prev2 + tau2 * (1.0 + 1.0 / k))
    if k >= 2:
        # the nights' own spread, as a prediction interval with K-1 degrees of freedom:
        # when the wobble between nights is of the order of their noise, tau2 estimated from
        # K nights is too uncertain for a normal quantile
        half = max(half, t_quantile(0.975, k - 1) * math.sqrt(spread * (1.0 + 1.0 / k)))
    return centre - half, centre + half


# ordered aggregates: the same rows always give the same bits (a hash aggregate's order
# varies from one query to the next, and the web view shows exactly what history computes)
_STATS_SQL = """
SELECT run_id, component, metric, count(value) AS n,
       avg(value ORDER BY example_id, call_index) AS mean,
       coalesce(var_samp(value ORDER BY example_id, call_index), 0) AS var
FROM reduced GROUP BY run_id, component, metric
"""

Series = dict[tuple[str | None, str], dict[int, RunStat]]


def series_on(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[int],
    *,
    metric: str | None = None,
    reduce: str | Reducer | None = None,
    cluster_by: str | None = None,
) -> Series:
    """Each (component, metric)'s :class:`RunStat` by run, from the ``scores`` view of
    ``con`` (and its ``examples`` view with ``cluster_by``): each example's epochs reduced
    first, clustered errors with ``cluster_by`` (module docstring)."""
    where = f"run_id IN ({', '.join(str(int(r)) for r in run_ids) or 'NULL'})"
    if metric is not None:
        where += f" AND {metric_condition(metric)}"
    try:
        reduce_scores(con, parse_reducer(reduce), where=where)
        rows = con.sql(_STATS_SQL).fetchall()
        clustered = _clustered(con, cluster_by, run_ids) if cluster_by else {}
    except duckdb.Error as exc:
        raise query_error(exc) from None
    out: Series = defaultdict(dict)
    for run_id, component, name, n, mean, var in rows:
        if n:
            c = clustered.get((run_id, component, name))
            out[(component, name)][run_id] = RunStat(
                int(n),
                float(mean),
                float(var or 0.0),
                se2=c.se**2 if c else None,
                clusters=c.clusters if c else None,
            )
    return out


def _clustered(
    con: duckdb.DuckDBPyConnection, field: str, run_ids: Sequence[int]
) -> dict[Hashable, ClusteredMean | None]:
    """Each (run, component, metric)'s CR1 clustered mean, labels from the run's own
    examples."""
    attach_labels(con, field, run_ids)
    label = "coalesce(l.label, chr(0) || r.example_id)"
    query = f"""SELECT r.run_id, r.component, r.metric, r.value, {label} AS label
        FROM reduced r LEFT JOIN labels l ON l.run_id = r.run_id AND l.example_id = r.example_id
        WHERE r.value IS NOT NULL ORDER BY r.run_id, r.component, r.metric"""
    return cluster_means(con, query, ("run_id", "component", "metric"))


def _series(
    settings: Settings,
    run_ids: list[int],
    metric: str | None,
    reduce: str | Reducer | None,
    cluster_by: str | None,
) -> Series:
    con = open_connection(settings, run_ids=run_ids, views=views_for(cluster_by))
    try:
        return series_on(con, run_ids, metric=metric, reduce=reduce, cluster_by=cluster_by)
    finally:
        con.close()


def _points(
    runs: Sequence[RunRecord],
    key: tuple[str | None, str],
    stats: dict[int, RunStat],
    window: int,
) -> Iterator[HistoryPoint]:
    up = higher_is_better(key[1], *reversed(runs))
    previous: list[RunStat] = []
    for run in runs:
        stat = stats.get(run.id)
        if stat is None:
            continue
        low = high = None
        shift = ""
        if previous:
            low, high = expected_interval(previous[-window:], stat)
            shift = "up" if stat.mean > high else "down" if stat.mean < low else ""
        ci_low, ci_high = _own_interval(stat)
        yield HistoryPoint(
            run_id=run.id,
            logical_date=run.logical_date,
            version=run.version_label,
            component=key[0],
            metric=key[1],
            n=stat.n,
            mean=stat.mean,
            ci_low=ci_low,
            ci_high=ci_high,
            expected_low=low,
            expected_high=high,
            baseline_runs=len(previous[-window:]),
            shift=shift,
            higher_is_better=up,
        )
        previous.append(stat)


def _own_interval(stat: RunStat) -> tuple[float | None, float | None]:
    """The run's 95% interval: CR1 t at C-1 df with clusters, Student's t otherwise."""
    if stat.se2 is not None and stat.clusters and stat.clusters > 1:
        half = t_quantile(0.975, stat.clusters - 1) * math.sqrt(stat.se2)
        return stat.mean - half, stat.mean + half
    sd = math.sqrt(stat.var) if stat.n > 1 else None
    _, low, high = mean_interval(stat.n, stat.mean, sd)
    return low, high


def history(
    name: str,
    *,
    metric: str | None = None,
    window: int = 7,
    reduce: str | Reducer | None = None,
    cluster_by: str | None = None,
    settings: Settings | None = None,
) -> list[HistoryPoint]:
    """Every successful run of evaluation ``name``, per (component, metric), oldest first.

    ``metric`` keeps one metric (and its ``metric.key`` parts); ``window`` is how many
    previous runs form the expected interval; ``reduce`` reduces each example's epochs
    (``mean``, ``majority``, ``pass_at_k:K``); ``cluster_by`` names the example field whose
    values cluster a run's errors (see the module docstring).
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    settings = settings or get_settings()
    db = database(settings)
    get_evaluation(db, name)
    runs = successful_runs(db, name)
    ids = [r.id for r in runs]
    series = _series(settings, ids, metric, reduce, cluster_by) if runs else {}
    return history_of(runs, series, window=window)


def history_of(
    runs: Sequence[RunRecord],
    series: Mapping[tuple[str | None, str], Mapping[int, RunStat]],
    *,
    window: int = 7,
) -> list[HistoryPoint]:
    """What :func:`history` returns, from stats already at hand: ``runs`` (successful,
    oldest first) and each (component, metric)'s :class:`RunStat` by run id (runs without
    values left out). For a caller that keeps the stats of runs that cannot change."""
    points: list[HistoryPoint] = []
    for key, stats in sorted(series.items(), key=lambda kv: str(kv[0])):
        points.extend(_points(runs, key, dict(stats), window))
    return points
