"""Each run's count, mean and variance per (component, metric), read once per run.

A finished run's scores do not change unless it is retried (a new attempt) or rows are
added, so the stats are kept by (run, attempt, state, row count): a page over hundreds of
runs reads the shards of the runs that are new or still moving, not all of them again.
Compaction rewrites files, not values, so it leaves the cache right. Runs still queued or
running are read every time and never kept.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

from hypermetric.catalog.db import database
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import list_runs
from hypermetric.config import Settings
from hypermetric.masking import masked
from hypermetric.query.connection import open_connection
from hypermetric.query.history import RunStat, series_on

__all__ = ["RunStats", "Stats"]

logger = logging.getLogger(__name__)

#: a run's stats: (component, metric) -> RunStat (metrics with no value left out)
Stats = dict[tuple[str | None, str], RunStat]


class RunStats:
    """The stats of runs, cached while a run cannot change (thread-safe)."""

    def __init__(self, settings: Settings, size: int = 50_000) -> None:
        self._settings = settings
        self._size = size
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int, str, int], Stats] = OrderedDict()

    @staticmethod
    def _key(run: RunRecord) -> tuple[int, int, str, int]:
        return (run.id, run.attempt, run.state, run.rows_count)

    def of(self, runs: Sequence[RunRecord]) -> dict[int, Stats]:
        """The stats of ``runs`` by run id (a run without values gets an empty dict)."""
        out: dict[int, Stats] = {}
        missing: list[RunRecord] = []
        with self._lock:
            for run in runs:
                found = self._cache.get(self._key(run))
                if found is None:
                    missing.append(run)
                else:
                    self._cache.move_to_end(self._key(run))
                    out[run.id] = found
        if not missing:
            return out
        read = self._read([r.id for r in missing if r.rows_count])
        with self._lock:
            for run in missing:
                out[run.id] = read.get(run.id, {})
                if run.finished:
                    self._cache[self._key(run)] = out[run.id]
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return out

    def _read(self, run_ids: list[int]) -> dict[int, Stats]:
        if not run_ids:
            return {}
        con = open_connection(self._settings, run_ids=run_ids, views=["scores"])
        try:
            # the stats `hypermetric history` computes (epochs reduced per example first)
            series = series_on(con, run_ids)
        finally:
            con.close()
        out: dict[int, Stats] = {}
        for key, by_run in series.items():
            for run_id, stat in by_run.items():
                out.setdefault(int(run_id), {})[key] = stat
        return out

    def warm(self, batch: int = 200) -> int:
        """Read the stats of every finished run, newest first, ``batch`` runs a query; returns
        how many runs were read. A server calls it once in the background at start, so its
        first pages find the history read; a failure is logged, never raised."""
        try:
            runs = [r for r in list_runs(database(self._settings), limit=None) if r.finished]
            for start in range(0, len(runs), batch):
                self.of(runs[start : start + batch])
            return len(runs)
        except Exception as exc:  # a page reads what it needs anyway
            logger.warning("could not read the runs' stats ahead: %s", masked(str(exc)))
            return 0
