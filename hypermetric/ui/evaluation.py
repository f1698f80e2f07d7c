"""The evaluation page's data: its definition and every metric's history, from cached stats.

The points are :func:`hypermetric.query.history.history`'s, computed by
:func:`~hypermetric.query.history.history_of` from each successful run's stats, which
:class:`~hypermetric.ui.cache.RunStats` reads once per run: after a new night only that
run's shards are read, not the whole history again.
"""

from __future__ import annotations

from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.reading import successful_runs
from hypermetric.catalog.records import EvaluationRecord
from hypermetric.config import Settings
from hypermetric.query.history import HistoryPoint, RunStat, history_of
from hypermetric.ui.cache import RunStats
from hypermetric.ui.runs import shown_evaluation

__all__ = ["evaluation_history"]


def _wanted(name: str, metric: str | None) -> bool:
    # as history(metric=...): the metric and its METRIC.key parts
    return metric is None or name == metric or name.startswith(metric + ".")


def evaluation_history(
    settings: Settings, stats: RunStats, name: str, *, metric: str | None = None, window: int = 7
) -> tuple[EvaluationRecord, list[HistoryPoint]]:
    """The evaluation (masked) and the history points of its successful runs."""
    db = database(settings)
    evaluation = shown_evaluation(get_evaluation(db, name))
    runs = successful_runs(db, name)
    series: dict[tuple[str | None, str], dict[int, RunStat]] = {}
    for run_id, by_key in stats.of(runs).items():
        for key, stat in by_key.items():
            if _wanted(key[1], metric):
                series.setdefault(key, {})[run_id] = stat
    return evaluation, history_of(runs, series, window=window)
