"""The driver side of a work unit: run the runtime over a chunk of examples, recording every
component call, then score the calls where they were made (:mod:`hypermetric.engine.scoring`).

Pure Python (no Ray): a driver actor calls :func:`drive_unit`; tests call it directly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pyarrow as pa

from hypermetric.api.component import CAUGHT, describe_error
from hypermetric.api.context import CallRecorder, RunContext, current_recorder
from hypermetric.api.datasets import Chunk
from hypermetric.api.identity import IdStream
from hypermetric.api.runtime import Runtime
from hypermetric.engine.scoring import ScoredUnit, Scorer

__all__ = ["UnitPayload", "drive_unit"]


class UnitPayload(CallRecorder):
    """Everything scoring one unit needs: its examples and every call, by column.

    Each call carries the position of its example; the runtime's own call (its final output,
    end-to-end latency or error) is recorded as a call of the runtime's name, index 0.
    """

    __slots__ = ("example_ids", "example_rows", "examples", "positions", "unit_id")

    def __init__(
        self,
        unit_id: int,
        ids: list[str],
        examples: list[dict[str, Any]],
        example_rows: pa.RecordBatch,
        positions: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.unit_id = unit_id
        self.example_ids = ids
        self.examples = examples
        #: the unit's examples rows, made before it is driven (what a runtime does to its
        #: example dicts is not stored)
        self.example_rows = example_rows
        #: for a retry of some examples of the unit, their positions in it
        self.positions = positions

    @classmethod
    def of(cls, chunk: Chunk, unit_id: int, scorer: Scorer) -> UnitPayload:
        """The payload of a chunk, before it is driven: its examples decoded, their ids
        (assigned as a dataset of its own if the chunk carries none) and examples rows."""
        rows = chunk.rows()
        ids = chunk.ids if chunk.ids is not None else IdStream().assign(chunk, rows)
        return cls(unit_id, ids, rows, scorer.examples(ids, rows), chunk.positions)


def _epochs(context: RunContext) -> list[RunContext]:
    """The context of each epoch of the run (one, the run's own, for a run of one)."""
    if context.epochs <= 1:
        return [context]
    return [replace(context, epoch=e) for e in range(context.epochs)]


def _drive_sync(
    runtime: Runtime, rows: list[dict[str, Any]], context: RunContext, payload: UnitPayload
) -> None:
    fn, name, with_context = runtime.fn, runtime.name, runtime.takes_context
    contexts = _epochs(context)
    token = current_recorder.set(payload)
    try:
        counters = payload.counters
        for position, example in enumerate(rows):
            # every epoch of an example in a row: a unit holds all of them, so a retry or
            # a resume drives an example's epochs together, never some of them
            for epoch, ctx in enumerate(contexts):
                payload.position, payload.epoch = position, epoch  # payload.start, inlined
                counters.clear()
                start = time.perf_counter()
                try:
                    output = fn(example, context=ctx) if with_context else fn(example)
                    error = None
                except CAUGHT as exc:
                    output, error = None, describe_error(exc)
                payload.add(name, 0, None, output, error, (time.perf_counter() - start) * 1e3)
    finally:
        current_recorder.reset(token)


async def _drive_one_async(
    runtime: Runtime,
    position: int,
    example: dict[str, Any],
    context: RunContext,
    gate: asyncio.Semaphore,
    services: Any = None,
    guard_all: bool = False,
) -> CallRecorder:
    async with gate:
        recorder = CallRecorder(services, guard_all)
        recorder.start(position, context.epoch)
        current_recorder.set(recorder)  # this task's own copy of the context
        start = time.perf_counter()
        try:
            if runtime.takes_context:
                output = await runtime.fn(example, context=context)
            else:
                output = await runtime.fn(example)
            error = None
        except CAUGHT as exc:
            output, error = None, describe_error(exc)
        recorder.add(runtime.name, 0, None, output, error, (time.perf_counter() - start) * 1e3)
        return recorder


async def _drive_async(
    runtime: Runtime,
    rows: list[dict[str, Any]],
    context: RunContext,
    concurrency: int,
    payload: UnitPayload,
) -> None:
    gate = asyncio.Semaphore(concurrency)
    services, guard_all = payload.services, payload.guard_all
    contexts = _epochs(context)
    tasks = [
        asyncio.create_task(_drive_one_async(runtime, i, row, ctx, gate, services, guard_all))
        for i, row in enumerate(rows)
        for ctx in contexts
    ]
    for recorder in await asyncio.gather(*tasks):
        payload.merge(recorder)


def drive_unit(
    runtime: Runtime,
    chunk: Chunk,
    unit_id: int,
    context: RunContext,
    concurrency: int = 1,
    scorer: Scorer | None = None,
    services: Any = None,
) -> ScoredUnit:
    """Run ``runtime`` over one chunk and score its calls (with ``scorer``, which keeps what
    it learned from earlier units of the run, or a new one).

    The chunk carries its examples' ids (assigned over the whole dataset by the process that
    cut it); a chunk without them gets the ids it would have as a dataset of its own.
    ``services`` (:class:`~hypermetric.api.calls.CallServices`) serve the calls' rate limits
    and cache; without them limits are this process's and nothing is cached. A run of
    several epochs (``context.epochs``) drives each example that many times."""
    scorer = scorer or Scorer(runtime)
    payload = UnitPayload.of(chunk, unit_id, scorer)
    rows = payload.examples
    if services is not None:
        payload.services = services
        payload.guard_all = bool(services.cache_mode) and services.cache is not None
    if runtime.is_async:
        asyncio.run(_drive_async(runtime, rows, context, max(1, concurrency), payload))
    else:
        _drive_sync(runtime, rows, context, payload)
    return scorer.score(payload)
