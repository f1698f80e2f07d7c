"""SQL over all history: DuckDB connections with the views ``scores``, ``calls``,
``examples``, ``runs``, ``evaluations`` and ``dataset_versions`` ready, read-only.

A connection is in-memory. After its views exist it is locked: DuckDB may read only the
registered shard files its views name (``allowed_paths``), external access is off and the
configuration is locked, so a statement cannot read other files, attach a database, load
an extension or write a file anywhere else (DuckDB raises a Permission Error). Temporary
tables and views live in the connection's memory and vanish with it. :func:`sql` also
refuses ``COPY`` and ``EXPORT`` statements outright, so a query can never write even to a
path the views read.

:func:`sql` makes only the views its query names (all of them when it names none, or names
anything else), so a query on ``scores`` does not read the calls' registry; when the query
plainly reads one run or a few (``WHERE run_id = N``, see :mod:`hypermetric.query.pruning`)
its views list only the files holding those runs' rows. The metadata views (``runs``,
``evaluations``, ``dataset_versions``), which grow with every run and version kept, are read
from the DB only when a query first scans them, so a connection's cost does not grow with
them.

Reading ``as_of=V`` shows the datasets exactly as dataset version ``V`` left them (also
after compaction, until ``clean`` expires ``V``); the metadata tables are always current.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence

import duckdb

from hypermetric.catalog.db import database
from hypermetric.catalog.reading import (
    METADATA_TABLES,
    metadata_columns,
    metadata_table,
    readable_version,
)
from hypermetric.catalog.shards import DATASETS, live_retractions, live_shards
from hypermetric.config import Settings, get_settings
from hypermetric.errors import QueryError
from hypermetric.query.pruning import parser, runs_named_by
from hypermetric.query.sources import attach_dataset, attach_metadata_lazily, quote_literal
from hypermetric.storage.files import store_for

__all__ = ["connect", "open_connection", "query_error", "run_query", "sql", "views_read_by"]

_VIEWS = frozenset({*DATASETS, *METADATA_TABLES})

#: statement types a query may not run even where DuckDB would allow them
_WRITES = frozenset({duckdb.StatementType.COPY, duckdb.StatementType.EXPORT})


def query_error(exc: BaseException, hint: str = "") -> QueryError:
    """A DuckDB error as a one-line QueryError (DuckDB's own words, minus the caret lines)."""
    lines = [
        line.strip()
        for line in str(exc).splitlines()
        if line.strip() and not line.startswith("LINE ") and set(line.strip()) != {"^"}
    ]
    text = " ".join(lines[:2]) or type(exc).__name__
    if "Permission Error" in text:
        hint = hint or (
            "queries are read-only: write results with `hypermetric sql --output FILE`, "
            "or .df()/.arrow() in Python"
        )
    return QueryError(f"{text}; {hint}" if hint else text)


def _lock(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> None:
    con.execute("SET TimeZone='UTC'")
    con.execute("SET parquet_metadata_cache=true")  # shards are immutable: footers never change
    if paths:
        con.execute(f"SET allowed_paths=[{', '.join(quote_literal(p) for p in paths)}]")
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")


def open_connection(
    settings: Settings | None = None,
    *,
    as_of: int | None = None,
    run_ids: Sequence[int] | None = None,
    views: Collection[str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A locked connection with the views ready.

    ``run_ids`` limits the datasets to those runs (their shards and the packed files that
    hold their rows); ``views`` makes only the views named (all when None). A dataset view
    costs one read of its live shards (few, once compaction packed them); a metadata view
    costs nothing until a query scans it.
    """
    settings = settings or get_settings()
    db = database(settings)
    if as_of is not None:
        readable_version(db, as_of)
    store = store_for(settings)
    con = duckdb.connect(":memory:")
    try:
        paths: list[str] = []
        for dataset in DATASETS:
            if views is None or dataset in views:
                shards = live_shards(db, dataset, as_of=as_of, run_ids=run_ids)
                retracted = live_retractions(db, dataset, as_of=as_of, run_ids=run_ids)
                paths.extend(attach_dataset(con, store, dataset, shards, retracted, run_ids))
        for name in METADATA_TABLES:
            if views is None or name in views:
                load = functools.partial(metadata_table, db, name)
                attach_metadata_lazily(con, name, metadata_columns(name), load)
        _lock(con, paths)
    except duckdb.Error as exc:
        con.close()
        hint = "a registered shard could not be read; see `hypermetric versions`"
        raise query_error(exc, hint) from None
    except BaseException:
        con.close()
        raise
    return con


def connect(
    *, as_of: int | None = None, settings: Settings | None = None
) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection over all history.

    Views: ``scores``, ``calls`` and ``examples`` (the committed rows of every run, at
    dataset version ``as_of`` when given), ``runs``, ``evaluations`` and
    ``dataset_versions`` (current).
    Raises NotFoundError when ``as_of`` names no version or an expired one.
    """
    return open_connection(settings, as_of=as_of)


def _check_statements(con: duckdb.DuckDBPyConnection, query: str) -> None:
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise query_error(exc) from None
    if not statements:
        raise QueryError("the query is empty; give one SQL statement, e.g. SELECT * FROM runs")
    for statement in statements:
        if statement.type in _WRITES:
            raise QueryError(
                f"{statement.type.name} statements are refused: queries are read-only; write "
                "results with `hypermetric sql --output FILE --format csv|json|parquet`, "
                "or .df()/.arrow() in Python"
            )


def run_query(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.DuckDBPyRelation:
    """Run ``query`` on ``con`` (its last statement gives the result); errors as QueryError."""
    _check_statements(con, query)
    try:
        relation = con.sql(query)
    except duckdb.Error as exc:
        raise query_error(exc) from None
    if relation is None:
        raise QueryError(
            "the query returns no rows (its last statement is not a query); end it with a "
            "SELECT, or use hm.connect() to run statements one by one"
        )
    return relation


def sql(
    query: str, *, as_of: int | None = None, settings: Settings | None = None
) -> duckdb.DuckDBPyRelation:
    """Run ``query`` over all history and return its result as a DuckDB relation.

    The relation is lazy: ``.df()`` (pandas), ``.arrow()`` (a pyarrow RecordBatchReader;
    ``.read_all()`` for a Table), ``.fetchall()`` or ``.show()`` run it. Several
    statements separated by ``;`` run in order and the last one's rows are returned. A
    syntax or binding error raises QueryError at once; an error while rows are produced
    is raised by DuckDB when the relation is read.
    """
    views = views_read_by(query)
    named = runs_named_by(query) if views is not None else None
    run_ids = sorted(named) if named is not None else None
    con = open_connection(settings, as_of=as_of, views=views, run_ids=run_ids)
    return run_query(con, query)


def views_read_by(query: str) -> frozenset[str] | None:
    """The views ``query`` reads, when that is sure; None (make them all) when a statement
    does not parse, or names no view (``SHOW TABLES``) or anything else besides them."""
    names: set[str] = set()
    con = parser()
    try:
        for statement in con.extract_statements(query):
            names.update(n.lower() for n in con.get_table_names(statement.query))
    except duckdb.Error:
        return None
    return frozenset(names) if names and names <= _VIEWS else None
