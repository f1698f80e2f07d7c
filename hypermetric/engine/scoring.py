"""Scoring, in the process that drove the unit: every recorded call is scored with its
component's evals at once, and the unit leaves as three Arrow record batches (its score
rows, its call rows and its examples rows) and a summary.

Scoring where the calls were made means the objects they returned (an answer, documents,
a dict of probabilities) and the examples never cross a process boundary: what travels to
the evaluator actor that buffers and writes the shards is columns of text and numbers,
which Arrow ships without copying them one value at a time. Pure Python (no Ray).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _string
from typing import Any

import orjson
import pyarrow as pa

from hypermetric.api.binding import Plan
from hypermetric.api.component import CAUGHT, describe_error
from hypermetric.api.runtime import Runtime
from hypermetric.api.versions import component_lineage
from hypermetric.catalog.records import FailedExample, UnitSummary
from hypermetric.engine.examples import DEFAULT_FIELD_BYTES, FieldPolicy, example_rows
from hypermetric.errors import BindingError
from hypermetric.storage.schemas import CALLS_SCHEMA, RUN_COLUMNS, SCORES_SCHEMA

__all__ = [
    "CALL_FIELDS",
    "SCORE_FIELDS",
    "ScoredUnit",
    "Scorer",
    "complete_calls",
    "complete_scores",
    "json_text",
]

#: the columns a unit's rows carry (the evaluator adds the run's: its id, evaluation,
#: version, attempt and the time the unit arrived)
SCORE_FIELDS = pa.schema([f for f in SCORES_SCHEMA if f.name not in RUN_COLUMNS])
CALL_FIELDS = pa.schema([f for f in CALLS_SCHEMA if f.name not in RUN_COLUMNS])
#: the columns recorded for every call: a unit whose calls no rate limit, retry or cache
#: saw, driven in one epoch, travels with these only (:func:`complete_calls` adds
#: ``attempts``, ``cached`` and ``epoch``)
_RECORDED = pa.schema([f for f in CALL_FIELDS if f.name not in ("attempts", "cached", "epoch")])
#: the score columns of a unit driven in one epoch (:func:`complete_scores` adds ``epoch``)
_SCORED = pa.schema([f for f in SCORE_FIELDS if f.name != "epoch"])
#: what a column a unit did not send holds: one attempt, not cached, epoch 0
_DEFAULTS = {"attempts": 1, "cached": False, "epoch": 0}


@dataclass(frozen=True)
class ScoredUnit:
    """One driven and scored unit: its summary, its rows, and the components its scorer
    saw for the first time (name -> hash, evals), for the run's lineage."""

    unit: UnitSummary
    scores: pa.RecordBatch
    calls: pa.RecordBatch
    lineage: dict[str, Any] | None = None
    #: one row per example of the unit: its id and fields (:mod:`hypermetric.engine.examples`)
    examples: pa.RecordBatch | None = None


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


#: orjson leaves these to ``default`` (their repr), as the standard encoder does
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_text(value: Any) -> str | None:
    """JSON text of a call's inputs or output (anything not JSON becomes its repr, NaN and
    infinities null)."""
    if value is None:
        return None
    if type(value) is str:
        return _string(value)
    try:
        # a few times faster than the standard encoder; what it refuses (a key that is not
        # text, a circular value, an integer past 64 bits) takes the standard one
        return orjson.dumps(value, default=repr, option=_PASSTHROUGH).decode()
    except (TypeError, ValueError):
        pass
    try:
        return _encode(value)
    except (TypeError, ValueError, RecursionError):
        _markers.clear()
        return _string(repr(value))


_Row = tuple[str, float | None, str | None]


def _rows(name: str, result: Any) -> list[_Row]:
    if result is None:
        return []
    if isinstance(result, dict):
        out: list[_Row] = []
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


class Scorer:
    """Scores the units of one run in one process: its plans, which (component, eval)
    pairs have bound once (the first binding error of a pair stops the run; later ones are
    error rows), and which components it has reported for the run's lineage."""

    def __init__(self, runtime: Runtime, fields: FieldPolicy | None = None) -> None:
        self.runtime = runtime
        #: which example fields the run stores
        self.fields = fields or FieldPolicy.of(runtime, DEFAULT_FIELD_BYTES)
        self.plans: dict[str, tuple[Plan, ...]] = {runtime.name: runtime.plans}
        self.checked: set[tuple[str, str]] = set()

    def score(self, p: Any) -> ScoredUnit:
        """Score a driven unit (a :class:`~hypermetric.engine.worker.UnitPayload`)."""
        lineage: dict[str, Any] = {}
        for name, component in p.components.items():
            if name not in self.plans:
                self.plans[name] = component.plans
                lineage[name] = component_lineage(component)
        call_ids = [p.example_ids[i] for i in p.call_example]
        # a unit driven in one epoch (the usual case) sends no epoch column
        epochs = p.call_epoch if any(p.call_epoch) else None
        schema = _SCORED if epochs is None else SCORE_FIELDS
        s: dict[str, list[Any]] = {name: [] for name in schema.names}
        errors, failed = self._score(p, call_ids, s, epochs)
        scores = pa.RecordBatch.from_arrays(
            [pa.array(s[f.name], f.type) for f in schema], schema=schema
        )
        calls = self._calls(p, call_ids, epochs)
        unit = UnitSummary(
            unit_id=p.unit_id,
            examples=len(p.example_ids),
            rows=scores.num_rows,
            calls=calls.num_rows,
            errors=errors,
            failed_examples=len(failed),
            failed=_failed(p, failed, s),
        )
        return ScoredUnit(unit, scores, calls, lineage or None, p.example_rows)

    def examples(self, ids: list[str], examples: list[dict[str, Any]]) -> pa.RecordBatch:
        """The examples rows of a unit (made before it is driven: what a runtime does to
        its example dict is not stored)."""
        return example_rows(ids, examples, self.fields)

    @staticmethod
    def _calls(p: Any, call_ids: list[str], epochs: list[int] | None) -> pa.RecordBatch:
        columns = (
            call_ids,
            p.call_component,
            p.call_index,
            [json_text(v) for v in p.call_inputs],
            [json_text(v) for v in p.call_output],
            p.call_latency,
            p.call_error,
        )
        arrays = [pa.array(c, f.type) for c, f in zip(columns, _RECORDED, strict=True)]
        fields = list(_RECORDED)
        if p.marks:
            arrays.extend(_marks(p.marks, len(call_ids)))
            fields.extend(CALL_FIELDS.field(name) for name in ("attempts", "cached"))
        if epochs is not None:
            arrays.append(pa.array(epochs, pa.int32()))
            fields.append(CALL_FIELDS.field("epoch"))
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))

    def _score(
        self, p: Any, call_ids: list[str], s: dict[str, list[Any]], epochs: list[int] | None
    ) -> tuple[int, set[int]]:
        """Append the unit's score rows to ``s``, component by component, eval by eval."""
        positions, call_errors = p.call_example, p.call_error
        failed = {positions[i] for i, e in enumerate(call_errors) if e is not None}
        by_component: dict[str, list[int]] = {}
        for i, name in enumerate(p.call_component):
            by_component.setdefault(name, []).append(i)
        errors = 0
        for name, calls in by_component.items():
            for plan in self.plans.get(name, ()):
                errors += self._eval(p, plan, name, calls, call_ids, s, failed, epochs)
        return errors, failed

    def _eval(
        self,
        p: Any,
        plan: Plan,
        name: str,
        calls: list[int],
        call_ids: list[str],
        s: dict[str, list[Any]],
        failed: set[int],
        epochs: list[int] | None,
    ) -> int:
        """One eval over a component's calls; returns its error rows. The hottest loop of a
        run: the calls whose score is a plain float (the common case) are kept as a run of
        (call, value) and added as columns at once, before any other row, so that the rows
        keep the order of the calls; a unit of one epoch (``epochs`` None) records no epoch."""
        column = s.__getitem__
        outputs, inputs, examples = p.call_output, p.call_inputs, p.examples
        positions, call_errors, call_index = p.call_example, p.call_error, p.call_index
        metric, fn, arguments = plan.eval.name, plan.eval.fn, plan.arguments
        checked = (name, metric) in self.checked
        plain: list[int] = []  # calls scored with a plain float, not added yet
        values: list[float] = []
        keep, value_of = plain.append, values.append

        def add_plain() -> None:
            n = len(plain)
            column("example_id").extend([call_ids[i] for i in plain])
            column("component").extend([name] * n)
            column("call_index").extend([call_index[i] for i in plain])
            column("metric").extend([metric] * n)
            column("value").extend(values)
            column("error").extend([None] * n)
            if epochs is not None:
                column("epoch").extend([epochs[i] for i in plain])
            plain.clear()
            values.clear()

        errors = 0
        for i in calls:
            rows: list[_Row] | None = None
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
                        keep(i)
                        value_of(result)
                        continue
                    rows = _rows(metric, result)
            if plain:
                add_plain()
            for key, value, err in rows:
                column("example_id").append(call_ids[i])
                column("component").append(name)
                column("call_index").append(call_index[i])
                column("metric").append(key)
                column("value").append(value)
                column("error").append(err)
                if epochs is not None:
                    column("epoch").append(epochs[i])
                if err is not None:
                    errors += 1
                    failed.add(positions[i])
        if plain:
            add_plain()
        return errors


def _complete(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with every column of ``schema``, those it lacks at their default."""
    if batch.num_columns == len(schema):
        return batch
    n, names = batch.num_rows, batch.schema.names
    columns = [
        batch.column(f.name)
        if f.name in names
        else pa.repeat(pa.scalar(_DEFAULTS[f.name], f.type), n)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def complete_calls(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A unit's call rows with every column of :data:`CALL_FIELDS`: a unit of plain calls
    gets one attempt and no cache hit for each, and a unit of one epoch epoch 0 (added
    where the rows are buffered, so that they do not travel)."""
    return _complete(batch, CALL_FIELDS)


def complete_scores(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A unit's score rows with every column of :data:`SCORE_FIELDS` (epoch 0 for a unit
    of one epoch)."""
    return _complete(batch, SCORE_FIELDS)


def _marks(marks: dict[int, tuple[int, bool]], n: int) -> list[pa.Array]:
    """The ``attempts`` and ``cached`` columns: one attempt, not cached, but for the calls
    a rate limit, a retry or the cache saw (only those are marked)."""
    attempts, cached = [1] * n, [False] * n
    for row, (tries, hit) in marks.items():
        attempts[row], cached[row] = tries, hit
    return [pa.array(attempts, pa.int32()), pa.array(cached, pa.bool_())]


def _failed(p: Any, failed: set[int], s: dict[str, list[Any]]) -> tuple[FailedExample, ...]:
    """The unit's failed examples with the rows each wrote: what a retry drives again and
    retracts. Rows are counted for failed examples only (ids are unique in a unit), so a
    unit without errors costs nothing here."""
    if not failed:
        return ()
    ids = {p.example_ids[i]: i for i in failed}
    rows: Counter[int] = Counter()
    errors: Counter[int] = Counter()
    for example_id, error in zip(s["example_id"], s["error"], strict=True):
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
