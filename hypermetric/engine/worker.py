"""The driver side of a work unit: run the runtime over a chunk of examples, recording every
component call, and pack what the evaluators need into one compact payload.

Pure Python (no Ray): a Ray task calls :func:`drive_unit`; tests call it directly.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

from hypermetric.api.component import Component, describe_error
from hypermetric.api.context import CallRecord, ExampleRecorder, RunContext, current_recorder
from hypermetric.api.datasets import Chunk, example_ids
from hypermetric.api.runtime import Runtime

__all__ = ["UnitPayload", "drive_unit", "load_payload"]


@dataclass
class UnitPayload:
    """Everything an evaluator needs to score one unit, column by column."""

    unit_id: int
    example_ids: list[str]
    examples: list[dict[str, Any]]
    #: per call: position of its example, component name, call index, inputs, output, error, ms
    call_example: list[int] = field(default_factory=list)
    call_component: list[str] = field(default_factory=list)
    call_index: list[int] = field(default_factory=list)
    call_inputs: list[dict[str, Any] | None] = field(default_factory=list)
    call_output: list[Any] = field(default_factory=list)
    call_error: list[str | None] = field(default_factory=list)
    call_latency: list[float] = field(default_factory=list)
    components: dict[str, Component] = field(default_factory=dict)

    def add(self, position: int, call: CallRecord, inputs: dict[str, Any] | None = None) -> None:
        """Append one call of the example at ``position``."""
        self.call_example.append(position)
        self.call_component.append(call.component)
        self.call_index.append(call.call_index)
        self.call_inputs.append(call.inputs if inputs is None else inputs)
        self.call_output.append(call.output)
        self.call_error.append(call.error)
        self.call_latency.append(call.latency_ms)


def _run_sync(runtime: Runtime, example: dict[str, Any], context: RunContext) -> Any:
    if runtime.takes_context:
        return runtime.fn(example, context=context)
    return runtime.fn(example)


def _drive_one(
    runtime: Runtime, example: dict[str, Any], context: RunContext
) -> tuple[ExampleRecorder, CallRecord]:
    recorder = ExampleRecorder()
    token = current_recorder.set(recorder)
    start = time.perf_counter()
    try:
        output, error = _run_sync(runtime, example, context), None
    except Exception as exc:
        output, error = None, describe_error(exc)
    finally:
        current_recorder.reset(token)
    elapsed = (time.perf_counter() - start) * 1000.0
    return recorder, CallRecord(runtime.name, 0, {}, output, error, elapsed)


async def _drive_one_async(
    runtime: Runtime, example: dict[str, Any], context: RunContext, gate: asyncio.Semaphore
) -> tuple[ExampleRecorder, CallRecord]:
    async with gate:
        recorder = ExampleRecorder()
        current_recorder.set(recorder)  # this task's own context copy
        start = time.perf_counter()
        try:
            if runtime.takes_context:
                output = await runtime.fn(example, context=context)
            else:
                output = await runtime.fn(example)
            error = None
        except Exception as exc:
            output, error = None, describe_error(exc)
        elapsed = (time.perf_counter() - start) * 1000.0
        return recorder, CallRecord(runtime.name, 0, {}, output, error, elapsed)


async def _drive_all_async(
    runtime: Runtime, rows: list[dict[str, Any]], context: RunContext, concurrency: int
) -> list[tuple[ExampleRecorder, CallRecord]]:
    gate = asyncio.Semaphore(concurrency)
    tasks = [asyncio.create_task(_drive_one_async(runtime, r, context, gate)) for r in rows]
    return list(await asyncio.gather(*tasks))


def drive_unit(
    runtime: Runtime, chunk: Chunk, unit_id: int, context: RunContext, concurrency: int = 1
) -> bytes:
    """Run ``runtime`` over one chunk; returns the pickled :class:`UnitPayload`."""
    rows = chunk.rows()
    payload = UnitPayload(unit_id=unit_id, example_ids=example_ids(rows), examples=rows)
    if runtime.is_async:
        results = asyncio.run(_drive_all_async(runtime, rows, context, max(1, concurrency)))
    else:
        results = [_drive_one(runtime, row, context) for row in rows]
    for position, (recorder, final) in enumerate(results):
        for call in recorder.calls:
            payload.add(position, call)
        payload.add(position, final, inputs=None)
        payload.components.update(recorder.components)
    return _pack(payload)


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
        for column in (payload.call_output, payload.call_inputs):
            try:
                pickle.dumps(column[i], protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                kind = "output" if column is payload.call_output else "inputs"
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
