"""The ``examples`` rows of a unit: each example's fields once, as JSON object text.

A run keeps the fields of the examples it drove so that SQL can slice, cluster and join
scores by any of them (``JOIN examples USING (run_id, example_id)``). The rows are made in
the process that drives the unit, from the decoded examples, before the runtime sees them
(a runtime that changes its example dict does not change what is stored), and they travel
to the evaluator with the unit's scores and calls, to be written in the same flush.

Cheap on purpose, being on every example's path: one example is encoded once, by orjson
(the standard C encoder for what orjson refuses), and its size is checked on the whole
text (no field of a text within the limit can exceed it); only an example over the limit,
or holding what neither encodes, is encoded field by field. The text is strict JSON (NaN and
infinities become null), so DuckDB's JSON functions read every row. Pure Python (no Ray).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _string
from typing import Any

import orjson
import pyarrow as pa

from hypermetric.storage.schemas import EXAMPLES_SCHEMA, RUN_COLUMNS

__all__ = ["DEFAULT_FIELD_BYTES", "EXAMPLE_FIELDS", "FieldPolicy", "example_rows", "fields_text"]

#: the columns a unit's examples rows carry (the evaluator adds the run's)
EXAMPLE_FIELDS = pa.schema([f for f in EXAMPLES_SCHEMA if f.name not in RUN_COLUMNS])
#: a field whose JSON text is larger than this is stored as null (the default setting)
DEFAULT_FIELD_BYTES = 64 * 1024


@dataclass(frozen=True)
class FieldPolicy:
    """Which fields of an example a run stores: ``keep`` only these (None: all), less
    ``omit``; a value whose JSON text exceeds ``max_bytes`` is stored as null (0: any size)."""

    keep: tuple[str, ...] | None = None
    omit: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_FIELD_BYTES

    @classmethod
    def of(cls, runtime: Any, max_bytes: int) -> FieldPolicy:
        """The policy of a runtime (its ``example_fields`` and ``omit_fields``)."""
        keep = getattr(runtime, "example_fields", None)
        return cls(keep, tuple(getattr(runtime, "omit_fields", ())), max_bytes)

    def select(self, example: Mapping[str, Any]) -> Mapping[str, Any]:
        """The fields of ``example`` to store, in the example's order."""
        if self.keep is None and not self.omit:
            return example
        keep, omit = self.keep, self.omit
        return {k: v for k, v in example.items() if (keep is None or k in keep) and k not in omit}


def _plain(value: Any) -> Any:
    """What strict JSON holds for a value it has no type for: a date or time as ISO text
    (Arrow's timestamps), anything else as its text."""
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# built once (JSONEncoder.encode builds an encoder per call); allow_nan=False: DuckDB's
# JSON reader refuses NaN, so a value holding one goes the slow way and becomes null. No
# circular-value markers: the encoder keeps no state between calls (threads may share it),
# and a value that holds itself ends in RecursionError, which the callers handle
_strict_encoder = c_make_encoder(None, _plain, _string, None, ":", ",", False, False, False)


def _strict(value: Any) -> str:
    return "".join(_strict_encoder(value, 0))


def _size(text: str) -> int:
    """Bytes of ``text`` as UTF-8 (without encoding it when it is ASCII, the usual case)."""
    return len(text) if text.isascii() else len(text.encode())


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, in lists and dicts too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _value_text(value: Any, max_bytes: int) -> str:
    try:
        text = _strict(value)
    except (TypeError, ValueError, RecursionError):
        try:
            text = _strict(_finite(value))
        except (TypeError, ValueError, RecursionError):
            text = _string(repr(value))
    return "null" if max_bytes and _size(text) > max_bytes else text


def fields_text(example: Mapping[str, Any], max_bytes: int = DEFAULT_FIELD_BYTES) -> str:
    """The JSON object text of an example's fields, a value over ``max_bytes`` as null."""
    try:
        # orjson: strict JSON five times faster than the standard encoder (NaN and
        # infinities as null, dates as ISO text); what it refuses (a key that is not text,
        # an integer past 64 bits) takes the standard one
        data = orjson.dumps(example, default=_plain)
    except (TypeError, ValueError):
        data = None
    if data is not None and not (max_bytes and len(data) > max_bytes):
        return data.decode()
    try:
        text = _strict(example)
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is not None and not (max_bytes and _size(text) > max_bytes):
        return text
    parts = (f"{_string(str(k))}:{_value_text(v, max_bytes)}" for k, v in example.items())
    return "{" + ",".join(parts) + "}"


def example_rows(
    ids: Sequence[str], examples: Sequence[Mapping[str, Any]], policy: FieldPolicy
) -> pa.RecordBatch:
    """A unit's examples rows: each example's id and its stored fields."""
    limit, select = policy.max_bytes, policy.select
    texts = [fields_text(select(example), limit) for example in examples]
    return pa.RecordBatch.from_arrays([_strings(ids), _strings(texts)], schema=EXAMPLE_FIELDS)


def _strings(values: Sequence[str]) -> pa.Array:
    """A string array of ``values`` (never None)."""
    return pa.array(values, pa.string())
