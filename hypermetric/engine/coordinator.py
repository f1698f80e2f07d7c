"""The coordinator: streams the dataset as work units through the driver pool and the
evaluator pool with bounded queues, commits every flush, and survives dead workers and
dead evaluators.

Backpressure: a unit is read from the source only while fewer than ``workers`` units are
being driven and fewer than ``evaluators`` driven units wait for an evaluator; an evaluator
takes at most ``max_pending_per_evaluator`` units at a time. So the units in memory are
bounded whatever the dataset's size, and a slow evaluator pool slows the reading of the
source instead of piling up rows.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from hypermetric.api.context import RunContext
from hypermetric.api.datasets import Chunk, iter_chunks
from hypermetric.api.runtime import Runtime
from hypermetric.catalog.db import Database
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import heartbeat
from hypermetric.catalog.shards import RunNotRunning
from hypermetric.config import Settings
from hypermetric.engine.actors import drive_task
from hypermetric.engine.cluster import cluster_cpus
from hypermetric.engine.commit import commit_flush
from hypermetric.engine.evaluator import Flush, Thresholds, UnitDone
from hypermetric.engine.pool import pool
from hypermetric.errors import EngineError, HypermetricError, RunFailedError
from hypermetric.storage.files import ShardStore

__all__ = ["Coordinator", "Progress"]


@dataclass
class Progress:
    """What a progress display shows."""

    examples_done: int = 0
    examples_total: int | None = None
    scores: int = 0
    errors: int = 0
    units_done: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Slot:
    """One evaluator actor and the units it holds until they are committed."""

    actor: Any
    pending: int = 0
    held: dict[int, Any] = field(default_factory=dict)  # unit id -> payload ref


class Coordinator:
    """Drives one attempt of one run to the point where every unit is committed."""

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
        committed: set[int],
        on_progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.db, self.store, self.run, self.runtime = db, store, run, runtime
        self.context, self.settings, self.source = context, settings, source
        self.committed = set(committed)
        self.on_progress = on_progress
        self.deadline = time.monotonic() + timeout if timeout else None
        self.unit_size = run.unit_size or settings.unit_size
        cpus = cluster_cpus()
        self.n_workers = settings.workers or cpus
        self.n_evaluators = settings.evaluators or cpus
        self.max_pending = max(1, settings.max_pending_per_evaluator)
        self.thresholds = Thresholds(
            rows=settings.flush_rows, bytes=settings.flush_bytes, seconds=settings.flush_seconds
        )
        self.progress = Progress(
            examples_done=run.examples_done, scores=run.rows_count, errors=run.errors_count
        )
        self.units_seen = 0
        self._runtime_ref = ray.put(runtime)
        self._slots: list[_Slot] = []
        self._driving: dict[Any, int] = {}
        self._ready: deque[tuple[int, Any]] = deque()
        self._evaluating: dict[Any, tuple[_Slot, int]] = {}
        self._flushing: dict[Any, tuple[_Slot, bool]] = {}  # ref -> (slot, final)
        self._last_beat = self._last_tick = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------

    def execute(self) -> int:
        """Run every uncommitted unit; returns the number of units in the dataset."""
        chunks = self._chunks()
        self._slots = [self._aim(actor) for actor in pool.acquire(self.n_evaluators)]
        done = False
        try:
            exhausted = False
            while True:
                exhausted = exhausted or self._feed(chunks)
                self._dispatch()
                if exhausted and self._idle():
                    if not any(s.held for s in self._slots):
                        done = True
                        return self.units_seen
                    self._final_flush()
                self._wait()
                self._housekeeping()
        finally:
            actors = [slot.actor for slot in self._slots]
            if done:
                pool.release(actors)
            else:
                pool.discard(actors)

    def _chunks(self) -> Iterator[tuple[int, Chunk]]:
        for unit_id, chunk in enumerate(iter_chunks(self.source, self.unit_size)):
            self.units_seen = unit_id + 1
            if unit_id not in self.committed:
                yield unit_id, chunk

    def _idle(self) -> bool:
        return not (self._driving or self._ready or self._evaluating or self._flushing)

    def _new_slot(self) -> _Slot:
        return self._aim(pool.acquire(1)[0])

    def _aim(self, actor: Any) -> _Slot:
        # no wait: the actor runs begin() before any unit sent after it
        actor.begin.remote(
            run_id=self.run.id,
            evaluation=self.run.evaluation,
            version=self.run.version_label,
            runtime=self._runtime_ref,
            settings=self.settings,
            thresholds=self.thresholds,
        )
        return _Slot(actor=actor)

    # -- feeding and dispatching ---------------------------------------------------------

    def _feed(self, chunks: Iterator[tuple[int, Chunk]]) -> bool:
        """Start driver tasks while the pools have room; True once the source is exhausted."""
        concurrency = math.ceil(self.runtime.concurrency / self.n_workers)
        while len(self._driving) < self.n_workers and len(self._ready) < self.n_evaluators:
            item = next(chunks, None)
            if item is None:
                return True
            unit_id, chunk = item
            ref = drive_task.remote(self._runtime_ref, chunk, unit_id, self.context, concurrency)
            self._driving[ref] = unit_id
        return False

    def _dispatch(self) -> None:
        while self._ready:
            slot = min(self._slots, key=lambda s: s.pending)
            if slot.pending >= self.max_pending:
                return
            unit_id, payload = self._ready.popleft()
            ref = slot.actor.evaluate.remote(payload)
            slot.pending += 1
            slot.held[unit_id] = payload
            self._evaluating[ref] = (slot, unit_id)

    # -- completions -------------------------------------------------------------------

    def _wait(self) -> None:
        refs = [*self._driving, *self._evaluating, *self._flushing]
        if not refs:
            return
        done, _ = ray.wait(refs, num_returns=1, timeout=0.5)
        if done:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            if ref in self._driving:
                self._ready.append((self._driving.pop(ref), ref))
        for ref in done:
            if ref in self._evaluating:
                slot, _unit = self._evaluating.pop(ref)
                slot.pending -= 1
                self._collect(slot, ref)
            elif ref in self._flushing:
                slot, final = self._flushing.pop(ref)
                self._collect(slot, ref, final=final)

    def _collect(self, slot: _Slot, ref: Any, *, final: bool = False) -> None:
        if slot not in self._slots:
            return  # a replaced actor's late answer: its units were re-sent already
        try:
            result = ray.get(ref)
        except RayActorError:
            self._replace(slot)
            return
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, HypermetricError):
                raise cause from None
            raise EngineError(f"run {self.run.id}: {str(exc).strip().splitlines()[-1]}") from None
        if isinstance(result, UnitDone):
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
            units = commit_flush(self.db, self.store, self.run.id, flush)
        except RunNotRunning as exc:
            for file in flush.files:
                self.store.delete(file.path)
            message = f"run {self.run.id} was {exc.state} while running"
            raise RunFailedError(message, self.run.id) from None
        for unit in units:
            self.committed.add(unit.unit_id)
            self.progress.examples_done += unit.examples
            self.progress.scores += unit.rows
            self.progress.errors += unit.errors
            self.progress.units_done += 1
        for unit in flush.units:
            slot.held.pop(unit.unit_id, None)
        self._report()

    def _replace(self, dead: _Slot) -> None:
        """An evaluator died: start another and re-send every unit it held uncommitted."""
        index = self._slots.index(dead)
        self._slots[index] = self._new_slot()
        for ref, (slot, _unit) in list(self._evaluating.items()):
            if slot is dead:
                del self._evaluating[ref]
        for ref, (slot, _final) in list(self._flushing.items()):
            if slot is dead:
                del self._flushing[ref]
        lost = [(u, p) for u, p in dead.held.items() if u not in self.committed]
        self._ready.extendleft(reversed(lost))

    def _final_flush(self) -> None:
        for slot in self._unflushed():
            self._flushing[slot.actor.flush.remote()] = (slot, True)

    def _unflushed(self) -> list[_Slot]:
        """Evaluators that hold uncommitted units and have no flush on the way."""
        busy = {id(s) for s, _ in self._flushing.values()}
        return [slot for slot in self._slots if slot.held and id(slot) not in busy]

    # -- heartbeat, age flushes, cancel and timeout --------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_tick >= max(0.5, self.thresholds.seconds / 2):
            self._last_tick = now
            for slot in self._unflushed():
                self._flushing[slot.actor.tick.remote()] = (slot, False)
        if now - self._last_beat >= self.settings.heartbeat_seconds:
            self._last_beat = now
            state = heartbeat(self.db, self.run.id)
            if state != "running":
                raise RunFailedError(f"run {self.run.id} was {state} while running", self.run.id)
            self._report()
        if self.deadline is not None and now > self.deadline:
            raise RunFailedError(f"run {self.run.id} timed out", self.run.id)

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
