"""The views of a query connection: datasets from committed shards, metadata from the DB.

``scores`` and ``calls`` are the union of the shards the registry lists as live at the
version asked for — never a directory listing, so an unregistered or half-written file is
never read. How a dataset is read is chosen in one place, :func:`attach_dataset`:

- a local store: DuckDB reads the Parquet files itself, one ``read_parquet([...])`` scan
  over the registered paths. When every shard has the dataset's canonical schema (the
  usual case, checked by schema fingerprint) that is all; otherwise the scan reconciles
  columns by name (``union_by_name``) and canonical columns no shard has are added as
  typed NULLs, so a view always has at least the columns of
  :mod:`hypermetric.storage.schemas`;
- any other store (``s3://`` ...): the shards are read through pyarrow and handed to
  DuckDB as one Arrow table, reconciled the same way.

A dataset with no shards is an empty table with the canonical columns. The metadata
tables ``runs``, ``evaluations`` and ``dataset_versions`` are read through SQLAlchemy and
handed over as Arrow tables (DuckDB's database scanners are not used).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from hypermetric.catalog.reading import MetadataTable
from hypermetric.catalog.records import ShardRecord
from hypermetric.storage.files import ShardStore
from hypermetric.storage.schemas import SCHEMAS, fingerprint

__all__ = [
    "attach_dataset",
    "attach_metadata",
    "metadata_arrow",
    "quote_ident",
    "quote_literal",
]

_ARROW_KINDS: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}

_SQL_TYPES: dict[pa.DataType, str] = {
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def metadata_arrow(table: MetadataTable) -> pa.Table:
    """A metadata table as Arrow: JSON columns as JSON text, times aware UTC."""
    schema = pa.schema([(c.name, _ARROW_KINDS[c.kind]) for c in table.columns])
    columns = list(zip(*table.rows, strict=True)) if table.rows else [()] * len(schema)
    arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def attach_metadata(con: duckdb.DuckDBPyConnection, table: MetadataTable) -> None:
    """Make ``table`` a view of ``con`` under its own name."""
    con.register(table.name, metadata_arrow(table))


def _columns(dataset: str, schemas: Iterable[pa.Schema]) -> list[tuple[str, pa.DataType | None]]:
    """Canonical columns first (typed when no shard has them), then extra ones."""
    present: dict[str, None] = {}
    for schema in schemas:
        present.update(dict.fromkeys(schema.names))
    canonical = SCHEMAS[dataset]
    out: list[tuple[str, pa.DataType | None]] = [
        (f.name, None if f.name in present else f.type) for f in canonical
    ]
    out.extend((name, None) for name in present if name not in canonical.names)
    return out


def _select_list(columns: list[tuple[str, pa.DataType | None]]) -> str:
    parts = []
    for name, missing_type in columns:
        if missing_type is None:
            parts.append(quote_ident(name))
        else:
            parts.append(f"CAST(NULL AS {_SQL_TYPES[missing_type]}) AS {quote_ident(name)}")
    return ", ".join(parts)


def _local_view(
    con: duckdb.DuckDBPyConnection,
    store: ShardStore,
    dataset: str,
    shards: Sequence[ShardRecord],
) -> list[str]:
    paths = [store.full_path(s.path) for s in shards]
    files = "[" + ", ".join(quote_literal(p) for p in paths) + "]"
    canonical = fingerprint(SCHEMAS[dataset])
    if all(s.schema_fingerprint == canonical for s in shards):
        source = f"SELECT * FROM read_parquet({files})"
    else:
        samples: dict[str, str] = {}
        for shard, path in zip(shards, paths, strict=True):
            samples.setdefault(shard.schema_fingerprint, path)
        schemas = [pq.read_schema(p, filesystem=store.fs) for p in samples.values()]
        select_list = _select_list(_columns(dataset, schemas))
        source = f"SELECT {select_list} FROM read_parquet({files}, union_by_name=true)"
    con.execute(f"CREATE VIEW {quote_ident(dataset)} AS {source}")
    return paths


def _conform(dataset: str, table: pa.Table) -> pa.Table:
    columns = _columns(dataset, [table.schema])
    arrays = [
        table[name] if missing is None else pa.nulls(table.num_rows, type=missing)
        for name, missing in columns
    ]
    return pa.Table.from_arrays(arrays, names=[name for name, _ in columns])


def _arrow_table(store: ShardStore, dataset: str, shards: Sequence[ShardRecord]) -> pa.Table:
    tables = [store.read(s.path) for s in shards]
    if not tables:
        return SCHEMAS[dataset].empty_table()
    return _conform(dataset, pa.concat_tables(tables, promote_options="permissive"))


def attach_dataset(
    con: duckdb.DuckDBPyConnection,
    store: ShardStore,
    dataset: str,
    shards: Sequence[ShardRecord],
) -> list[str]:
    """Create the view ``dataset`` over ``shards``; returns the file paths DuckDB must read."""
    if shards and store.is_local:
        return _local_view(con, store, dataset, shards)
    con.register(dataset, _arrow_table(store, dataset, shards))
    return []
