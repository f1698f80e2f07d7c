"""The grid: evaluations (rows) by recent logical dates (columns), each cell one run.

A cell shows the run's state and its **headline metric**: the metric the page asks for
(``metric=``), else the first (component, metric) in name order that the row's runs
scored. Its colour places the value between the row's worst and best, in the metric's
direction (green is better), so a bad night stands out in a row of good ones.

Means come from the runs' shards through :class:`~hypermetric.ui.cache.RunStats`, so a
refresh reads only the runs that are new or still moving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from hypermetric.catalog.browsing import grid_runs, version_labels
from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import list_evaluations
from hypermetric.catalog.records import RunRecord
from hypermetric.config import Settings
from hypermetric.query.compare import higher_is_better
from hypermetric.ui.cache import RunStats, Stats

__all__ = ["Cell", "Grid", "GridRow", "build_grid"]


@dataclass(frozen=True)
class Cell:
    """One run in the grid; ``shade`` is -1 (the row's worst) .. 1 (its best), None unknown."""

    run_id: int
    state: str
    version: str | None
    logical_date: datetime
    value: float | None
    shade: float | None


@dataclass(frozen=True)
class GridRow:
    """An evaluation, its headline metric and its cells by column (None: no run then)."""

    evaluation: str
    paused: bool
    component: str | None
    metric: str | None
    higher_is_better: bool | None
    cells: tuple[Cell | None, ...]


@dataclass(frozen=True)
class Grid:
    """The whole grid, the filters it was drawn with and what the filters may choose."""

    dates: tuple[datetime, ...]
    rows: tuple[GridRow, ...]
    live: bool
    evaluations: tuple[str, ...]
    versions: tuple[str, ...]
    filters: dict[str, str]


def _headline(
    runs: Sequence[RunRecord], means: dict[int, Stats], metric: str | None
) -> tuple[str | None, str | None]:
    keys = sorted({k for r in runs for k in means.get(r.id, {})}, key=lambda k: (k[0] or "", k[1]))
    if metric is not None:
        keys = [k for k in keys if k[1] == metric]
    return keys[0] if keys else (None, None)


def _shades(values: dict[int, float], up: bool | None) -> dict[int, float | None]:
    if up is None or len(values) < 2:
        return dict.fromkeys(values)
    low, high = min(values.values()), max(values.values())
    if high - low <= 1e-12:
        return dict.fromkeys(values, 0.0)
    sign = 1.0 if up else -1.0
    return {k: sign * (2.0 * (v - low) / (high - low) - 1.0) for k, v in values.items()}


def _row(
    name: str,
    paused: bool,
    runs: Sequence[RunRecord],
    dates: Sequence[datetime],
    means: dict[int, Stats],
    metric: str | None,
) -> GridRow:
    component, headline = _headline(runs, means, metric)
    up = higher_is_better(headline, *sorted(runs, key=lambda r: -r.id)) if headline else None
    values = {
        r.id: stat.mean
        for r in runs
        if (stat := means.get(r.id, {}).get((component, headline or ""))) is not None
    }
    shades = _shades(values, up)
    by_date = {r.logical_date: r for r in runs}
    cells = []
    for date in dates:
        run = by_date.get(date)
        cells.append(
            None
            if run is None
            else Cell(
                run.id, run.state, run.version_label, date, values.get(run.id), shades.get(run.id)
            )
        )
    return GridRow(name, paused, component, headline, up, tuple(cells))


def build_grid(
    settings: Settings,
    stats: RunStats,
    *,
    evaluation: str | None = None,
    state: str | None = None,
    version: str | None = None,
    metric: str | None = None,
    columns: int = 20,
) -> Grid:
    """The grid of the ``columns`` newest logical dates that pass the filters."""
    db = database(settings)
    found = grid_runs(db, evaluation=evaluation, state=state, version=version, limit=columns)
    run_stats = stats.of(found.runs)
    definitions = {e.name: e for e in list_evaluations(db)}
    by_evaluation: dict[str, list[RunRecord]] = {}
    for run in found.runs:
        by_evaluation.setdefault(run.evaluation, []).append(run)
    names = [evaluation] if evaluation else sorted(definitions)
    rows = tuple(
        _row(
            name,
            bool(definitions[name].paused) if name in definitions else False,
            by_evaluation.get(name, []),
            found.dates,
            run_stats,
            metric,
        )
        for name in names
        if name in definitions
    )
    filters = {
        k: v
        for k, v in {
            "evaluation": evaluation,
            "state": state,
            "version": version,
            "metric": metric,
        }.items()
        if v
    }
    return Grid(
        dates=found.dates,
        rows=rows,
        live=any(not r.finished for r in found.runs),
        evaluations=tuple(sorted(definitions)),
        versions=tuple(version_labels(db)),
        filters=filters,
    )
