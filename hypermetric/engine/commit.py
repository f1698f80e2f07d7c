"""Committing a flush: register its shards and units in one transaction, exactly once.

If some of the flush's units are committed already (a unit evaluated twice after a fault,
or a resumed run racing an old driver), the files are rewritten without those units' rows
and the rest is committed; a flush whose units are all committed is dropped. Either way
no row is registered twice and none is lost.
"""

from __future__ import annotations

import pyarrow as pa

from hypermetric.catalog.attempts import RunNotRunning
from hypermetric.catalog.db import Database
from hypermetric.catalog.records import UnitSummary
from hypermetric.catalog.shards import UnitsAlreadyCommitted, commit_units
from hypermetric.engine.evaluator import RANGE_SIDES, Flush
from hypermetric.errors import SupersededError
from hypermetric.storage.files import ShardStore

__all__ = ["commit_flush"]

_MAX_TRIES = 5


def commit_flush(
    db: Database, store: ShardStore, run_id: int, attempt: int, flush: Flush
) -> list[UnitSummary]:
    """Commit ``flush`` for ``attempt``; returns the units this call committed (maybe fewer
    than it held). A fenced attempt's flush (SupersededError, RunNotRunning) is deleted."""
    for _ in range(_MAX_TRIES):
        if not flush.units:
            _delete(store, flush)
            return []
        try:
            commit_units(db, run_id, flush.files, flush.units, attempt=attempt)
            return list(flush.units)
        except UnitsAlreadyCommitted as dup:
            flush = _without(store, run_id, flush, dup.unit_ids)
        except (SupersededError, RunNotRunning):
            _delete(store, flush)  # never registered: nothing reads it
            raise
    raise UnitsAlreadyCommitted(run_id, [u.unit_id for u in flush.units])


def _delete(store: ShardStore, flush: Flush) -> None:
    for file in flush.files:
        store.delete(file.path)


def _without(store: ShardStore, run_id: int, flush: Flush, drop: frozenset[int]) -> Flush:
    keep = [u for u in flush.units if u.unit_id not in drop]
    files = []
    for file in flush.files:
        table = store.read(file.path)
        side = RANGE_SIDES[file.dataset]
        pieces = [
            table.slice(flush.ranges[u.unit_id][side], _length(flush, u.unit_id, side))
            for u in keep
        ]
        if keep and sum(p.num_rows for p in pieces):
            merged = pa.concat_tables(pieces)
            files.append(store.write(file.dataset, run_id, merged, "rewritten"))
    ranges: dict[int, tuple[int, ...]] = {}
    offsets = [0] * len(RANGE_SIDES)
    for u in keep:
        bounds: list[int] = []
        for i, side in enumerate(RANGE_SIDES.values()):
            length = _length(flush, u.unit_id, side)
            bounds.extend((offsets[i], offsets[i] + length))
            offsets[i] += length
        ranges[u.unit_id] = tuple(bounds)
    _delete(store, flush)
    return Flush(files=tuple(files), units=tuple(keep), ranges=ranges)


def _length(flush: Flush, unit_id: int, side: int) -> int:
    start, end = flush.ranges[unit_id][side], flush.ranges[unit_id][side + 1]
    return end - start
