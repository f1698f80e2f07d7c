"""Paired comparison of two runs, metric by metric.

Score rows of run A and run B pair up by (component, metric, example id, call index). For
each (component, metric), over the pairs where both values are present:

- ``mean_a``, ``mean_b`` and ``delta = mean(B - A)`` (so ``delta == mean_b - mean_a``);
- a 95% percentile **paired bootstrap** interval of the delta, seeded (the same runs and
  seed always give the same interval), drawn as :func:`~hypermetric.query.stats.paired_bootstrap`
  describes;
- the two-sided p-value of the **paired t-test** (Student's t computed with numpy and the
  standard library);
- counts of examples that improved, regressed or did not change, in the metric's own
  direction, and of rows present in one run only (``only_a``, ``only_b``) or errored in
  either (``errored``: present in both, value NULL in at least one).

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

import zlib
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import numpy as np

from hypermetric.catalog.db import database
from hypermetric.catalog.reading import latest_run_with_version
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import get_run
from hypermetric.config import Settings, get_settings
from hypermetric.errors import QueryError
from hypermetric.query.connection import open_connection, query_error
from hypermetric.query.sources import quote_literal
from hypermetric.query.stats import paired_bootstrap, paired_t_pvalue

__all__ = [
    "Comparison",
    "ExampleChange",
    "MetricDelta",
    "compare",
    "higher_is_better",
    "resolve_run",
]

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

    def failing(self, threshold: float = 0.0) -> list[MetricDelta]:
        """The metrics whose delta CI lies wholly beyond ``threshold`` on the bad side."""
        return [m for m in self.metrics if m.regressed_beyond(threshold)]

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


def _pairs_sql(a: int, b: int, metric: str | None) -> str:
    where = ""
    if metric is not None:
        m = quote_literal(metric)
        where = f" AND (metric = {m} OR starts_with(metric, {m} || '.'))"
    side = (
        "SELECT component, metric, example_id, call_index, value, true AS present "
        "FROM scores WHERE run_id = {run}" + where
    )
    return f"""
CREATE OR REPLACE TEMP TABLE pairs AS
WITH a AS ({side.format(run=a)}), b AS ({side.format(run=b)})
SELECT coalesce(a.component, b.component) AS component,
       coalesce(a.metric, b.metric) AS metric,
       coalesce(a.example_id, b.example_id) AS example_id,
       coalesce(a.call_index, b.call_index) AS call_index,
       a.value AS va, b.value AS vb,
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
       count(*) FILTER (WHERE in_b AND NOT in_a) AS only_b
FROM pairs GROUP BY component, metric
ORDER BY component NULLS LAST, metric NULLS LAST
"""

_VALUES_SQL = """
SELECT va, vb FROM pairs WHERE in_a AND in_b AND va IS NOT NULL AND vb IS NOT NULL
ORDER BY component NULLS LAST, metric NULLS LAST
"""


def _metric_delta(
    key: tuple[Any, ...], va: np.ndarray, vb: np.ndarray, up: bool | None, resamples: int, seed: int
) -> MetricDelta:
    component, metric, n, errored, only_a, only_b = key
    d = vb - va
    gain = None if up is None else d if up else -d
    boot = paired_bootstrap(
        d, resamples=resamples, seed=[seed, zlib.crc32(f"{component}\x00{metric}".encode())]
    )
    mean = float(d.mean()) if n else None
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    return MetricDelta(
        component=component,
        metric=metric,
        higher_is_better=up,
        n=int(n),
        mean_a=float(va.mean()) if n else None,
        mean_b=float(vb.mean()) if n else None,
        delta=mean,
        ci_low=boot.low if boot else None,
        ci_high=boot.high if boot else None,
        p_value=paired_t_pvalue(mean, sd, int(n)) if mean is not None else None,
        improved=None if gain is None else int((gain > TOLERANCE).sum()),
        regressed=None if gain is None else int((gain < -TOLERANCE).sum()),
        unchanged=int((np.abs(d) <= TOLERANCE).sum()),
        errored=int(errored),
        only_a=int(only_a),
        only_b=int(only_b),
    )


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
    con: duckdb.DuckDBPyConnection, run_a: RunRecord, run_b: RunRecord, resamples: int, seed: int
) -> list[MetricDelta]:
    groups = con.sql(_GROUPS_SQL).fetchall()
    values = con.sql(_VALUES_SQL).arrow().read_all()
    va = values["va"].to_numpy(zero_copy_only=False)
    vb = values["vb"].to_numpy(zero_copy_only=False)
    metrics: list[MetricDelta] = []
    start = 0
    for key in groups:  # the values come in the groups' order, n rows each
        stop = start + int(key[2])
        up = higher_is_better(key[1] or "", run_b, run_a)
        metrics.append(_metric_delta(key, va[start:stop], vb[start:stop], up, resamples, seed))
        start = stop
    return metrics


def compare(
    a: int | str,
    b: int | str,
    *,
    metric: str | None = None,
    resamples: int = 2000,
    seed: int = 0,
    examples: int = 20,
    settings: Settings | None = None,
) -> Comparison:
    """Compare run ``b`` against run ``a`` (ids or ``EVALUATION@VERSION``), paired by example.

    ``metric`` keeps one metric (and its ``metric.key`` parts); ``examples`` bounds the
    regressed and improved example lists. See the module docstring for the statistics.
    """
    if resamples < 100:
        raise QueryError(f"resamples={resamples} is too few for a 95% interval; use >= 100")
    settings = settings or get_settings()
    run_a, run_b = resolve_run(a, settings), resolve_run(b, settings)
    con = open_connection(settings, run_ids=sorted({run_a.id, run_b.id}), views=["scores"])
    try:
        return compare_on(
            con, run_a, run_b, metric=metric, resamples=resamples, seed=seed, examples=examples
        )
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
) -> Comparison:
    """:func:`compare` on a connection whose ``scores`` view holds both runs' rows (the
    query benchmark runs it on one Parquet file as the floor of the same statistics)."""
    try:
        con.execute(_pairs_sql(run_a.id, run_b.id, metric))
        metrics = _metrics(con, run_a, run_b, resamples, seed)
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
    return Comparison(run_a, run_b, tuple(metrics), worst, best, resamples, seed)
