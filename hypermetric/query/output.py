"""Writing a query's rows: a rich table (first rows), CSV, JSON or Parquet, streamed.

Rows are written from Arrow record batches by Hypermetric, never by DuckDB (whose
connection is read-only), so ``--output`` works where the query connection cannot write.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import IO, Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.table import Table

from hypermetric.errors import QueryError
from hypermetric.query.connection import query_error

__all__ = ["FORMATS", "json_value", "relation_table", "write_rows"]

FORMATS = ("table", "csv", "json", "parquet")


def _batches(relation: duckdb.DuckDBPyRelation) -> pa.RecordBatchReader:
    try:
        return relation.arrow()
    except duckdb.Error as exc:
        raise query_error(exc) from None


def relation_table(relation: duckdb.DuckDBPyRelation, max_rows: int) -> tuple[Table, bool]:
    """The first ``max_rows`` rows as a rich table, and whether there are more."""
    try:
        rows = relation.limit(max_rows + 1).fetchall()
    except duckdb.Error as exc:
        raise query_error(exc) from None
    table = Table(show_lines=False)
    for name in relation.columns:
        table.add_column(name, overflow="fold")
    for row in rows[:max_rows]:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    if not rows:
        table.caption = "no rows"
    return table, len(rows) > max_rows


def json_value(value: Any) -> Any:
    """``value`` as JSON can hold it: times as ISO text, NaN and infinity as None, bytes as
    base64, decimals as floats, containers element by element."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def _write_json(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    sink.write(b"[")
    first = True
    for batch in reader:
        for row in batch.to_pylist():
            sink.write(b"\n" if first else b",\n")
            sink.write(json.dumps(json_value(row), ensure_ascii=False).encode())
            first = False
    sink.write(b"\n]\n")


def _write_csv(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    try:
        options = pacsv.WriteOptions(quoting_style="needed")
        with pacsv.CSVWriter(sink, reader.schema, write_options=options) as writer:
            for batch in reader:
                writer.write_batch(batch)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise QueryError(
            f"CSV cannot hold these columns ({str(exc).splitlines()[0]}); "
            "use --format json or parquet, or cast them to VARCHAR"
        ) from None


def write_rows(relation: duckdb.DuckDBPyRelation, fmt: str, sink: IO[bytes]) -> None:
    """Stream every row of ``relation`` to ``sink`` as ``csv``, ``json`` or ``parquet``."""
    reader = _batches(relation)
    try:
        if fmt == "csv":
            _write_csv(reader, sink)
        elif fmt == "json":
            _write_json(reader, sink)
        elif fmt == "parquet":
            with pq.ParquetWriter(sink, reader.schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch)
        else:
            raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS[1:]}")
    except duckdb.Error as exc:
        raise query_error(exc) from None
