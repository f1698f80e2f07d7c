"""The evaluator side: buffer the scored units of a run and flush them as Parquet shards when
a threshold is reached.

A unit arrives scored (:mod:`hypermetric.engine.scoring`): three Arrow record batches, its
score rows, its call rows and its examples rows. The evaluator keeps them as they are and,
at a flush, adds the run's columns (its id, evaluation, version, attempt, and the time each
unit arrived) and writes one shard per dataset: a unit's rows of all three are committed
together, exactly once.

Pure Python (no Ray): :class:`EvaluatorCore` is wrapped by a Ray actor in
:mod:`hypermetric.engine.actors`; tests drive it directly. Nothing here touches the DB:
a flush returns a :class:`Flush` descriptor for the coordinator to commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from hypermetric.catalog.records import ShardFile, UnitSummary
from hypermetric.engine.scoring import ScoredUnit, complete_calls, complete_scores
from hypermetric.storage.files import ShardStore
from hypermetric.storage.schemas import SCHEMAS

__all__ = ["RANGE_SIDES", "EvaluatorCore", "Flush", "Thresholds", "UnitDone"]

#: where a dataset's (start, end) sits in a unit's row ranges
RANGE_SIDES = {"scores": 0, "calls": 2, "examples": 4}


@dataclass(frozen=True)
class Thresholds:
    """When a buffer is flushed: whichever of rows, bytes or age is reached first."""

    rows: int = 200_000
    bytes: int = 64 * 1024 * 1024
    seconds: float = 30.0


@dataclass(frozen=True)
class Flush:
    """Shards written by one flush, the units they hold and each unit's row ranges."""

    files: tuple[ShardFile, ...]
    units: tuple[UnitSummary, ...]
    #: unit id -> (scores start, end, calls start, end, examples start, end) in the files
    ranges: dict[int, tuple[int, ...]]


@dataclass(frozen=True)
class UnitDone:
    """The small descriptor an evaluation returns to the coordinator; ``lineage`` holds the
    components the unit's scorer saw for the first time (name -> hash, evals)."""

    unit: UnitSummary
    flush: Flush | None
    lineage: dict[str, Any] | None = None


@dataclass
class _Buffer:
    """The record batches of one dataset, with each unit's row count and arrival time."""

    batches: list[pa.RecordBatch] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    rows: int = 0

    def add(self, batch: pa.RecordBatch, now: datetime) -> None:
        self.batches.append(batch)
        self.counts.append(batch.num_rows)
        self.times.append(now)
        self.rows += batch.num_rows

    def table(self, schema: pa.Schema, constants: dict[str, Any]) -> pa.Table:
        """The buffered rows with the run's columns, in ``schema``'s order."""
        rows = pa.Table.from_batches(self.batches) if self.batches else None
        arrays = []
        for column in schema:
            if rows is not None and column.name in rows.column_names:
                arrays.append(rows[column.name])
            elif column.name == "created_at":
                stamps = np.array([t.replace(tzinfo=None) for t in self.times], "datetime64[us]")
                arrays.append(pa.array(np.repeat(stamps, self.counts), type=column.type))
            else:
                value = constants[column.name]
                arrays.append(
                    pa.nulls(self.rows, column.type)
                    if value is None
                    else pa.repeat(pa.scalar(value, column.type), self.rows)
                )
        return pa.Table.from_arrays(arrays, schema=schema)


class EvaluatorCore:
    """Buffers scored units, writes shards at thresholds. One per evaluator actor."""

    def __init__(
        self,
        *,
        run_id: int,
        evaluation: str,
        version: str | None,
        store: ShardStore,
        thresholds: Thresholds,
        attempt: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id, self.evaluation, self.version = run_id, evaluation, version
        self.attempt = attempt
        self.store = store
        self.thresholds = thresholds
        self.clock = clock
        self._reset()

    def _reset(self) -> None:
        self.scores = _Buffer()
        self.calls = _Buffer()
        self.examples = _Buffer()
        self.units: list[UnitSummary] = []
        self.ranges: dict[int, tuple[int, ...]] = {}
        self.bytes = 0
        self.started: float | None = None

    @property
    def buffered_units(self) -> list[int]:
        """Ids of the units whose rows are buffered and not flushed yet."""
        return [u.unit_id for u in self.units]

    def evaluate(self, scored: ScoredUnit) -> UnitDone:
        """Buffer one scored unit; flush if a threshold is reached."""
        if self.started is None:
            self.started = self.clock()
        s0, c0, e0 = self.scores.rows, self.calls.rows, self.examples.rows
        now = datetime.now(UTC)
        self.scores.add(complete_scores(scored.scores), now)
        self.calls.add(complete_calls(scored.calls), now)
        # the batches' buffers: text counted as its UTF-8 bytes, as it is in memory and files
        self.bytes += scored.scores.nbytes + scored.calls.nbytes
        if scored.examples is not None:
            self.examples.add(scored.examples, now)
            self.bytes += scored.examples.nbytes
        unit = scored.unit
        self.units.append(unit)
        self.ranges[unit.unit_id] = (
            s0,
            self.scores.rows,
            c0,
            self.calls.rows,
            e0,
            self.examples.rows,
        )
        flush = self.flush() if self._due() else None
        return UnitDone(unit=unit, flush=flush, lineage=scored.lineage)

    def _due(self) -> bool:
        t = self.thresholds
        rows = max(self.scores.rows, self.calls.rows)
        if rows >= t.rows or self.bytes >= t.bytes:
            return True
        return self.started is not None and self.clock() - self.started >= t.seconds

    def flush_if_old(self) -> Flush | None:
        """Flush when the oldest buffered row has waited ``thresholds.seconds``."""
        return self.flush() if self.units and self._due() else None

    def flush(self) -> Flush | None:
        """Write the buffer as shards (one per dataset) and empty it; None if it is empty."""
        if not self.units:
            return None
        constants = {
            "run_id": self.run_id,
            "evaluation": self.evaluation,
            "version": self.version,
            "run_attempt": self.attempt,
        }
        ids = [u.unit_id for u in self.units]
        label = f"u{min(ids):07d}-{max(ids):07d}"
        files = []
        buffers = {"scores": self.scores, "calls": self.calls, "examples": self.examples}
        for dataset, buffer in buffers.items():
            if buffer.rows:
                table = buffer.table(SCHEMAS[dataset], constants)
                files.append(self.store.write(dataset, self.run_id, table, label))
        flush = Flush(files=tuple(files), units=tuple(self.units), ranges=dict(self.ranges))
        self._reset()
        return flush
