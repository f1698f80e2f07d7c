"""One run's results: its catalog record, its committed rows and its summary.

The summary first reduces each example's epochs to one value (``reduce``: ``mean`` by
default, ``majority`` or ``pass_at_k:K``; see :mod:`~hypermetric.query.reduce`), so ``n``
counts examples (and calls), not epochs, and ``within_var`` reports the within-example
variance across epochs. Its interval over the non-null values of each (component, metric):

- Student's t, ``mean ± t(0.975, n-1) · s/sqrt(n)``: the usual normal interval for large
  ``n``, and honest for small ones;
- the Wilson score interval when every value is 0 or 1 (an exact-match rate): it stays
  inside [0, 1] and keeps its coverage near 0 and 1 and for small ``n``, where the t
  interval does not (the standard error stays ``s/sqrt(n)``);
- with ``cluster_by=FIELD`` the cluster-robust (CR1) interval with t at C-1 degrees of
  freedom (:func:`~hypermetric.query.inference.cluster_mean`), whatever the values.

Error rows (value NULL, error text) are counted, not averaged.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.table import Table

from hypermetric.catalog.db import database
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import get_run
from hypermetric.config import Settings, get_settings
from hypermetric.query.inference import ClusteredMean, wilson_interval
from hypermetric.query.render import fmt_interval, fmt_num, table_text
from hypermetric.query.stats import mean_interval

if TYPE_CHECKING:
    import duckdb

    from hypermetric.query.reduce import Reducer

# DuckDB and the dataset layer (connection, reduce) load when a result is first read, not
# when a run returns one: a process's first run does not pay for them

__all__ = ["RunResult", "SummaryRow", "render_summary", "summarize"]

_SUMMARY_SQL = """
SELECT component, metric, count(value) AS n,
       avg(value ORDER BY example_id, call_index) AS mean,
       stddev_samp(value ORDER BY example_id, call_index) AS sd, sum(errors) AS errors,
       count(value) FILTER (WHERE value NOT IN (0, 1)) = 0 AS binary,
       sum(value) AS total, avg(within_var ORDER BY example_id, call_index) AS within_var
FROM reduced GROUP BY component, metric ORDER BY component, metric
"""


@dataclass(frozen=True)
class SummaryRow:
    """One (component, metric) of a run.

    ``n`` counts non-null values (one an example and call, its epochs reduced); ``mean``,
    ``stderr`` and the 95% interval ``[ci_low, ci_high]`` (``interval`` says how: ``t``,
    ``wilson`` or ``cluster t``) are over them, None where undefined (no values, or fewer
    than two for the interval); ``errors`` counts rows that carry an error.
    """

    component: str | None
    metric: str | None
    n: int
    mean: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    errors: int
    #: "t", "wilson" (a 0/1 metric) or "cluster t" (cluster_by given)
    interval: str = "t"
    #: mean over examples of the sample variance across their epochs (None: one epoch)
    within_var: float | None = None
    #: how many clusters the values fall in (None without cluster_by)
    clusters: int | None = None


def summarize(
    con: duckdb.DuckDBPyConnection,
    *,
    reduce: str | Reducer | None = None,
    cluster_by: str | None = None,
) -> list[SummaryRow]:
    """Summary rows of the ``scores`` view of ``con``, by component then metric; with
    ``cluster_by``, ``con`` needs the ``examples`` view too (module docstring)."""
    import duckdb

    from hypermetric.query.connection import query_error
    from hypermetric.query.reduce import parse_reducer, reduce_scores

    try:
        reduce_scores(con, parse_reducer(reduce))
        groups = con.sql(_SUMMARY_SQL).fetchall()
        clustered = _clustered(con, cluster_by) if cluster_by else {}
    except duckdb.Error as exc:
        raise query_error(exc) from None
    rows: list[SummaryRow] = []
    for component, metric, n, mean, sd, errors, binary, total, within in groups:
        sd = None if sd is None or (isinstance(sd, float) and math.isnan(sd)) else float(sd)
        stderr, low, high = mean_interval(int(n), mean, sd)
        interval, clusters = "t", None
        if cluster_by:
            c = clustered.get((component, metric))
            stderr, low, high = (c.se, c.ci_low, c.ci_high) if c else (None, None, None)
            interval, clusters = "cluster t", c.clusters if c else None
        elif binary and n > 1:
            (low, high), interval = wilson_interval(float(total), int(n)), "wilson"
        rows.append(
            SummaryRow(
                component=component,
                metric=metric,
                n=int(n),
                mean=None if mean is None else float(mean),
                stderr=stderr,
                ci_low=low,
                ci_high=high,
                errors=int(errors),
                interval=interval,
                within_var=None if within is None else float(within),
                clusters=clusters,
            )
        )
    return rows


def _clustered(con: duckdb.DuckDBPyConnection, field: str) -> dict[Hashable, ClusteredMean | None]:
    """Each (component, metric)'s CR1 clustered mean."""
    from hypermetric.query.reduce import attach_labels, cluster_means, label_sql

    run_ids = [r for (r,) in con.sql("SELECT DISTINCT run_id FROM reduced").fetchall()]
    if not run_ids:
        return {}
    attach_labels(con, field, run_ids)
    label = label_sql("r.example_id", *run_ids)
    query = f"""SELECT component, metric, value, {label} AS label FROM reduced r
        WHERE value IS NOT NULL ORDER BY component, metric"""
    return cluster_means(con, query, ("component", "metric"))


def render_summary(rows: Sequence[SummaryRow], *, title: str | None = None) -> Table:
    """A rich table of summary rows (print it on a rich Console); a ``within var`` column
    appears when some metric was scored over several epochs."""
    epochs = any(row.within_var is not None for row in rows)
    table = Table(title=title)
    for name in ("component", "metric"):
        table.add_column(name, overflow="fold")
    names = ["n", "mean", "stderr", "95% CI", "errors", *(["within var"] if epochs else [])]
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        marks = {"wilson": " w", "cluster t": " c"}.get(row.interval, "")
        table.add_row(
            row.component or "",
            row.metric or "",
            str(row.n),
            fmt_num(row.mean),
            fmt_num(row.stderr),
            fmt_interval(row.ci_low, row.ci_high) + marks,
            str(row.errors),
            *([fmt_num(row.within_var)] if epochs else []),
        )
    if not rows:
        table.caption = "no scores"
    elif any(row.interval != "t" for row in rows):
        table.caption = "CI: Student's t; w: Wilson (a 0/1 metric); c: clustered (CR1, t at C-1 df)"
    return table


class RunResult:
    """A run's results, read from what it committed (re-read on every call).

    ``RunResult(run_id)`` raises NotFoundError when there is no such run.
    """

    def __init__(self, run_id: int, settings: Settings | None = None) -> None:
        self._run_id = int(run_id)
        self._settings = settings or get_settings()
        get_run(database(self._settings), self._run_id)

    def __repr__(self) -> str:
        return f"RunResult(run_id={self._run_id})"

    def __str__(self) -> str:
        run = self.run
        title = f"run {run.id} · {run.evaluation} · {run.state}"
        return table_text(render_summary(self.summary(), title=title))

    @property
    def run_id(self) -> int:
        """The run's id."""
        return self._run_id

    @property
    def run(self) -> RunRecord:
        """The run's catalog record, read now."""
        return get_run(database(self._settings), self._run_id)

    def _connection(self, views: Collection[str] | None = None) -> duckdb.DuckDBPyConnection:
        from hypermetric.query.connection import open_connection

        return open_connection(self._settings, run_ids=[self._run_id], views=views)

    def summary(
        self, *, reduce: str | Reducer | None = None, cluster_by: str | None = None
    ) -> list[SummaryRow]:
        """Per component and metric: n, mean, stderr, 95% CI and error count, each
        example's epochs reduced first (``reduce``: ``mean``, ``majority``,
        ``pass_at_k:K``); ``cluster_by`` names the example field whose values cluster the
        errors (see the module docstring)."""
        from hypermetric.query.reduce import views_for

        con = self._connection(views=views_for(cluster_by))
        try:
            return summarize(con, reduce=reduce, cluster_by=cluster_by)
        finally:
            con.close()

    def scores(self) -> duckdb.DuckDBPyRelation:
        """This run's committed score rows (a DuckDB relation: ``.df()``, ``.arrow()``)."""
        return self._connection().table("scores")

    def calls(self) -> duckdb.DuckDBPyRelation:
        """This run's committed component calls (a DuckDB relation)."""
        return self._connection().table("calls")
