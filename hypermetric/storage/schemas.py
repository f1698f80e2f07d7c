"""The columns of the two datasets every run writes: ``scores`` and ``calls``."""

from __future__ import annotations

import hashlib

import pyarrow as pa

__all__ = ["CALLS_SCHEMA", "RUN_COLUMNS", "SCHEMAS", "SCORES_SCHEMA", "fingerprint"]

_TS = pa.timestamp("us", tz="UTC")

#: ``run_attempt`` is the attempt of the run that wrote a row: a retry's retractions take
#: the rows of earlier attempts of its examples out of the dataset

#: one row per (run, example, component call, eval[.key])
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
    ]
)

#: one row per (run, example, component call): inputs and output as JSON text; ``attempts``
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
    ]
)

SCHEMAS = {"scores": SCORES_SCHEMA, "calls": CALLS_SCHEMA}

#: the columns a shard's rows get from their run where they are buffered (an engine unit's
#: rows carry the others)
RUN_COLUMNS = ("run_id", "evaluation", "version", "run_attempt", "created_at")


def fingerprint(schema: pa.Schema) -> str:
    """A short stable hash of a schema's field names and types."""
    text = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
