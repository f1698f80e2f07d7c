"""The columns of the three datasets every run writes: ``scores``, ``calls`` and ``examples``."""

from __future__ import annotations

import hashlib

import pyarrow as pa

__all__ = [
    "CALLS_SCHEMA",
    "DEFAULTS",
    "EXAMPLES_SCHEMA",
    "RUN_COLUMNS",
    "SCHEMAS",
    "SCORES_SCHEMA",
    "fingerprint",
]

_TS = pa.timestamp("us", tz="UTC")

#: ``run_attempt`` is the attempt of the run that wrote a row: a retry's retractions take
#: the rows of earlier attempts of its examples out of the dataset

#: ``epoch`` is the repeat of the example that made the row (0 to epochs - 1, see
#: ``@hm.runtime(epochs=K)``); it comes last so that shards written before it existed read
#: it as NULL, which the views show as 0 (:data:`DEFAULTS`)

#: one row per (run, example, epoch, component call, eval[.key])
SCORES_SCHEMA = pa.schema(
    [
        ("run_id", pa.int64()),
        ("evaluation", pa.string()),
        ("version", pa.string()),
        ("example_id", pa.string()),
        ("component", pa.string()),
        ("call_index", pa.int32()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("error", pa.string()),
        ("run_attempt", pa.int32()),
        ("created_at", _TS),
        ("epoch", pa.int32()),
    ]
)

#: one row per (run, example, epoch, component call): inputs and output as JSON text; ``attempts``
#: is how many times the call was made (retries included, 0 when served from the call
#: cache, then ``cached`` is true). Shards written before these two existed read them as NULL
CALLS_SCHEMA = pa.schema(
    [
        ("run_id", pa.int64()),
        ("evaluation", pa.string()),
        ("version", pa.string()),
        ("example_id", pa.string()),
        ("component", pa.string()),
        ("call_index", pa.int32()),
        ("inputs", pa.string()),
        ("output", pa.string()),
        ("latency_ms", pa.float64()),
        ("error", pa.string()),
        ("run_attempt", pa.int32()),
        ("created_at", _TS),
        ("attempts", pa.int32()),
        ("cached", pa.bool_()),
        ("epoch", pa.int32()),
    ]
)

#: one row per (run, example) for each attempt that drove the example (a retry's rows
#: retract the earlier attempt's, as in the other datasets): ``fields`` is the example as
#: JSON object text, each field's value as JSON, or null when the run left it out
#: (``example_field_bytes``, ``@hm.runtime(example_fields=..., omit_fields=...)``)
EXAMPLES_SCHEMA = pa.schema(
    [
        ("run_id", pa.int64()),
        ("evaluation", pa.string()),
        ("version", pa.string()),
        ("example_id", pa.string()),
        ("fields", pa.string()),
        ("run_attempt", pa.int32()),
        ("created_at", _TS),
    ]
)

SCHEMAS = {"scores": SCORES_SCHEMA, "calls": CALLS_SCHEMA, "examples": EXAMPLES_SCHEMA}

#: the values the views show for a canonical column that older shards lack (else NULL)
DEFAULTS: dict[str, dict[str, int]] = {"scores": {"epoch": 0}, "calls": {"epoch": 0}}

#: the columns a shard's rows get from their run where they are buffered (an engine unit's
#: rows carry the others)
RUN_COLUMNS = ("run_id", "evaluation", "version", "run_attempt", "created_at")


def fingerprint(schema: pa.Schema) -> str:
    """A short stable hash of a schema's field names and types."""
    text = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
