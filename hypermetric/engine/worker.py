"""The driver side of a work unit: run the runtime over a chunk of examples, recording every
component call, and pack what the evaluators need into one compact payload.

Pure Python (no Ray): a Ray task calls :func:`drive_unit`; tests call it directly.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import time
from typing import Any

from hypermetric.api.binding import Plan, example_keys
from hypermetric.api.component import describe_error
from hypermetric.api.context import CallRecorder, RunContext, current_recorder
from hypermetric.api.datasets import Chunk, example_ids
from hypermetric.api.runtime import Runtime

__all__ = ["UnitPayload", "drive_unit", "load_payload"]


class UnitPayload(CallRecorder):
    """Everything an evaluator needs to score one unit: its examples and every call, by column.

    Each call carries the position of its example; the runtime's own call (its final output,
    end-to-end latency or error) is recorded as a call of the runtime's name, index 0.
    """

    __slots__ = ("example_ids", "examples", "unit_id")

    def __init__(self, unit_id: int, ids: list[str], examples: list[dict[str, Any]]) -> None:
        super().__init__()
        self.unit_id = unit_id
        self.example_ids = ids
        self.examples = examples

    def __reduce__(self) -> Any:
        state = {name: getattr(self, name) for name in CallRecorder.__slots__}
        return (_restore, (self.unit_id, self.example_ids, self.examples, state))


def _restore(
    unit_id: int, ids: list[str], examples: list[dict[str, Any]], state: dict[str, Any]
) -> UnitPayload:
    payload = UnitPayload(unit_id, ids, examples)
    for name, value in state.items():
        setattr(payload, name, value)
    return payload


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
            except Exception as exc:
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
) -> CallRecorder:
    async with gate:
        recorder = CallRecorder()
        recorder.start(position)
        current_recorder.set(recorder)  # this task's own copy of the context
        start = time.perf_counter()
        try:
            if runtime.takes_context:
                output = await runtime.fn(example, context=context)
            else:
                output = await runtime.fn(example)
            error = None
        except Exception as exc:
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
    tasks = [
        asyncio.create_task(_drive_one_async(runtime, i, row, context, gate))
        for i, row in enumerate(rows)
    ]
    for recorder in await asyncio.gather(*tasks):
        payload.merge(recorder)


def drive_unit(
    runtime: Runtime, chunk: Chunk, unit_id: int, context: RunContext, concurrency: int = 1
) -> bytes:
    """Run ``runtime`` over one chunk; returns the pickled :class:`UnitPayload`."""
    rows = chunk.rows()
    payload = UnitPayload(unit_id, example_ids(rows), rows)
    if runtime.is_async:
        asyncio.run(_drive_async(runtime, rows, context, max(1, concurrency), payload))
    else:
        _drive_sync(runtime, rows, context, payload)
    if chunk.kind == "arrow":
        _project(payload, chunk, [runtime.plans, *(c.plans for c in payload.components.values())])
    return _pack(payload)


def _project(payload: UnitPayload, chunk: Chunk, plans: list[tuple[Plan, ...]]) -> None:
    """Cut the examples to the fields the evals read, so that a wide example (documents,
    contexts) does not travel to the evaluators whole when they read its answer only.
    Left whole if an eval reads a field the dataset lacks: its error lists every field."""
    keys = example_keys(itertools.chain.from_iterable(plans))
    if keys is None:
        return
    fields, fallbacks = keys
    names = chunk.data.schema.names
    if not fields <= set(names):
        return
    kept = [name for name in names if name in fields or name in fallbacks]
    if len(kept) < len(names):
        payload.examples = chunk.data.select(kept).to_pylist()


def _pack(payload: UnitPayload) -> bytes:
    try:
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    # Components defined in a script or a function pickle by value, not by reference.
    from ray import cloudpickle

    try:
        return bytes(cloudpickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        _sanitize(payload)
        return bytes(cloudpickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


def _sanitize(payload: UnitPayload) -> None:
    """Replace values that cannot cross a process boundary with an error on their call."""
    for i in range(len(payload.call_output)):
        for kind, column in (("output", payload.call_output), ("inputs", payload.call_inputs)):
            try:
                pickle.dumps(column[i], protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                column[i] = None
                payload.call_error[i] = (
                    f"component {kind} cannot be serialized ({describe_error(exc)}); "
                    "return plain data (str, numbers, lists, dicts)"
                )
    for j, example in enumerate(payload.examples):
        try:
            pickle.dumps(example, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            payload.examples[j] = {k: repr(v) for k, v in example.items()}


def load_payload(data: bytes) -> UnitPayload:
    """The payload :func:`drive_unit` packed."""
    payload = pickle.loads(data)
    if not isinstance(payload, UnitPayload):
        raise TypeError(f"expected a UnitPayload, got {type(payload).__name__}")
    return payload
