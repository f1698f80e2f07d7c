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
from hypermetric.api.component import CAUGHT, describe_error
from hypermetric.api.context import CallRecorder, RunContext, current_recorder
from hypermetric.api.datasets import Chunk
from hypermetric.api.identity import IdStream
from hypermetric.api.runtime import Runtime

__all__ = ["UnitPayload", "drive_unit", "load_payload"]


class UnitPayload(CallRecorder):
    """Everything an evaluator needs to score one unit: its examples and every call, by column.

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

    def __reduce__(self) -> Any:
        state = {name: getattr(self, name) for name in CallRecorder.__slots__}
        args = (self.unit_id, self.example_ids, self.examples, state, self.positions)
        return (_restore, args)


def _restore(
    unit_id: int,
    ids: list[str],
    examples: list[dict[str, Any]],
    state: dict[str, Any],
    positions: tuple[int, ...] | None = None,
) -> UnitPayload:
    payload = UnitPayload(unit_id, ids, examples, positions)
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
    tasks = [
        asyncio.create_task(_drive_one_async(runtime, i, row, context, gate))
        for i, row in enumerate(rows)
    ]
    for recorder in await asyncio.gather(*tasks):
        payload.merge(recorder)


def drive_unit(
    runtime: Runtime, chunk: Chunk, unit_id: int, context: RunContext, concurrency: int = 1
) -> bytes:
    """Run ``runtime`` over one chunk; returns the pickled :class:`UnitPayload`.

    The chunk carries its examples' ids (assigned over the whole dataset by the process that
    cut it); a chunk without them gets the ids it would have as a dataset of its own."""
    rows = chunk.rows()
    ids = chunk.ids if chunk.ids is not None else IdStream().assign(chunk, rows)
    payload = UnitPayload(unit_id, ids, rows, chunk.positions)
    if runtime.is_async:
        asyncio.run(_drive_async(runtime, rows, context, max(1, concurrency), payload))
    else:
        _drive_sync(runtime, rows, context, payload)
    if chunk.kind == "arrow":
        _project(payload, chunk, [runtime.plans, *(c.plans for c in payload.components.values())])
    return _pack(payload, runtime.name)


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


def _pack(payload: UnitPayload, runtime: str) -> bytes:
    try:
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # pickling raises many kinds; by value, then without what cannot go
        return _pack_by_value(payload, runtime)


def _pack_by_value(payload: UnitPayload, runtime: str) -> bytes:
    # Components defined in a script or a function pickle by value, not by reference.
    from ray import cloudpickle

    try:
        return bytes(cloudpickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # as above: some value is not plain data
        _sanitize(payload, runtime)
        return bytes(cloudpickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


def _sanitize(payload: UnitPayload, runtime: str) -> None:
    """Replace values that cannot cross a process boundary with an error on their call: a
    call's output or inputs, or a field of an example (its runtime call carries the error,
    so the example is failed, naming the field)."""
    for i in range(len(payload.call_output)):
        for kind, column in (("output", payload.call_output), ("inputs", payload.call_inputs)):
            problem = _unpicklable(column[i])
            if problem is not None:
                column[i] = None
                payload.call_error[i] = (
                    f"component {kind} cannot be serialized ({problem}); "
                    "return plain data (str, numbers, lists, dicts)"
                )
    calls = zip(payload.call_example, payload.call_component, strict=True)
    own = {p: i for i, (p, c) in enumerate(calls) if c == runtime}
    for position, example in enumerate(payload.examples):
        if _unpicklable(example) is None:
            continue
        bad = {k: _unpicklable(v) for k, v in example.items()}
        bad = {k: v for k, v in bad.items() if v is not None}
        payload.examples[position] = {k: v for k, v in example.items() if k not in bad}
        field, problem = next(iter(bad.items()))
        call = own.get(position)
        if call is not None:
            payload.call_output[call] = None
            payload.call_error[call] = (
                f"example field {field!r} cannot be serialized ({problem}); keep examples "
                "plain data, or set such values on the example outside the dataset"
            )


def _unpicklable(value: Any) -> str | None:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickling raises many kinds: each means "not plain data"
        return describe_error(exc)
    return None


def load_payload(data: bytes) -> UnitPayload:
    """The payload :func:`drive_unit` packed."""
    payload = pickle.loads(data)
    if not isinstance(payload, UnitPayload):
        raise TypeError(f"expected a UnitPayload, got {type(payload).__name__}")
    return payload
