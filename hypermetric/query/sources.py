"""The views of a query connection: datasets from committed shards, metadata from the DB.

``scores``, ``calls`` and ``examples`` are the union of the shards the registry lists as
live at the version asked for — never a directory listing, so an unregistered or
half-written file is never read — less the rows of the retractions live at that version (a
retry's superseded rows: an anti-join on run, example and attempt, made only when there are
any). How a dataset is read is chosen in one place, :func:`attach_dataset`:

- a local store: DuckDB reads the Parquet files itself, one ``read_parquet([...])`` scan
  over the registered paths. When every shard has the dataset's canonical schema (the
  usual case, checked by schema fingerprint) that is all; otherwise the scan reconciles
  columns by name (``union_by_name``) and canonical columns no shard has are added as
  typed NULLs (or their default, :data:`~hypermetric.storage.schemas.DEFAULTS`: ``epoch``
  reads 0 in rows written before it existed), so a view always has at least the columns
  of :mod:`hypermetric.storage.schemas`;
- any other store (``s3://`` ...): the shards are a lazy pyarrow dataset over the store's
  filesystem with the same reconciled columns; DuckDB pushes projections and filters into
  its scan, so a query reads only the columns and row groups it needs.

A dataset with no shards is an empty table with the canonical columns. The metadata
tables ``runs``, ``evaluations`` and ``dataset_versions`` are read through SQLAlchemy and
handed over as Arrow tables (DuckDB's database scanners are not used).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from hypermetric.catalog.reading import MetadataColumn, MetadataTable
from hypermetric.catalog.records import ShardRecord
from hypermetric.storage.files import ShardStore
from hypermetric.storage.schemas import DEFAULTS, SCHEMAS, fingerprint

__all__ = [
    "attach_dataset",
    "attach_metadata",
    "attach_metadata_lazily",
    "metadata_arrow",
    "metric_condition",
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


def metric_condition(metric: str) -> str:
    """The SQL condition that keeps ``metric`` and its ``metric.key`` parts."""
    m = quote_literal(metric)
    return f"(metric = {m} OR starts_with(metric, {m} || '.'))"


def _arrow_schema(columns: Sequence[MetadataColumn]) -> pa.Schema:
    return pa.schema([(c.name, _ARROW_KINDS[c.kind]) for c in columns])


def metadata_arrow(table: MetadataTable) -> pa.Table:
    """A metadata table as Arrow: JSON columns as JSON text, times aware UTC."""
    schema = _arrow_schema(table.columns)
    columns = list(zip(*table.rows, strict=True)) if table.rows else [()] * len(schema)
    arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


class _LazyTable:
    """An Arrow stream DuckDB asks for whenever a query scans it: it reads its metadata
    table from the DB the first time a query does (never when nothing reads it), then
    keeps it for the connection's life. DuckDB also asks once while registering it, for
    its schema: it gets an empty table then."""

    def __init__(self, columns: Sequence[MetadataColumn], load: Callable[[], MetadataTable]):
        self._schema = _arrow_schema(columns)
        self._load = load
        self._table: pa.Table | None = None
        self.armed = False

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        if not self.armed:
            table = self._schema.empty_table()
        else:
            if self._table is None:
                self._table = metadata_arrow(self._load())
            table = self._table
        return table.__arrow_c_stream__(requested_schema)


def attach_metadata(con: duckdb.DuckDBPyConnection, table: MetadataTable) -> None:
    """Make ``table`` a view of ``con`` under its own name."""
    con.register(table.name, metadata_arrow(table))


def attach_metadata_lazily(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: Sequence[MetadataColumn],
    load: Callable[[], MetadataTable],
) -> None:
    """Make the metadata table ``name`` a view of ``con`` that ``load`` reads from the DB
    when a query first scans it: a connection costs nothing for the tables it never reads,
    however many runs and versions they hold."""
    lazy = _LazyTable(columns, load)
    con.register(name, lazy)
    lazy.armed = True


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


def _select_list(dataset: str, columns: list[tuple[str, pa.DataType | None]]) -> str:
    defaults = DEFAULTS.get(dataset, {})
    parts = []
    for name, missing_type in columns:
        column = quote_ident(name)
        default = defaults.get(name)
        if missing_type is None:
            parts.append(
                column if default is None else f"coalesce({column}, {default}) AS {column}"
            )
        else:
            sql_type = _SQL_TYPES[missing_type]
            value = "NULL" if default is None else str(default)
            parts.append(f"CAST({value} AS {sql_type}) AS {column}")
    return ", ".join(parts)


def _local_view(
    con: duckdb.DuckDBPyConnection,
    store: ShardStore,
    name: str,
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
        select_list = _select_list(dataset, _columns(dataset, schemas))
        source = f"SELECT {select_list} FROM read_parquet({files}, union_by_name=true)"
    con.execute(f"CREATE VIEW {quote_ident(name)} AS {source}")
    return paths


def _remote_dataset(
    store: ShardStore, dataset: str, shards: Sequence[ShardRecord]
) -> pads.Dataset | pa.Table:
    """The shards as a lazy pyarrow dataset: DuckDB pushes its column choice and filters
    into the scan, so a query reads the shards and row groups it needs, not all history.
    Nothing is read here but one footer per schema that is not the canonical one."""
    canonical = SCHEMAS[dataset]
    if not shards:
        return canonical.empty_table()
    paths = [store.full_path(s.path) for s in shards]
    usual = fingerprint(canonical)
    samples: dict[str, str] = {}
    for shard, path in zip(shards, paths, strict=True):
        if shard.schema_fingerprint != usual:
            samples.setdefault(shard.schema_fingerprint, path)
    # canonical columns keep their types (a shard lacking one reads as NULLs); extra columns
    # take the type of the first shard that has them
    extra: dict[str, pa.Field] = {}
    for sample in samples.values():
        for field in pq.read_schema(sample, filesystem=store.fs):
            if field.name not in canonical.names:
                extra.setdefault(field.name, field)
    schema = pa.schema([*canonical, *extra.values()])
    # a shard of one run: a filter on run_id skips the other runs' shards unopened (a packed
    # file, run_id None, is opened and pruned by its row groups' statistics)
    partitions = [
        pc.field("run_id") == s.run_id if s.run_id is not None else pc.scalar(True) for s in shards
    ]
    return pads.FileSystemDataset.from_paths(
        paths,
        schema=schema,
        format=pads.ParquetFileFormat(),
        filesystem=store.fs,
        partitions=partitions,
    )


def _remote_view(
    con: duckdb.DuckDBPyConnection, name: str, dataset: str, data: pads.Dataset | pa.Table
) -> None:
    """Register ``data`` as ``name``; a dataset whose columns have defaults is registered
    under another name and ``name`` is a view that reads a NULL there as its default
    (shards written before the column existed)."""
    defaults = DEFAULTS.get(dataset)
    if not defaults:
        con.register(name, data)
        return
    raw = f"_hm_{dataset}_files"
    con.register(raw, data)
    replaced = ", ".join(
        f"coalesce({quote_ident(c)}, {v}) AS {quote_ident(c)}" for c, v in defaults.items()
    )
    con.execute(
        f"CREATE VIEW {quote_ident(name)} AS SELECT * REPLACE ({replaced}) FROM {quote_ident(raw)}"
    )


def attach_dataset(
    con: duckdb.DuckDBPyConnection,
    store: ShardStore,
    dataset: str,
    shards: Sequence[ShardRecord],
    retractions: Sequence[tuple[int, str | None, int]] = (),
    run_ids: Sequence[int] | None = None,
) -> list[str]:
    """Create the view ``dataset`` over ``shards`` without the rows ``retractions`` take
    out, and only the rows of ``run_ids`` when given (a packed file holds other runs' rows
    too; the filter reaches the scan, whose row-group statistics skip them); returns the
    file paths DuckDB must read."""
    wrapped = bool(retractions) or run_ids is not None
    name = f"_hm_{dataset}_shards" if wrapped else dataset
    if shards and store.is_local:
        paths = _local_view(con, store, name, dataset, shards)
    else:
        data = _remote_dataset(store, dataset, shards)
        usual = fingerprint(SCHEMAS[dataset])
        if all(s.schema_fingerprint == usual for s in shards):
            con.register(name, data)  # every column is there: no default to fill in
        else:
            _remote_view(con, name, dataset, data)
        paths = []
    if wrapped:
        conditions = _retract(con, dataset, retractions)
        if run_ids is not None:
            listed = ", ".join(str(int(r)) for r in sorted(set(run_ids))) or "NULL"
            conditions.insert(0, f"s.run_id IN ({listed})")
        con.execute(
            f"CREATE VIEW {quote_ident(dataset)} AS SELECT s.* FROM {quote_ident(name)} AS s "
            f"WHERE {' AND '.join(conditions)}"
        )
    return paths


def _retract(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    retractions: Sequence[tuple[int, str | None, int]],
) -> list[str]:
    """The conditions that leave out rows of a retried example written by an attempt before
    its retry (rows written before attempts were recorded count as 0), and rows of a run
    retracted whole (example id None: a reprocess or prune of a run packed with others)
    written by an attempt before the retraction's; their tables registered on ``con``."""
    by_example = [r for r in retractions if r[1] is not None]
    by_run = [
        (run_id, attempt) for run_id, example_id, attempt in retractions if example_id is None
    ]
    conditions = []
    if by_example:
        run_ids, example_ids, attempts = zip(*by_example, strict=True)
        retracted = f"_hm_{dataset}_retracted"
        con.register(
            retracted,
            pa.table(
                {
                    "run_id": pa.array(run_ids, pa.int64()),
                    "example_id": pa.array(example_ids, pa.string()),
                    "attempt": pa.array(attempts, pa.int32()),
                }
            ),
        )
        conditions.append(
            f"NOT EXISTS (SELECT 1 FROM {quote_ident(retracted)} AS r "
            "WHERE r.run_id = s.run_id AND r.example_id = s.example_id "
            "AND coalesce(s.run_attempt, 0) < r.attempt)"
        )
    if by_run:
        whole = f"_hm_{dataset}_retracted_runs"
        run_ids, attempts = zip(*by_run, strict=True)
        con.register(
            whole,
            pa.table(
                {"run_id": pa.array(run_ids, pa.int64()), "attempt": pa.array(attempts, pa.int32())}
            ),
        )
        conditions.append(
            f"NOT EXISTS (SELECT 1 FROM {quote_ident(whole)} AS w "
            "WHERE w.run_id = s.run_id AND coalesce(s.run_attempt, 0) < w.attempt)"
        )
    return conditions
