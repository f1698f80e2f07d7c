"""What the web view's grid asks the catalog: the recent logical dates and their runs.

Two indexed lookups whatever the history's size: the newest ``limit`` distinct logical
dates among the runs that pass the filters, then those runs. A definition has at most one
run per logical date (``UNIQUE(evaluation_id, logical_date)``), so each (evaluation,
date) cell of the grid holds at most one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Evaluation, Run
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import run_record

__all__ = ["GridRuns", "grid_runs", "version_labels"]


@dataclass(frozen=True)
class GridRuns:
    """The newest logical dates (newest first) and the runs at them."""

    dates: tuple[datetime, ...]
    runs: tuple[RunRecord, ...]


def _filtered(stmt: Any, evaluation: str | None, state: str | None, version: str | None) -> Any:
    if evaluation is not None:
        stmt = stmt.where(Evaluation.name == evaluation)
    if state is not None:
        stmt = stmt.where(Run.state == state)
    if version is not None:
        stmt = stmt.where(Run.version_label == version)
    return stmt


def grid_runs(
    db: Database,
    *,
    evaluation: str | None = None,
    state: str | None = None,
    version: str | None = None,
    limit: int = 20,
) -> GridRuns:
    """The ``limit`` newest logical dates of the runs that pass the filters, and those runs."""
    joined = select(Run.logical_date).join(Evaluation, Run.evaluation_id == Evaluation.id)
    dates_stmt = (
        _filtered(joined, evaluation, state, version)
        .distinct()
        .order_by(Run.logical_date.desc())
        .limit(limit)
    )
    with db.session() as session:
        dates = tuple(session.scalars(dates_stmt))
        if not dates:
            return GridRuns((), ())
        runs_stmt = _filtered(
            select(Run, Evaluation.name).join(Evaluation, Run.evaluation_id == Evaluation.id),
            evaluation,
            state,
            version,
        ).where(Run.logical_date >= dates[-1])
        runs = tuple(run_record(row, name) for row, name in session.execute(runs_stmt))
    wanted = set(dates)
    return GridRuns(dates, tuple(r for r in runs if r.logical_date in wanted))


def version_labels(db: Database) -> list[str]:
    """Every version label a run records, sorted."""
    stmt = select(Run.version_label).where(Run.version_label.is_not(None)).distinct()
    with db.session() as session:
        return sorted(v for v in session.scalars(stmt) if v is not None)
