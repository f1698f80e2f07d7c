"""The coordinator: streams the dataset as work units through the driver pool and the
evaluator pool with bounded queues, commits every flush, and survives dead drivers and
dead evaluators.

Backpressure: a unit is read from the source only while every driver has fewer than
``_DRIVER_QUEUE`` units, few driven units wait for an evaluator, and the examples read but
not committed take less than ``inflight_bytes`` (past it, the evaluators are asked to write
what they hold, which commits and frees them); an evaluator takes at most
``max_pending_per_evaluator`` units at a time. So memory is bounded in units and in bytes
whatever the dataset's size (wide examples included), and a slow evaluator pool slows the
reading of the source instead of piling up rows. The coordinator keeps a unit's examples
only as a reference to them in the object store, to drive them again if their scored rows
are lost.
"""

from __future__ import annotations

import math
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import ObjectLostError, RayTaskError

from hypermetric.api.context import RunContext
from hypermetric.api.datasets import Chunk, example_bytes
from hypermetric.api.identity import Survey
from hypermetric.api.runtime import Runtime
from hypermetric.api.versions import merge_lineage
from hypermetric.catalog.attempts import RunNotRunning, heartbeat, update_attempt
from hypermetric.catalog.db import Database
from hypermetric.catalog.ledger import UnitPlan
from hypermetric.catalog.records import RunRecord
from hypermetric.config import Settings
from hypermetric.engine.commit import commit_flush
from hypermetric.engine.driving import ACTOR_GONE, Drivers, Unit, task_error
from hypermetric.engine.evaluator import Flush, Thresholds, UnitDone
from hypermetric.engine.examples import FieldPolicy
from hypermetric.engine.pool import Lent, live_nodes, pool, spread
from hypermetric.engine.units import TAIL_KEY, UnitReader, attempt_tail, unit_size_for
from hypermetric.errors import RunFailedError
from hypermetric.storage.files import ShardStore

__all__ = ["Coordinator", "Progress"]

#: drivers one evaluator serves (it buffers and writes what they score)
_DRIVERS_PER_EVALUATOR = 4
#: a dataset of known length gets a driver for every this many examples, up to one per CPU:
#: a new driver is a process that imports the user's code, which a few examples do not repay
_EXAMPLES_PER_DRIVER = 100


@dataclass
class Progress:
    """What a progress display shows."""

    examples_done: int = 0
    examples_total: int | None = None
    scores: int = 0
    errors: int = 0
    units_done: int = 0
    #: bytes of examples read and not committed yet (bounded by ``inflight_bytes``)
    held_bytes: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Slot:
    """One evaluator actor and the units it holds until they are committed."""

    lent: Lent
    pending: int = 0
    held: dict[int, Unit] = field(default_factory=dict)
    #: it wrote what it held once the source was exhausted (see ``_write_ahead``)
    ahead: bool = False


def _drivers_for(cpus: int, examples: int | None) -> int:
    """Drivers for a run: one per CPU, fewer for a short dataset."""
    if examples is None:
        return cpus
    return max(1, min(cpus, math.ceil(examples / _EXAMPLES_PER_DRIVER)))


class Coordinator:
    """Drives one attempt of one run to the point where every unit is committed.

    ``plan`` says which units are done and which drive their failed examples again (a
    retry); ``survey`` holds the ids of a dataset read once before the run (None for a
    one-shot iterator, whose ids are assigned here as it is read). Every write carries the
    run's attempt: once it is superseded, the next write raises SupersededError.
    ``services`` (:class:`~hypermetric.engine.calls.RunServices`) go to the drivers for the
    calls' rate limits and cache; ``replay`` (:class:`~hypermetric.engine.replay.Replay`)
    is driven instead of the runtime when the run rescored another's stored calls.
    """

    def __init__(
        self,
        *,
        db: Database,
        store: ShardStore,
        run: RunRecord,
        runtime: Runtime,
        context: RunContext,
        settings: Settings,
        source: Any,
        plan: UnitPlan,
        survey: Survey | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
        services: Any = None,
        replay: Any = None,
    ) -> None:
        self.db, self.store, self.run, self.runtime = db, store, run, runtime
        self.context, self.settings, self.source = context, settings, source
        self.attempt = run.attempt
        self.plan, self.survey = plan, survey
        self.versions = run.versions
        self.committed = set(plan.done)
        self.on_progress = on_progress
        self.deadline = time.monotonic() + timeout if timeout else None
        self.nodes = live_nodes()
        cpus = sum(count for _, count in self.nodes)
        self.n_workers = settings.workers or _drivers_for(cpus, run.examples_total)
        # evaluators only buffer and write scored rows: one for every few drivers keeps up
        self.n_evaluators = settings.evaluators or math.ceil(
            self.n_workers / _DRIVERS_PER_EVALUATOR
        )
        #: examples one unit overlaps, so that all drivers together keep `concurrency`
        self.unit_concurrency = math.ceil(runtime.concurrency / self.n_workers)
        self.unit_size = self._unit_size()
        #: where the dataset's end is cut into smaller units (kept for later attempts)
        self.tail = attempt_tail(
            self.versions, bool(plan.committed), self.unit_size, run.examples_total
        )
        self.max_pending = max(1, settings.max_pending_per_evaluator)
        self.thresholds = Thresholds(
            rows=settings.flush_rows, bytes=settings.flush_bytes, seconds=settings.flush_seconds
        )
        self.progress = Progress(
            examples_done=run.examples_done,
            examples_total=run.examples_total,
            scores=run.rows_count,
            errors=run.errors_count,
        )
        self.units_seen = self.examples_seen = 0
        # a rescore drives a Replay of stored calls instead of the runtime
        driven = ray.put(replay if replay is not None else runtime)
        fields = FieldPolicy.of(runtime, settings.example_field_bytes)
        self._drivers = Drivers(run.id, driven, context, self.unit_concurrency, services, fields)
        self._slots: list[_Slot] = []
        self._sizes: dict[int, int] = {}  # unit id -> bytes of its examples, until committed
        self._ready: deque[Unit] = deque()
        self._evaluating: dict[Any, tuple[_Slot, int]] = {}
        self._flushing: dict[Any, tuple[_Slot, bool]] = {}  # ref -> (slot, final)
        self._last_beat = self._last_tick = time.monotonic()

    def _unit_size(self) -> int:
        """The run's unit size (:func:`unit_size_for`), chosen before the first unit
        commits and kept on the run row, which resume reads."""
        configured = self.run.unit_size or self.settings.unit_size
        if self.plan.committed:
            return configured
        per_example, self.source = example_bytes(self.source)
        return unit_size_for(
            configured,
            per_example=per_example,
            inflight_bytes=self.settings.inflight_bytes,
            overlap=self.unit_concurrency if self.runtime.is_async else None,
            total=self.run.examples_total,
            actors=max(self.n_workers, self.n_evaluators),
            epochs=self.context.epochs,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def execute(self) -> int:
        """Run every uncommitted unit; returns the number of units in the dataset."""
        # the cut of the dataset, for the run's later attempts: its unit size and tail
        versions = {k: v for k, v in (self.versions or {}).items() if k != TAIL_KEY}
        if self.tail is not None:
            versions[TAIL_KEY] = list(self.tail)
        if self.unit_size != self.run.unit_size or versions != (self.versions or {}):
            self.versions = versions
            update_attempt(
                self.db, self.run.id, self.attempt, unit_size=self.unit_size, versions=versions
            )
        self._report()  # the total shows from the start, not from the first commit
        chunks = self._chunks()
        self._drivers.start(pool.acquire("driver", spread(self.nodes, self.n_workers)))
        evaluators = pool.acquire("evaluator", spread(self.nodes, self.n_evaluators))
        self._slots = [self._aim(lent) for lent in evaluators]
        done = False
        try:
            exhausted = False
            while True:
                # fed on to the end: units of a dead driver are driven again after the
                # source is exhausted
                exhausted = self._feed(chunks) or exhausted
                self._dispatch()
                if exhausted and self._idle():
                    if not any(s.held for s in self._slots):
                        done = True
                        return self.units_seen
                    self._final_flush()
                elif exhausted or self._read_all():
                    self._write_ahead()
                self._wait()
                self._housekeeping()
        finally:
            drivers = self._drivers.lents
            evaluators = [slot.lent for slot in self._slots]
            if done:
                pool.release("driver", drivers)
                pool.release("evaluator", evaluators)
            else:
                pool.discard(drivers + evaluators)

    def _chunks(self) -> Iterator[tuple[int, Chunk]]:
        reader = UnitReader(
            self.run.id, self.source, self.unit_size, self.plan, self.survey, self.tail
        )
        for unit_id, chunk in reader:
            self.units_seen, self.examples_seen = reader.units_seen, reader.examples_seen
            yield unit_id, chunk
        self.units_seen, self.examples_seen = reader.units_seen, reader.examples_seen

    def _idle(self) -> bool:
        return not (
            self._drivers.driving
            or self._drivers.again
            or self._ready
            or self._evaluating
            or self._flushing
        )

    def _aim(self, lent: Lent) -> _Slot:
        # no wait: the actor runs begin() before any unit sent after it
        lent.actor.begin.remote(
            run_id=self.run.id,
            attempt=self.attempt,
            evaluation=self.run.evaluation,
            version=self.run.version_label,
            settings=self.settings,
            thresholds=self.thresholds,
        )
        return _Slot(lent)

    # -- feeding and dispatching ---------------------------------------------------------

    def _feed(self, chunks: Iterator[tuple[int, Chunk]]) -> bool:
        """Queue units on the drivers while the pools have room; True once the source is
        exhausted (units to drive again are sent first)."""
        drivers = self._drivers
        while len(self._ready) < max(self.n_evaluators, self.n_workers):
            if not drivers.room():
                return False
            if drivers.again:
                unit = drivers.again.popleft()
            else:
                if self._sizes and self.progress.held_bytes >= self.settings.inflight_bytes:
                    return False  # enough examples in memory: commit some first
                item = next(chunks, None)
                if item is None:
                    return True
                unit = self._held(*item)
            drivers.drive(unit)
        return False

    def _held(self, unit_id: int, chunk: Chunk) -> Unit:
        """A unit read from the source, put in the object store until it is committed."""
        data = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
        self._sizes[unit_id] = len(data)
        self.progress.held_bytes += len(data)
        self._report()
        return Unit(unit_id, ray.put(data), len(data))

    def _dispatch(self) -> None:
        while self._ready:
            slot = min(self._slots, key=lambda s: s.pending)
            if slot.pending >= self.max_pending:
                return
            unit = self._ready.popleft()
            ref = slot.lent.actor.evaluate.remote(unit.payload)
            slot.pending += 1
            slot.held[unit.unit_id] = unit
            self._evaluating[ref] = (slot, unit.unit_id)

    # -- completions -------------------------------------------------------------------

    def _wait(self) -> None:
        driving = self._drivers.driving
        refs = [*driving, *self._evaluating, *self._flushing]
        if not refs:
            return
        done, _ = ray.wait(refs, num_returns=1, timeout=0.5)
        if done:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            if ref in driving:
                unit = self._drivers.driven(ref)
                if unit is not None:
                    self._ready.append(unit)
        for ref in done:
            if ref in self._evaluating:
                slot, unit_id = self._evaluating.pop(ref)
                slot.pending -= 1
                self._collect(slot, ref, unit_id=unit_id)
            elif ref in self._flushing:
                slot, final = self._flushing.pop(ref)
                self._collect(slot, ref, final=final)

    def _collect(
        self, slot: _Slot, ref: Any, *, unit_id: int | None = None, final: bool = False
    ) -> None:
        if slot not in self._slots:
            return  # a replaced actor's late answer: its units were re-sent already
        try:
            result = ray.get(ref)
        except ACTOR_GONE:
            self._replace(slot)
            return
        except ObjectLostError:
            if unit_id is None:
                raise
            # the node holding a driven payload died before an evaluator read it
            self._drivers.again.append(slot.held.pop(unit_id).undriven())
            return
        except RayTaskError as exc:
            raise task_error(self.run.id, exc) from None
        if isinstance(result, UnitDone):
            if result.lineage:
                self._record_lineage(result.lineage)
            if result.flush is not None:
                self._commit(slot, result.flush)
        elif result is not None:
            self._commit(slot, result)
        elif final and slot.held:
            # a final flush found an empty buffer while units are held: they were lost
            # (cannot happen with a healthy actor); send them again rather than wait forever
            self._replace(slot)

    def _commit(self, slot: _Slot, flush: Flush) -> None:
        try:
            units = commit_flush(self.db, self.store, self.run.id, self.attempt, flush)
        except RunNotRunning as exc:
            message = f"run {self.run.id} was {exc.state} while running"
            raise RunFailedError(message, self.run.id) from None
        for unit in units:
            redone = unit.unit_id in self.plan.redo
            self.committed.add(unit.unit_id)
            self.progress.held_bytes -= self._sizes.pop(unit.unit_id, 0)
            self.progress.examples_done += 0 if redone else unit.examples
            self.progress.scores += unit.rows
            self.progress.errors += unit.errors
            self.progress.units_done += 1
        for unit in flush.units:
            slot.held.pop(unit.unit_id, None)
        self._report()

    def _record_lineage(self, observed: dict[str, Any]) -> None:
        """Merge components found running into the run's versions (at once: a resumed
        attempt keeps what an earlier one saw)."""
        merged = merge_lineage(self.versions, observed)
        if merged != self.versions:
            self.versions = merged
            code = merged["code_version"]
            update_attempt(self.db, self.run.id, self.attempt, versions=merged, code_version=code)

    def _replace(self, dead: _Slot) -> None:
        """An evaluator died: start another and re-send every unit it held uncommitted."""
        index = self._slots.index(dead)
        self._slots[index] = self._aim(pool.replace("evaluator", dead.lent))
        for ref, (slot, _unit) in list(self._evaluating.items()):
            if slot is dead:
                del self._evaluating[ref]
        for ref, (slot, _final) in list(self._flushing.items()):
            if slot is dead:
                del self._flushing[ref]
        lost = [unit for unit in dead.held.values() if unit.unit_id not in self.committed]
        self._ready.extendleft(reversed(lost))

    def _read_all(self) -> bool:
        """Whether the last unit of a dataset of known length has been read. The source
        is exhausted only once a driver has room to ask it for one more, which may be
        after every unit was driven; this knows it as the last one is read (the reading
        still goes on to the end, which checks that the dataset did not change)."""
        total = self.run.examples_total
        return total is not None and 0 < total <= self.examples_seen

    def _write_ahead(self) -> None:
        """Once the last unit is read, have each evaluator write what it holds while the
        drivers drive the last units, when it holds more than is left to come: the write
        after the last unit, with every driver idle, is then that of a few units, not of a
        whole flush's worth (once per evaluator, so a short run adds one shard at most)."""
        left = len(self._drivers.driving) + len(self._ready) + len(self._drivers.again)
        for slot in self._unflushed():
            if not slot.ahead and len(slot.held) > left:
                slot.ahead = True
                self._flushing[slot.lent.actor.flush.remote()] = (slot, False)

    def _final_flush(self) -> None:
        for slot in self._unflushed():
            self._flushing[slot.lent.actor.flush.remote()] = (slot, True)

    def _unflushed(self) -> list[_Slot]:
        """Evaluators that hold uncommitted units and have no flush on the way."""
        busy = {id(s) for s, _ in self._flushing.values()}
        return [slot for slot in self._slots if slot.held and id(slot) not in busy]

    # -- heartbeat, age flushes, cancel and timeout --------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self.progress.held_bytes >= self.settings.inflight_bytes:
            # the examples held for units waiting to be written passed their budget: write
            for slot in self._unflushed():
                self._flushing[slot.lent.actor.flush.remote()] = (slot, False)
        if now - self._last_tick >= max(0.5, self.thresholds.seconds / 2):
            self._last_tick = now
            for slot in self._unflushed():
                self._flushing[slot.lent.actor.tick.remote()] = (slot, False)
        if now - self._last_beat >= self.settings.heartbeat_seconds:
            self._last_beat = now
            try:
                heartbeat(self.db, self.run.id, self.attempt)
            except RunNotRunning as exc:
                message = f"run {self.run.id} was {exc.state} while running"
                raise RunFailedError(message, self.run.id) from None
            self._report()
        if self.deadline is not None and now > self.deadline:
            raise RunFailedError(f"run {self.run.id} timed out", self.run.id)

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
