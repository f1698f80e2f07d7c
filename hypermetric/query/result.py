"""One run's results: its catalog record, its committed rows and its summary.

The summary's interval is Student's t: ``mean ± t(0.975, n-1) · s/sqrt(n)`` over the
non-null values of each (component, metric), which is the usual normal interval for large
``n`` and stays honest for small ones. Error rows (value NULL, error text) are counted, not
averaged.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.table import Table

from hypermetric.catalog.db import database
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import get_run
from hypermetric.config import Settings, get_settings
from hypermetric.query.render import fmt_interval, fmt_num, table_text
from hypermetric.query.stats import mean_interval

if TYPE_CHECKING:
    import duckdb

__all__ = ["RunResult", "SummaryRow", "render_summary", "summarize"]

_SUMMARY_SQL = """
SELECT component, metric, count(value) AS n, avg(value) AS mean,
       stddev_samp(value) AS sd, count(error) AS errors
FROM scores GROUP BY component, metric ORDER BY component, metric
"""


@dataclass(frozen=True)
class SummaryRow:
    """One (component, metric) of a run.

    ``n`` counts non-null values; ``mean``, ``stderr`` and the 95% interval
    ``[ci_low, ci_high]`` (Student's t) are over them, None where undefined (no values,
    or fewer than two for the interval); ``errors`` counts rows that carry an error.
    """

    component: str | None
    metric: str | None
    n: int
    mean: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    errors: int


def summarize(con: duckdb.DuckDBPyConnection) -> list[SummaryRow]:
    """Summary rows of the ``scores`` view of ``con``, by component then metric."""
    rows: list[SummaryRow] = []
    for component, metric, n, mean, sd, errors in con.sql(_SUMMARY_SQL).fetchall():
        sd = None if sd is None or (isinstance(sd, float) and math.isnan(sd)) else float(sd)
        stderr, low, high = mean_interval(int(n), mean, sd)
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
            )
        )
    return rows


def render_summary(rows: Sequence[SummaryRow], *, title: str | None = None) -> Table:
    """A rich table of summary rows (print it on a rich Console)."""
    table = Table(title=title)
    for name in ("component", "metric"):
        table.add_column(name, overflow="fold")
    for name in ("n", "mean", "stderr", "95% CI", "errors"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            row.component or "",
            row.metric or "",
            str(row.n),
            fmt_num(row.mean),
            fmt_num(row.stderr),
            fmt_interval(row.ci_low, row.ci_high),
            str(row.errors),
        )
    if not rows:
        table.caption = "no scores"
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
        # DuckDB and the dataset layer load when a result is first read, not when a run
        # returns one (a first run in a process does not pay for them)
        from hypermetric.query.connection import open_connection

        return open_connection(self._settings, run_ids=[self._run_id], views=views)

    def summary(self) -> list[SummaryRow]:
        """Per component and metric: n, mean, stderr, 95% CI (t) and error count."""
        con = self._connection(views=["scores"])
        try:
            return summarize(con)
        finally:
            con.close()

    def scores(self) -> duckdb.DuckDBPyRelation:
        """This run's committed score rows (a DuckDB relation: ``.df()``, ``.arrow()``)."""
        return self._connection().table("scores")

    def calls(self) -> duckdb.DuckDBPyRelation:
        """This run's committed component calls (a DuckDB relation)."""
        return self._connection().table("calls")
