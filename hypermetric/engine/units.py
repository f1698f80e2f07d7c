"""The units an attempt drives, cut from its dataset in order, each carrying its ids.

The dataset is cut into units of the run's unit size, always the same way (a resumed or
retried attempt cuts the units the first one did). Each unit carries its examples' ids:
sliced from the survey of a dataset read once before the run, or assigned here, in
dataset order, for a one-shot iterator (:mod:`hypermetric.api.identity`). A unit the plan
says is done is read but not sent; a unit a retry drives again sends its failed examples
only, checked to be the examples that failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from hypermetric.api.datasets import Chunk, iter_chunks
from hypermetric.api.identity import IdStream, Survey
from hypermetric.catalog.ledger import UnitPlan
from hypermetric.catalog.records import FailedExample
from hypermetric.errors import DatasetError

__all__ = ["TAIL_KEY", "Tail", "UnitReader", "attempt_tail", "tail_for", "unit_size_for"]

#: a dataset of known length is cut into at least this many units per actor, so that a
#: small one (a few hundred LLM prompts) still keeps every driver and evaluator busy
UNITS_PER_ACTOR = 4
#: the share of the in-flight budget one unit's examples may take: the budget holds the
#: units queued on every driver and waiting for an evaluator, so that wide examples bound
#: the memory of a run without starving its pipeline
UNIT_SHARE = 1 / 8
#: an async runtime's unit holds at most this many rounds of its concurrency: its calls
#: take seconds, and a bigger unit only means more calls made again after a crash
ROUNDS_PER_UNIT = 40


def unit_size_for(
    configured: int,
    *,
    per_example: float | None,
    inflight_bytes: int,
    overlap: int | None,
    total: int | None,
    actors: int,
    epochs: int = 1,
) -> int:
    """How many examples a run's units hold: the configured size, or fewer when a unit's
    examples (``per_example`` bytes each, as shipped) would take more than
    :data:`UNIT_SHARE` of the in-flight budget, when an async runtime overlapping
    ``overlap`` examples in a unit would wait on its calls more than
    :data:`ROUNDS_PER_UNIT` times, or when a dataset of ``total`` examples needs more
    units to keep ``actors`` busy.

    A run of ``epochs`` drives each example of a unit that many times: the configured size
    and the rounds count drives, so its units hold that many times fewer examples (a unit
    of 8,000 examples at 5 epochs would be 40,000 calls to make again after a crash).

    Big units are cheap units: each costs a few milliseconds of CPU (object store,
    scheduling, commit) whatever its size, which a unit of 16,000 fast examples makes
    negligible and one of 2,000 does not (a trivial eval runs 10% faster in units of
    16,000 than of 8,000); the tail (:func:`tail_for`) keeps big units from leaving a
    driver idle at the end of a run."""
    size = max(1, configured // epochs)
    if overlap:
        size = min(size, max(1, ROUNDS_PER_UNIT * overlap // epochs))
    if per_example:
        size = min(size, max(1, int(inflight_bytes * UNIT_SHARE / per_example)))
    if total:
        size = min(size, math.ceil(total / (UNITS_PER_ACTOR * actors)))
    return max(1, size)


#: the examples of a dataset of known length that are cut into smaller units at its end, in
#: units of the run's size: the last units then take a fraction of a big unit's time, and
#: no driver waits long, idle, for another to finish the run's last unit
TAIL_UNITS = 2
#: how many smaller units a unit's worth of the tail becomes, each of at least
#: :data:`TAIL_MIN` examples (a unit costs milliseconds whatever its size)
TAIL_SPLIT = 8
TAIL_MIN = 500

#: where the tail of a run's dataset starts (an example offset) and its units' size
Tail = tuple[int, int]
#: the key of the run's versions that keeps its tail for its later attempts
TAIL_KEY = "unit_tail"


def tail_for(size: int, total: int | None) -> Tail | None:
    """The tail of a dataset of ``total`` examples cut in units of ``size``; None when its
    length is not known or its units are small already."""
    piece = max(TAIL_MIN, math.ceil(size / TAIL_SPLIT))
    if not total or piece >= size:
        return None
    return max(0, total - TAIL_UNITS * size), piece


def attempt_tail(
    versions: dict[str, Any] | None, committed: bool, size: int, total: int | None
) -> Tail | None:
    """The tail an attempt cuts: the one its run's versions keep once a unit is committed
    (a run whose first attempt cut none, by an earlier release, has none), else
    :func:`tail_for`."""
    if committed:
        kept = (versions or {}).get(TAIL_KEY)
        return (int(kept[0]), int(kept[1])) if kept else None
    return tail_for(size, total)


class UnitReader:
    """Iterate ``(unit id, chunk)`` over the units of ``source`` an attempt drives."""

    def __init__(
        self,
        run_id: int,
        source: Any,
        size: int,
        plan: UnitPlan,
        survey: Survey | None,
        tail: Tail | None = None,
    ) -> None:
        self.run_id, self.source, self.size = run_id, source, size
        self.plan, self.survey, self.tail = plan, survey, tail
        #: units read so far (done ones included): the dataset's unit count once exhausted
        self.units_seen = 0
        #: examples read so far (those of done units included)
        self.examples_seen = 0

    def _chunks(self) -> Iterator[Chunk]:
        """The dataset in units of the run's size, and of the tail's size from where the
        tail starts (:func:`tail_for`): always cut the same way for the same dataset."""
        chunks = iter_chunks(self.source, self.size)
        if self.tail is None:
            yield from chunks
            return
        start, piece = self.tail
        offset = 0  # the dataset position of the chunk's first example
        for chunk in chunks:
            n, cut = len(chunk), 0
            while cut < n:
                at = offset + cut
                end = min(n, cut + piece if at >= start else cut + start - at)
                yield chunk if (cut, end) == (0, n) else chunk.slice(cut, end)
                cut = end
            offset += n

    def __iter__(self) -> Iterator[tuple[int, Chunk]]:
        stream = IdStream() if self.survey is None else None
        offset = 0
        for unit_id, chunk in enumerate(self._chunks()):
            self.units_seen = unit_id + 1
            self.examples_seen = offset + len(chunk)
            if stream is not None:
                ids = stream.assign(chunk)
            else:
                assert self.survey is not None
                ids = self.survey.ids.slice(offset, len(chunk)).to_pylist()
            offset += len(chunk)
            if len(ids) != len(chunk):
                raise DatasetError(
                    f"run {self.run_id}: the dataset changed while the run read it; "
                    "give the run data that stays put until it ends"
                )
            if unit_id in self.plan.done:
                continue
            chunk = chunk.with_ids(ids)
            failed = self.plan.redo.get(unit_id)
            yield unit_id, chunk if failed is None else self._redo(unit_id, chunk, failed)
        if self.survey is not None and offset != self.survey.count:
            raise DatasetError(
                f"run {self.run_id}: the dataset changed while the run read it "
                f"({self.survey.count} examples before, {offset} now); "
                "give the run data that stays put until it ends"
            )

    def _redo(self, unit_id: int, chunk: Chunk, failed: tuple[FailedExample, ...]) -> Chunk:
        """The failed examples of a committed unit, checked to be the same examples."""
        ids = chunk.ids or []
        for example in failed:
            now = ids[example.position] if example.position < len(ids) else None
            if now != example.example_id:
                raise DatasetError(
                    f"run {self.run_id}: the dataset changed since unit {unit_id} was "
                    f"committed: {chunk.location(example.position)} had id "
                    f"{example.example_id!r}, now {now!r}; a retry needs the same data"
                )
        return chunk.subset(tuple(f.position for f in failed))
