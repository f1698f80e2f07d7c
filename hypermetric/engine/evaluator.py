"""The evaluator side: score every recorded call with its component's evals, buffer the rows
in columns, and flush them as Parquet shards when a threshold is reached.

Pure Python (no Ray): :class:`EvaluatorCore` is wrapped by a Ray actor in
:mod:`hypermetric.engine.actors`; tests drive it directly. Nothing here touches the DB:
a flush returns a :class:`Flush` descriptor for the coordinator to commit.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _string
from typing import Any

import numpy as np
import pyarrow as pa

from hypermetric.api.binding import Plan
from hypermetric.api.component import CAUGHT, describe_error
from hypermetric.api.runtime import Runtime
from hypermetric.api.versions import component_lineage
from hypermetric.catalog.records import FailedExample, ShardFile, UnitSummary
from hypermetric.engine.worker import UnitPayload, load_payload
from hypermetric.errors import BindingError
from hypermetric.storage.files import ShardStore
from hypermetric.storage.schemas import CALLS_SCHEMA, SCORES_SCHEMA

__all__ = ["EvaluatorCore", "Flush", "Thresholds", "UnitDone"]


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
    #: unit id -> (scores start, scores end, calls start, calls end) in the files
    ranges: dict[int, tuple[int, int, int, int]]


@dataclass(frozen=True)
class UnitDone:
    """The small descriptor an evaluation returns to the coordinator; ``lineage`` holds the
    components this evaluator scored for the first time (name -> hash, evals)."""

    unit: UnitSummary
    flush: Flush | None
    lineage: dict[str, Any] | None = None


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "__float__") and not isinstance(value, (str, bytes)):
        return float(value)
    raise TypeError(type(value).__name__)


#: JSON text with repr() for what JSON cannot hold. With the C accelerator, its encoder is
#: built once (JSONEncoder.encode builds a new one on every call, which costs as much as
#: encoding a call's inputs); its markers catch circular values and are left dirty by an error.
_markers: dict[int, Any] = {}
_encode: Callable[[Any], str]
if c_make_encoder is not None:
    _c_encoder = c_make_encoder(_markers, repr, _string, None, ":", ",", False, False, True)

    def _encode_c(value: Any) -> str:
        return "".join(_c_encoder(value, 0))

    _encode = _encode_c
else:  # pragma: no cover - CPython always has the accelerator
    _encode = json.JSONEncoder(default=repr, ensure_ascii=False, separators=(",", ":")).encode


def _json(value: Any) -> str | None:
    """JSON text of a call's inputs or output (anything not JSON becomes its repr)."""
    if value is None:
        return None
    if type(value) is str:
        return _string(value)
    try:
        return _encode(value)
    except (TypeError, ValueError, RecursionError):
        _markers.clear()
        return _string(repr(value))


class _Columns:
    """Column lists for one dataset; constants per unit are expanded at flush time."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.data: dict[str, list[Any]] = {n: [] for n in names}
        self.unit_counts: list[int] = []
        self.unit_times: list[datetime] = []

    def __len__(self) -> int:
        return sum(self.unit_counts)

    def table(self, schema: pa.Schema, constants: dict[str, Any]) -> pa.Table:
        n = len(self)
        arrays = []
        for field in schema:
            if field.name in self.data:
                arrays.append(pa.array(self.data[field.name], type=field.type))
            elif field.name == "created_at":
                stamps = np.repeat(
                    np.array([t.replace(tzinfo=None) for t in self.unit_times], "datetime64[us]"),
                    self.unit_counts,
                )
                arrays.append(pa.array(stamps, type=field.type))
            else:
                value = constants[field.name]
                arrays.append(
                    pa.nulls(n, field.type)
                    if value is None
                    else pa.repeat(pa.scalar(value, field.type), n)
                )
        return pa.Table.from_arrays(arrays, schema=schema)


_SCORE_COLS = ("example_id", "component", "call_index", "metric", "value", "error")
_CALL_COLS = ("example_id", "component", "call_index", "inputs", "output", "latency_ms", "error")


class EvaluatorCore:
    """Scores units, buffers rows, writes shards at thresholds. One per evaluator actor."""

    def __init__(
        self,
        *,
        run_id: int,
        evaluation: str,
        version: str | None,
        runtime: Runtime,
        store: ShardStore,
        thresholds: Thresholds,
        attempt: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id, self.evaluation, self.version = run_id, evaluation, version
        self.attempt = attempt
        self.runtime = runtime
        self.store = store
        self.thresholds = thresholds
        self.clock = clock
        self.plans: dict[str, tuple[Plan, ...]] = {runtime.name: runtime.plans}
        self.checked: set[tuple[str, str]] = set()
        self._reset()

    def _reset(self) -> None:
        self.scores = _Columns(_SCORE_COLS)
        self.calls = _Columns(_CALL_COLS)
        self.units: list[UnitSummary] = []
        self.ranges: dict[int, tuple[int, int, int, int]] = {}
        self.bytes = 0
        self.started: float | None = None

    @property
    def buffered_units(self) -> list[int]:
        """Ids of the units whose rows are buffered and not flushed yet."""
        return [u.unit_id for u in self.units]

    def evaluate(self, payload: Any) -> UnitDone:
        """Score one unit's calls into the buffer; flush if a threshold is reached."""
        if not isinstance(payload, UnitPayload):
            payload = load_payload(payload)
        lineage: dict[str, Any] = {}
        for name, comp in payload.components.items():
            if name not in self.plans:
                self.plans[name] = comp.plans
                lineage[name] = component_lineage(comp)
        if self.started is None:
            self.started = self.clock()
        s0, c0 = len(self.scores), len(self.calls)
        errors, failed = self._score(payload)
        now = datetime.now(UTC)
        n_scores, n_calls = len(self.scores.data["metric"]) - s0, len(payload.call_component)
        for cols, count in ((self.scores, n_scores), (self.calls, n_calls)):
            cols.unit_counts.append(count)
            cols.unit_times.append(now)
        unit = UnitSummary(
            unit_id=payload.unit_id,
            examples=len(payload.example_ids),
            rows=n_scores,
            calls=n_calls,
            errors=errors,
            failed_examples=len(failed),
            failed=self._failed(payload, failed, s0),
        )
        self.units.append(unit)
        self.ranges[payload.unit_id] = (s0, s0 + n_scores, c0, c0 + n_calls)
        flush = self.flush() if self._due() else None
        return UnitDone(unit=unit, flush=flush, lineage=lineage or None)

    def _failed(self, p: Any, failed: set[int], s0: int) -> tuple[FailedExample, ...]:
        """The unit's failed examples with the rows each wrote: what a retry drives again
        and retracts. Rows are counted for failed examples only (ids are unique in a unit),
        so a unit without errors costs nothing here."""
        if not failed:
            return ()
        ids = {p.example_ids[i]: i for i in failed}
        rows: Counter[int] = Counter()
        errors: Counter[int] = Counter()
        s = self.scores.data
        for example_id, error in zip(s["example_id"][s0:], s["error"][s0:], strict=True):
            i = ids.get(example_id)
            if i is not None:
                rows[i] += 1
                errors[i] += error is not None
        calls = Counter(i for i in p.call_example if i in failed)
        return tuple(
            FailedExample(
                position=p.positions[i] if p.positions else i,
                example_id=p.example_ids[i],
                rows=rows[i],
                calls=calls[i],
                errors=errors[i],
            )
            for i in sorted(failed)
        )

    def _due(self) -> bool:
        t = self.thresholds
        rows = max(len(self.scores), len(self.calls))
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
        if len(self.scores):
            table = self.scores.table(SCORES_SCHEMA, constants)
            files.append(self.store.write("scores", self.run_id, table, label))
        if len(self.calls):
            table = self.calls.table(CALLS_SCHEMA, constants)
            files.append(self.store.write("calls", self.run_id, table, label))
        flush = Flush(files=tuple(files), units=tuple(self.units), ranges=dict(self.ranges))
        self._reset()
        return flush

    def _score(self, p: Any) -> tuple[int, set[int]]:
        """Append a unit's call rows, then its score rows component by component."""
        ids, examples = p.example_ids, p.examples
        positions, outputs, inputs, call_errors = (
            p.call_example,
            p.call_output,
            p.call_inputs,
            p.call_error,
        )
        call_ids = [ids[i] for i in positions]
        c = self.calls.data
        c["example_id"].extend(call_ids)
        c["component"].extend(p.call_component)
        c["call_index"].extend(p.call_index)
        inputs_json = [_json(v) for v in inputs]
        output_json = [_json(v) for v in outputs]
        c["inputs"].extend(inputs_json)
        c["output"].extend(output_json)
        c["latency_ms"].extend(p.call_latency)
        c["error"].extend(call_errors)
        self.bytes += _utf8_bytes(inputs_json) + _utf8_bytes(output_json)
        failed = {positions[i] for i, e in enumerate(call_errors) if e is not None}
        by_component: dict[str, list[int]] = {}
        for i, name in enumerate(p.call_component):
            by_component.setdefault(name, []).append(i)
        s = self.scores.data
        add_id, add_component, add_index = (
            s["example_id"].append,
            s["component"].append,
            s["call_index"].append,
        )
        add_metric, add_value, add_error = s["metric"].append, s["value"].append, s["error"].append
        call_index = p.call_index
        errors = 0
        before = len(s["metric"])
        for name, calls in by_component.items():
            for plan in self.plans.get(name, ()):
                metric, fn, arguments = plan.eval.name, plan.eval.fn, plan.arguments
                checked = (name, metric) in self.checked
                for i in calls:
                    rows: list[tuple[str, float | None, str | None]] | None = None
                    if call_errors[i] is not None:
                        rows = [(metric, None, f"not scored: the call failed ({call_errors[i]})")]
                    else:
                        try:
                            kwargs = arguments(outputs[i], inputs[i] or {}, examples[positions[i]])
                        except BindingError as exc:
                            if not checked:
                                raise  # an eval that cannot be bound stops the run at once
                            rows = [(metric, None, str(exc))]
                    if rows is None:
                        if not checked:
                            self.checked.add((name, metric))
                            checked = True
                        try:
                            result = fn(**kwargs)
                        except CAUGHT as exc:
                            rows = [(metric, None, describe_error(exc))]
                        else:
                            if type(result) is float and result == result:  # the common case
                                add_id(call_ids[i])
                                add_component(name)
                                add_index(call_index[i])
                                add_metric(metric)
                                add_value(result)
                                add_error(None)
                                continue
                            rows = _rows(metric, result)
                    for key, value, err in rows:
                        add_id(call_ids[i])
                        add_component(name)
                        add_index(call_index[i])
                        add_metric(key)
                        add_value(value)
                        add_error(err)
                        if err is not None:
                            errors += 1
                            failed.add(positions[i])
        self.bytes += 64 * (len(s["metric"]) - before) + 96 * len(call_ids)
        return errors, failed


def _utf8_bytes(texts: list[str | None]) -> int:
    """The UTF-8 size of ``texts`` (what they take in memory and in the file), counted
    without encoding them when they are all ASCII, the common case."""
    present = list(filter(None, texts))
    if all(map(str.isascii, present)):
        return sum(map(len, present))
    return sum(len(t.encode()) for t in present)


def _rows(name: str, result: Any) -> list[tuple[str, float | None, str | None]]:
    if result is None:
        return []
    if isinstance(result, dict):
        out: list[tuple[str, float | None, str | None]] = []
        for key, value in result.items():
            out.extend(_rows(f"{name}.{key}", value) if value is not None else [])
        return out
    try:
        number = _number(result)
    except (TypeError, ValueError, OverflowError):
        kind = type(result).__name__
        return [(name, None, f"eval returned {kind}; return a number, bool, dict or None")]
    if math.isnan(number):
        return [(name, None, "eval returned NaN")]
    return [(name, number, None)]
