"""How many examples (and epochs) an evaluation needs to detect a given change.

``hypermetric power EVAL --metric M --delta D`` reads the evaluation's successful runs and
answers with the per-example variances they show (each example's epochs reduced to their
mean first, as compare does):

- ``within_var`` (``W``): the within-example variance across epochs, pooled over the runs
  (None when every example was scored once: then more epochs cannot be judged and are
  assumed to help nothing, the conservative answer);
- ``between_var``: the variance of the examples' true values, ``S² - W/m`` with ``S²`` the
  pooled variance of the per-example means and ``m`` their epochs;
- the **paired variance** of one example's difference between two versions, which is what
  a paired comparison's error is made of. With two versions in the history (the newest
  run of each of the two newest version labels), it is measured: the variance of their
  per-example differences, less the epochs' share ``W_a/m_a + W_b/m_b``, plus ``2W/K`` at
  ``K`` epochs. With one version only it is ``2 · (between_var + W/K)``: what two
  independent draws would give, an upper bound for a pairing that correlates positively
  (versions of one system on one dataset nearly always do).

More epochs shrink only the within part: ``V(K) = V_between + 2W/K``. The examples needed
at ``K`` epochs are the fewest ``n`` with ``(t_{1-alpha/2} + t_{power}) · sqrt(V(K)/n) <= D``
(:func:`~hypermetric.query.inference.examples_needed`), and ``mde_now`` is the smallest delta
the current suite (its size and epochs) detects.

**Clusters.** Examples that share a document, a conversation or a template are not
independent: with ``cluster_by=FIELD`` (an example field, as in compare) the **design effect**
``D`` is measured on the same values as the paired variance (the two versions' per-example
differences, else the newest run's values): the CR1 clustered variance of their mean over
``s²/n``, at least 1 (a smaller estimate is taken for noise). The variance of a mean of ``n``
examples is then ``D · V(K) / n``, its test has ``C - 1`` degrees of freedom for ``C``
clusters, and the examples needed come in clusters of today's average size, whose count
each plan gives. Without it, clustered examples make every answer too optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import duckdb

from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.reading import successful_runs
from hypermetric.catalog.records import RunRecord
from hypermetric.config import Settings, get_settings
from hypermetric.errors import QueryError
from hypermetric.query.connection import open_connection, query_error
from hypermetric.query.inference import ClusteredMean, detectable_effect, examples_needed
from hypermetric.query.reduce import (
    Reducer,
    attach_labels,
    cluster_means,
    label_sql,
    reduce_scores,
    views_for,
)
from hypermetric.query.sources import quote_literal

__all__ = ["PowerEstimate", "PowerPlan", "power", "power_on"]

#: the epochs shown when the history tells the within-example variance and none were asked
DEFAULT_EPOCHS = (1, 2, 4, 8)


@dataclass(frozen=True)
class PowerPlan:
    """At ``epochs`` epochs an example: its paired variance and the examples needed."""

    epochs: int
    paired_var: float
    examples: int
    #: with clusters: the clusters those examples come in (of today's average size)
    clusters: int | None = None


@dataclass(frozen=True)
class PowerEstimate:
    """The power analysis of one (component, metric) of an evaluation (module docstring)."""

    evaluation: str
    component: str | None
    metric: str
    delta: float
    alpha: float
    power: float
    runs: int
    examples_now: int
    epochs_now: int
    between_var: float
    within_var: float | None
    #: "versions" (measured between two versions) or "conservative" (2 x one version's)
    source: str
    versions: tuple[str, str] | None
    mde_now: float | None
    plans: tuple[PowerPlan, ...]
    #: with ``cluster_by``: the field, today's clusters and the measured design effect
    cluster_by: str | None = None
    clusters_now: int | None = None
    cluster_size: float | None = None
    design_effect: float | None = None


@dataclass(frozen=True)
class _Clustering:
    """A component's design effect, measured on ``n`` values in ``clusters`` clusters."""

    design_effect: float
    clusters: int
    n: int

    @property
    def size(self) -> float:
        """The average number of examples a cluster."""
        return self.n / self.clusters


@dataclass(frozen=True)
class _RunVar:
    n: int
    var: float
    within: float | None
    epochs: float


# ordered aggregates: the same rows give the same bits, whatever order a scan yields them in
_RUN_SQL = """
SELECT run_id, component, count(value),
       coalesce(var_samp(value ORDER BY example_id, call_index), 0),
       avg(within_var ORDER BY example_id, call_index), avg(epochs)
FROM reduced WHERE value IS NOT NULL GROUP BY run_id, component
"""

#: the values the design effect is measured on, each with its cluster label (from the newer
#: run's examples): the two versions' differences, else the newest run's values
_CLUSTER_PAIRED_SQL = """
SELECT a.component, b.value - a.value AS value, {label} AS label
FROM reduced a JOIN reduced b
  ON a.component IS NOT DISTINCT FROM b.component AND a.example_id = b.example_id
 AND a.call_index = b.call_index
WHERE a.run_id = {a} AND b.run_id = {b} AND a.value IS NOT NULL AND b.value IS NOT NULL
ORDER BY a.component NULLS FIRST
"""

_CLUSTER_ONE_SQL = """
SELECT component, value, {label} AS label FROM reduced
WHERE run_id = {run} AND value IS NOT NULL ORDER BY component NULLS FIRST
"""

_PAIRED_SQL = """
SELECT a.component, b.value - a.value, coalesce(l.label, chr(0) || b.example_id)
FROM reduced a JOIN reduced b
  ON a.component IS NOT DISTINCT FROM b.component AND a.example_id = b.example_id
 AND a.call_index = b.call_index
LEFT JOIN labels l ON l.run_id = b.run_id AND l.example_id = b.example_id
WHERE a.run_id = {a} AND b.run_id = {b} AND a.value IS NOT NULL AND b.value IS NOT NULL
ORDER BY a.component NULLS FIRST, b.example_id, b.call_index
"""

_CLUSTER_ONE_SQL = """
SELECT r.component, r.value, coalesce(l.label, chr(0) || r.example_id)
FROM reduced r LEFT JOIN labels l ON l.run_id = r.run_id AND l.example_id = r.example_id
WHERE r.run_id = {run} AND r.value IS NOT NULL
ORDER BY r.component NULLS FIRST, r.example_id, r.call_index
"""

_PAIRED_SQL = """
SELECT a.component, var_samp(b.value - a.value ORDER BY a.example_id, a.call_index)
FROM reduced a JOIN reduced b
  ON a.component IS NOT DISTINCT FROM b.component AND a.example_id = b.example_id
 AND a.call_index = b.call_index
WHERE a.run_id = {a} AND b.run_id = {b} AND a.value IS NOT NULL AND b.value IS NOT NULL
GROUP BY a.component
"""


def power(
    name: str,
    *,
    metric: str,
    delta: float,
    alpha: float = 0.05,
    power: float = 0.8,
    epochs: int | None = None,
    cluster_by: str | None = None,
    settings: Settings | None = None,
) -> list[PowerEstimate]:
    """How many examples (at ``epochs`` epochs each, or at 1, 2, 4, 8 and today's) the
    evaluation ``name`` needs for its paired comparison to detect ``delta`` in ``metric``
    with probability ``power`` at two-sided level ``alpha``; one estimate a component
    that records the metric. ``cluster_by``: an example field whose equal values make a
    cluster (module docstring)."""
    _check(delta, alpha, power, epochs)
    settings = settings or get_settings()
    db = database(settings)
    get_evaluation(db, name)
    runs = successful_runs(db, name)
    if not runs:
        raise QueryError(f"evaluation {name!r} has no successful runs; run it first")
    con = open_connection(settings, run_ids=[r.id for r in runs], views=views_for(cluster_by))
    try:
        return power_on(
            con,
            runs,
            metric=metric,
            delta=delta,
            alpha=alpha,
            power=power,
            epochs=epochs,
            cluster_by=cluster_by,
        )
    finally:
        con.close()


def _check(delta: float, alpha: float, power: float, epochs: int | None) -> None:
    if not delta > 0:
        raise QueryError(f"--delta must be > 0 (the change to detect, e.g. 0.02), not {delta}")
    if not 0.0 < alpha < 0.5:
        raise QueryError(f"--alpha must be between 0 and 0.5 (e.g. 0.05), not {alpha}")
    if not 0.0 < power < 1.0:
        raise QueryError(f"--power must be between 0 and 1 (e.g. 0.8), not {power}")
    if epochs is not None and epochs < 1:
        raise QueryError(f"--epochs must be at least 1, not {epochs}")


def power_on(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[RunRecord],
    *,
    metric: str,
    delta: float,
    alpha: float = 0.05,
    power: float = 0.8,
    epochs: int | None = None,
    cluster_by: str | None = None,
) -> list[PowerEstimate]:
    """:func:`power` on a connection whose ``scores`` view holds ``runs`` (successful,
    oldest first), and with ``cluster_by`` whose ``examples`` view holds their examples."""
    _check(delta, alpha, power, epochs)
    if not runs:
        raise QueryError("no successful runs to estimate from; run the evaluation first")
    ids = ", ".join(str(int(r.id)) for r in runs)
    try:
        reduce_scores(
            con, Reducer(), where=f"run_id IN ({ids}) AND metric = {quote_literal(metric)}"
        )
        per_run = con.sql(_RUN_SQL).fetchall()
        if not per_run:
            raise _unknown_metric(con, runs, metric)
        pair = _two_versions(runs)
        paired = (
            dict(con.sql(_PAIRED_SQL.format(a=pair[0].id, b=pair[1].id)).fetchall()) if pair else {}
        )
        clustering = _clustering(con, cluster_by, runs, pair) if cluster_by else {}
    except duckdb.Error as exc:
        raise query_error(exc) from None
    stats: dict[str | None, dict[int, _RunVar]] = {}
    for run_id, component, n, var, within, eps in per_run:
        stats.setdefault(component, {})[run_id] = _RunVar(
            int(n), float(var), None if within is None else float(within), float(eps)
        )
    settings = (delta, alpha, power, epochs)

    def _plain_var(component: str | None, by_run: dict[int, _RunVar]) -> float | None:
        """The sample variance of the values the design effect is measured on."""
        if pair:
            return paired.get(component)
        newest = by_run.get(runs[-1].id)
        return newest.var if newest else None

    return [
        _estimate(
            runs,
            component,
            metric,
            by_run,
            _split(by_run, pair, paired.get(component)),
            settings,
            cluster_by,
            _design_effect(clustering.get(component), _plain_var(component, by_run)),
        )
        for component, by_run in sorted(stats.items(), key=lambda kv: str(kv[0]))
    ]


def _clustering(
    con: duckdb.DuckDBPyConnection,
    field: str,
    runs: Sequence[RunRecord],
    pair: tuple[RunRecord, RunRecord] | None,
) -> dict[str | None, ClusteredMean | None]:
    """Each component's CR1 clustered mean of the values its paired variance comes from
    (module docstring); an example without ``field`` is a cluster of its own."""
    if pair:
        attach_labels(con, field, [pair[1].id])
        label = label_sql("b.example_id", pair[1].id)
        query = _CLUSTER_PAIRED_SQL.format(label=label, a=pair[0].id, b=pair[1].id)
    else:
        attach_labels(con, field, [runs[-1].id])
        label = label_sql("example_id", runs[-1].id)
        query = _CLUSTER_ONE_SQL.format(label=label, run=runs[-1].id)
    means = cluster_means(con, query, ["component"])  # keyed by (component,)
    return {cast(tuple, key)[0]: found for key, found in means.items()}


def _design_effect(clustered: ClusteredMean | None, plain_var: float | None) -> _Clustering | None:
    """The design effect of values whose plain sample variance is ``plain_var``: their
    clustered squared error over ``s²/n``, at least 1 (None: fewer than two clusters)."""
    if clustered is None:
        return None
    plain = (plain_var or 0.0) / clustered.n
    effect = clustered.se**2 / plain if plain > 0.0 else 1.0
    return _Clustering(max(1.0, effect), clustered.clusters, clustered.n)


def _unknown_metric(
    con: duckdb.DuckDBPyConnection, runs: Sequence[RunRecord], metric: str
) -> QueryError:
    ids = ", ".join(str(int(r.id)) for r in runs)
    query = f"SELECT DISTINCT metric FROM scores WHERE run_id IN ({ids}) ORDER BY metric"
    names = [m for (m,) in con.sql(query).fetchall()]
    return QueryError(
        f"evaluation {runs[0].evaluation!r} has no values of metric {metric!r}; "
        f"its metrics: {', '.join(names) or 'none'}"
    )


def _two_versions(runs: Sequence[RunRecord]) -> tuple[RunRecord, RunRecord] | None:
    """The newest runs of the two newest version labels (older version first)."""
    newest: dict[str, RunRecord] = {}
    for run in runs:  # oldest first: later runs replace earlier ones
        if run.version_label is not None:
            newest.pop(run.version_label, None)
            newest[run.version_label] = run
    if len(newest) < 2:
        return None
    older, latest = list(newest.values())[-2:]
    return older, latest


def _pooled_within(by_run: dict[int, _RunVar]) -> float | None:
    known = [v for v in by_run.values() if v.within is not None]
    if not known:
        return None
    return sum(v.n * (v.within or 0.0) for v in known) / sum(v.n for v in known)


@dataclass(frozen=True)
class _Split:
    """A (component, metric)'s variances: between examples, within (None: one epoch), and
    the part of the paired variance that epochs do not shrink."""

    between: float
    within: float | None
    fixed: float
    source: str
    versions: tuple[str, str] | None

    def paired(self, epochs: int) -> float:
        """The paired variance of one example at ``epochs`` epochs."""
        return self.fixed + 2.0 * (self.within or 0.0) / epochs


def _split(
    by_run: dict[int, _RunVar], pair: tuple[RunRecord, RunRecord] | None, paired_var: float | None
) -> _Split:
    within = _pooled_within(by_run)
    dof = sum(v.n - 1 for v in by_run.values())
    spread = sum((v.n - 1) * v.var for v in by_run.values()) / dof if dof > 0 else 0.0
    mean_epochs = sum(v.n * v.epochs for v in by_run.values()) / sum(v.n for v in by_run.values())
    between = max(0.0, spread - (within or 0.0) / mean_epochs)
    if pair is None or paired_var is None:
        return _Split(between, within, 2.0 * between, "conservative", None)
    # each side's mean over its epochs carries W/m of epoch noise
    sides = [by_run.get(pair[0].id), by_run.get(pair[1].id)]
    share = sum((v.within or 0.0) / v.epochs for v in sides if v is not None)
    labels = (pair[0].version_label or "", pair[1].version_label or "")
    return _Split(between, within, max(0.0, paired_var - share), "versions", labels)


def _estimate(
    runs: Sequence[RunRecord],
    component: str | None,
    metric: str,
    by_run: dict[int, _RunVar],
    split: _Split,
    settings: tuple[float, float, float, int | None],
    cluster_by: str | None = None,
    found: _Clustering | None = None,
) -> PowerEstimate:
    delta, alpha, power, asked = settings
    newest = next(by_run[r.id] for r in reversed(runs) if r.id in by_run)
    now = max(1, round(newest.epochs))
    counts = [asked] if asked else sorted({*(DEFAULT_EPOCHS if split.within else ()), now})
    effect, size = (found.design_effect, found.size) if found else (1.0, 1.0)
    plans = []
    for k in counts:
        needed = examples_needed(effect * split.paired(k), delta, alpha, power, size)
        plans.append(
            PowerPlan(k, split.paired(k), needed, math.ceil(needed / size) if found else None)
        )
    se_now = math.sqrt(effect * split.paired(now) / newest.n)
    df_now = found.clusters - 1 if found else newest.n - 1
    return PowerEstimate(
        evaluation=runs[0].evaluation,
        component=component,
        metric=metric,
        delta=delta,
        alpha=alpha,
        power=power,
        runs=len(by_run),
        examples_now=newest.n,
        epochs_now=now,
        between_var=split.between,
        within_var=split.within,
        source=split.source,
        versions=split.versions,
        mde_now=detectable_effect(se_now, df_now, alpha, power) if df_now > 0 else None,
        plans=tuple(plans),
        cluster_by=cluster_by,
        clusters_now=found.clusters if found else None,
        cluster_size=found.size if found else None,
        design_effect=found.design_effect if found else None,
    )
