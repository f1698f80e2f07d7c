"""Paired comparison of two runs, metric by metric.

Score rows of run A and run B are first reduced per example across epochs
(:mod:`~hypermetric.query.reduce`: ``mean`` by default, ``majority`` or ``pass_at_k:K``),
then pair up by (component, metric, example id, call index). For each (component, metric),
over the pairs where both values are present, :mod:`~hypermetric.query.paired` computes:

- ``mean_a``, ``mean_b`` (with Wilson intervals for a 0/1 metric) and
  ``delta = mean(B - A)`` (so ``delta == mean_b - mean_a``);
- a 95% percentile **paired bootstrap** interval of the delta, seeded (the same runs and
  seed always give the same interval), drawn as :func:`~hypermetric.query.stats.paired_bootstrap`
  describes; with ``cluster_by=FIELD`` the **cluster-robust** (CR1) t interval instead;
- the two-sided p-value of the **paired t-test** (CR1 with clusters), and ``p_adjusted``,
  adjusted across the metrics shown (``adjust``: ``holm``, the default, ``bh`` or
  ``none``); for a 0/1 metric also **McNemar's exact test** on the discordant pairs;
- ``mde``: the minimum detectable effect at 80% power and level ``alpha``;
- counts of examples that improved, regressed or did not change, in the metric's own
  direction, and of rows present in one run only (``only_a``, ``only_b``) or errored in
  either (``errored``: present in both, value NULL in at least one).

**The gate.** :meth:`Comparison.failing` (``--fail-on-regression``) counts a metric when its
delta's CI lies wholly beyond the threshold on the bad side *and* its adjusted p-value is
below ``alpha``. The CI rule alone, applied to twenty metrics, fails a steady system on
about two comparisons in five (``1 - 0.975^20``); requiring the Holm-adjusted p as well
keeps the chance of any false alarm across the metrics under ``alpha``, and never fails a
metric the CI rule passes (the threshold keeps its meaning).

Direction: every eval that ran is recorded in its run's ``versions`` JSON with its
direction (``versions["evals"][EVAL]["higher_is_better"]``; a plain function is
higher-is-better, ``@hm.eval(higher_is_better=False)`` says otherwise). A metric resolves by
its exact name, else by the eval name before its last ``.`` (dict-returning evals write
``EVAL.key``); run B's record wins over run A's. A metric neither run records (runs kept
before directions were recorded, rows from elsewhere) has an **unknown** direction: its
delta and interval are shown, but it is never called improved or regressed, and
:meth:`Comparison.unknown_direction` lists it so that a gate can refuse to guess. For a
lower-is-better metric "regressed" means the value went up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import duckdb

from hypermetric.catalog.db import database
from hypermetric.catalog.reading import latest_run_with_version
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import get_run
from hypermetric.config import Settings, get_settings
from hypermetric.errors import QueryError
from hypermetric.query.connection import open_connection, query_error
from hypermetric.query.inference import ADJUSTMENTS, adjust_pvalues, cluster_codes
from hypermetric.query.paired import (
    TOLERANCE,
    ExampleChange,
    MetricDelta,
    PairedValues,
    metric_delta,
)
from hypermetric.query.reduce import (
    Reducer,
    attach_labels,
    label_sql,
    parse_reducer,
    reduce_scores,
    views_for,
)
from hypermetric.query.sources import metric_condition, quote_literal

__all__ = [
    "Comparison",
    "ExampleChange",
    "MetricDelta",
    "compare",
    "higher_is_better",
    "resolve_run",
]


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: both runs, each metric, and the examples that moved most.

    ``regressions`` and ``improvements`` hold up to ``examples`` rows each, worst (best)
    first by ``gain``.
    """

    run_a: RunRecord
    run_b: RunRecord
    metrics: tuple[MetricDelta, ...]
    regressions: tuple[ExampleChange, ...]
    improvements: tuple[ExampleChange, ...]
    resamples: int
    seed: int
    #: the level of the tests (CIs are 1 - alpha) and the power of the MDE
    alpha: float = 0.05
    power: float = 0.8
    #: how p_adjusted was made: "holm", "bh" or "none"
    adjust: str = "holm"
    #: the example field the errors are clustered by (None: examples are independent)
    cluster_by: str | None = None
    #: how each example's epochs were reduced to one value
    reduce: str = "mean"

    def failing(self, threshold: float = 0.0) -> list[MetricDelta]:
        """The metrics the gate fails: CI wholly beyond ``threshold`` on the bad side and
        adjusted p below ``alpha`` (module docstring)."""
        return [m for m in self.metrics if m.fails(threshold, self.alpha)]

    def unknown_direction(self) -> list[MetricDelta]:
        """The metrics whose direction neither run records (no gate can judge them)."""
        return [m for m in self.metrics if m.higher_is_better is None]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the comparison."""
        return {
            "run_a": self.run_a.id,
            "run_b": self.run_b.id,
            "resamples": self.resamples,
            "seed": self.seed,
            "alpha": self.alpha,
            "power": self.power,
            "adjust": self.adjust,
            "cluster_by": self.cluster_by,
            "reduce": self.reduce,
            "metrics": [asdict(m) for m in self.metrics],
            "regressions": [asdict(e) for e in self.regressions],
            "improvements": [asdict(e) for e in self.improvements],
        }


def resolve_run(spec: int | str, settings: Settings | None = None) -> RunRecord:
    """The run named by an id (``12``) or by ``EVALUATION@VERSION`` (its newest successful run)."""
    db = database(settings or get_settings())
    if isinstance(spec, int) or spec.strip().isdigit():
        return get_run(db, int(spec))
    evaluation, sep, version = spec.rpartition("@")
    if not sep or not evaluation or not version:
        raise QueryError(f"cannot read run {spec!r}; name a run by its id or as EVALUATION@VERSION")
    return latest_run_with_version(db, evaluation, version)


def higher_is_better(metric: str, *runs: RunRecord) -> bool | None:
    """The direction of ``metric`` as the first of ``runs`` that records it says; None when
    none does."""
    candidates = [metric]
    if "." in metric:
        candidates.append(metric.rpartition(".")[0])
    for run in runs:
        evals = (run.versions or {}).get("evals") or {}
        for name in candidates:
            declared = evals.get(name)
            if isinstance(declared, dict) and "higher_is_better" in declared:
                return bool(declared["higher_is_better"])
    return None


def _pairs_sql(a: int, b: int, clustered: bool) -> str:
    side = (
        "SELECT component, metric, example_id, call_index, value, within_var, true AS present "
        "FROM reduced WHERE run_id = {run}"
    )
    example = "coalesce(a.example_id, b.example_id)"
    label = label_sql(example, b, a) if clustered else "NULL"
    return f"""
CREATE OR REPLACE TEMP TABLE pairs AS
WITH a AS ({side.format(run=a)}), b AS ({side.format(run=b)})
SELECT coalesce(a.component, b.component) AS component,
       coalesce(a.metric, b.metric) AS metric,
       {example} AS example_id,
       coalesce(a.call_index, b.call_index) AS call_index,
       a.value AS va, b.value AS vb, a.within_var AS wa, b.within_var AS wb,
       {label} AS cluster,
       a.present IS NOT NULL AS in_a, b.present IS NOT NULL AS in_b
FROM a FULL OUTER JOIN b
  ON a.component = b.component AND a.metric = b.metric
 AND a.example_id = b.example_id AND a.call_index = b.call_index
"""


_GROUPS_SQL = """
SELECT component, metric,
       count(*) FILTER (WHERE in_a AND in_b AND va IS NOT NULL AND vb IS NOT NULL) AS n,
       count(*) FILTER (WHERE in_a AND in_b AND (va IS NULL OR vb IS NULL)) AS errored,
       count(*) FILTER (WHERE in_a AND NOT in_b) AS only_a,
       count(*) FILTER (WHERE in_b AND NOT in_a) AS only_b,
       avg(wa ORDER BY example_id, call_index), avg(wb ORDER BY example_id, call_index)
FROM pairs GROUP BY component, metric
ORDER BY component NULLS LAST, metric NULLS LAST
"""

_VALUES_SQL = """
SELECT va, vb, cluster FROM pairs WHERE in_a AND in_b AND va IS NOT NULL AND vb IS NOT NULL
ORDER BY component NULLS LAST, metric NULLS LAST, example_id, call_index
"""


def _changes(
    con: duckdb.DuckDBPyConnection, lower: list[str], unknown: list[str], limit: int, worst: bool
) -> tuple[ExampleChange, ...]:
    if limit <= 0:
        return ()
    names = ", ".join(quote_literal(m) for m in lower) or "NULL"
    # a metric of unknown direction has no better or worse: its rows are left out
    skipped = ", ".join(quote_literal(m) for m in unknown)
    keep = f"AND metric NOT IN ({skipped})" if unknown else ""
    sign = f"CASE WHEN metric IN ({names}) THEN -1.0 ELSE 1.0 END"
    cmp, order = ("<", "ASC") if worst else (">", "DESC")
    rows = con.sql(
        f"""SELECT component, metric, example_id, call_index, va, vb, vb - va AS delta,
               (vb - va) * {sign} AS gain
        FROM pairs WHERE in_a AND in_b AND va IS NOT NULL AND vb IS NOT NULL
          {keep}
          AND (vb - va) * {sign} {cmp} {-TOLERANCE if worst else TOLERANCE}
        ORDER BY gain {order}, component, metric, example_id, call_index LIMIT {int(limit)}"""
    ).fetchall()
    return tuple(ExampleChange(*row) for row in rows)


def _metrics(
    con: duckdb.DuckDBPyConnection,
    run_a: RunRecord,
    run_b: RunRecord,
    options: _Options,
) -> list[MetricDelta]:
    groups = con.sql(_GROUPS_SQL).fetchall()
    values = con.sql(_VALUES_SQL).arrow().read_all()
    va = values["va"].to_numpy(zero_copy_only=False)
    vb = values["vb"].to_numpy(zero_copy_only=False)
    codes = cluster_codes(values["cluster"].to_pylist()) if options.cluster_by else None
    metrics: list[MetricDelta] = []
    start = 0
    for component, name, n, errored, only_a, only_b, wa, wb in groups:
        stop = start + int(n)  # the values come in the groups' order, n rows each
        paired = PairedValues(
            component=component,
            metric=name,
            va=va[start:stop],
            vb=vb[start:stop],
            codes=None if codes is None else codes[start:stop],
            errored=int(errored),
            only_a=int(only_a),
            only_b=int(only_b),
            within_var_a=None if wa is None else float(wa),
            within_var_b=None if wb is None else float(wb),
        )
        up = higher_is_better(name or "", run_b, run_a)
        metrics.append(
            metric_delta(
                paired,
                up,
                resamples=options.resamples,
                seed=options.seed,
                alpha=options.alpha,
                power=options.power,
            )
        )
        start = stop
    adjusted = adjust_pvalues([m.p_value for m in metrics], options.adjust)
    return [replace(m, p_adjusted=p) for m, p in zip(metrics, adjusted, strict=True)]


@dataclass(frozen=True)
class _Options:
    resamples: int = 2000
    seed: int = 0
    alpha: float = 0.05
    power: float = 0.8
    adjust: str = "holm"
    cluster_by: str | None = None
    reducer: Reducer = field(default_factory=Reducer)

    def check(self) -> None:
        if self.resamples < 100:
            raise QueryError(
                f"resamples={self.resamples} is too few for a 95% interval; use >= 100"
            )
        if self.adjust not in ADJUSTMENTS:
            raise QueryError(
                f"unknown adjustment {self.adjust!r}; use one of {', '.join(ADJUSTMENTS)}"
            )
        if not 0.0 < self.alpha < 0.5:
            raise QueryError(f"alpha={self.alpha} is not a test level; use e.g. 0.05")
        if not 0.0 < self.power < 1.0:
            raise QueryError(f"power={self.power} must be between 0 and 1, e.g. 0.8")


def compare(
    a: int | str,
    b: int | str,
    *,
    metric: str | None = None,
    resamples: int = 2000,
    seed: int = 0,
    examples: int = 20,
    cluster_by: str | None = None,
    reduce: str | Reducer | None = None,
    adjust: str = "holm",
    alpha: float = 0.05,
    power: float = 0.8,
    settings: Settings | None = None,
) -> Comparison:
    """Compare run ``b`` against run ``a`` (ids or ``EVALUATION@VERSION``), paired by example.

    ``metric`` keeps one metric (and its ``metric.key`` parts); ``examples`` bounds the
    regressed and improved example lists; ``cluster_by`` names an example field whose
    values cluster the errors; ``reduce`` reduces each example's epochs (``mean``,
    ``majority``, ``pass_at_k:K``); ``adjust`` adjusts the p-values across the metrics.
    See the module docstring for the statistics.
    """
    options = _Options(resamples, seed, alpha, power, adjust, cluster_by, parse_reducer(reduce))
    options.check()
    settings = settings or get_settings()
    run_a, run_b = resolve_run(a, settings), resolve_run(b, settings)
    views = views_for(cluster_by)
    con = open_connection(settings, run_ids=sorted({run_a.id, run_b.id}), views=views)
    try:
        return _compare_on(con, run_a, run_b, metric, examples, options)
    finally:
        con.close()


def compare_on(
    con: duckdb.DuckDBPyConnection,
    run_a: RunRecord,
    run_b: RunRecord,
    *,
    metric: str | None = None,
    resamples: int = 2000,
    seed: int = 0,
    examples: int = 20,
    cluster_by: str | None = None,
    reduce: str | Reducer | None = None,
    adjust: str = "holm",
    alpha: float = 0.05,
    power: float = 0.8,
) -> Comparison:
    """:func:`compare` on a connection whose ``scores`` view holds both runs' rows (and,
    with ``cluster_by``, whose ``examples`` view holds their examples; the query benchmark
    runs it on one Parquet file as the floor of the same statistics)."""
    options = _Options(resamples, seed, alpha, power, adjust, cluster_by, parse_reducer(reduce))
    options.check()
    return _compare_on(con, run_a, run_b, metric, examples, options)


def _compare_on(
    con: duckdb.DuckDBPyConnection,
    run_a: RunRecord,
    run_b: RunRecord,
    metric: str | None,
    examples: int,
    options: _Options,
) -> Comparison:
    where = f"run_id IN ({int(run_a.id)}, {int(run_b.id)})"
    if metric is not None:
        where += f" AND {metric_condition(metric)}"
    try:
        reduce_scores(con, options.reducer, where=where)
        if options.cluster_by:
            attach_labels(con, options.cluster_by, [run_a.id, run_b.id])
        con.execute(_pairs_sql(run_a.id, run_b.id, bool(options.cluster_by)))
        metrics = _metrics(con, run_a, run_b, options)
        lower = sorted({m.metric for m in metrics if m.higher_is_better is False})
        unknown = sorted({m.metric for m in metrics if m.higher_is_better is None})
        worst = _changes(con, lower, unknown, examples, worst=True)
        best = _changes(con, lower, unknown, examples, worst=False)
    except duckdb.Error as exc:
        raise query_error(exc) from None
    if not metrics:
        raise QueryError(
            f"runs {run_a.id} and {run_b.id} have no scores"
            + (f" for metric {metric!r}" if metric else "")
            + "; check the run ids and `hypermetric runs show`"
        )
    return Comparison(
        run_a=run_a,
        run_b=run_b,
        metrics=tuple(metrics),
        regressions=worst,
        improvements=best,
        resamples=options.resamples,
        seed=options.seed,
        alpha=options.alpha,
        power=options.power,
        adjust=options.adjust,
        cluster_by=options.cluster_by,
        reduce=str(options.reducer),
    )
