"""The driver side of a work unit: run the runtime over a chunk of examples, recording every
component call, then score the calls where they were made (:mod:`hypermetric.engine.scoring`).

Pure Python (no Ray): a driver actor calls :func:`drive_unit`; tests call it directly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

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

    __slots__ = ("example_ids", "examples", "positions", "unit_id")

    def __init__(
        self,
        unit_id: int,
        ids: list[str],
        examples: list[dict[str, Any]],
        positions: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.unit_id = unit_id
        self.example_ids = ids
        self.examples = examples
        #: for a retry of some examples of the unit, their positions in it
        self.positions = positions


def _drive_sync(
    runtime: Runtime, rows: list[dict[str, Any]], context: RunContext, payload: UnitPayload
) -> None:
    fn, name, with_context = runtime.fn, runtime.name, runtime.takes_context
    token = current_recorder.set(payload)
    try:
        for position, example in enumerate(rows):
            payload.start(position)
            start = time.perf_counter()
            try:
                output = fn(example, context=context) if with_context else fn(example)
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
        recorder.start(position)
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
    tasks = [
        asyncio.create_task(_drive_one_async(runtime, i, row, context, gate, services, guard_all))
        for i, row in enumerate(rows)
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
    and cache; without them limits are this process's and nothing is cached."""
    rows = chunk.rows()
    ids = chunk.ids if chunk.ids is not None else IdStream().assign(chunk, rows)
    payload = UnitPayload(unit_id, ids, rows, chunk.positions)
    if services is not None:
        payload.services = services
        payload.guard_all = bool(services.cache_mode) and services.cache is not None
    if runtime.is_async:
        asyncio.run(_drive_async(runtime, rows, context, max(1, concurrency), payload))
    else:
        _drive_sync(runtime, rows, context, payload)
    return (scorer or Scorer(runtime)).score(payload)
