"""The SQL console: ``hypermetric sql`` in a page, behind the same read-only lock.

A query runs on a connection of :func:`hypermetric.query.connection.open_connection` through
:func:`~hypermetric.query.connection.run_query`, as ``hypermetric sql`` runs it, so it sees
the same views and meets the same refusals (no file access, no COPY/EXPORT/ATTACH, locked
configuration). The page shows the first rows, and stops a query that runs too long; the
CSV download streams every row from the query's Arrow batches to the response — nothing is
written on the server.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

from hypermetric.config import Settings
from hypermetric.errors import QueryError
from hypermetric.query.connection import open_connection, query_error, run_query, sql, views_read_by
from hypermetric.query.output import write_rows

__all__ = ["SqlResult", "run_sql", "stream_rows"]

#: a query longer than this is refused (a page's URL carries it)
MAX_QUERY_CHARS = 20_000
#: a page's query is interrupted after this long (the CSV download streams, unlimited)
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class SqlResult:
    """The first rows of a query, its columns, and whether there are more."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    more: bool


def _checked(query: str) -> str:
    query = query.strip()
    if not query:
        raise QueryError("the query is empty; give one SQL statement, e.g. SELECT * FROM runs")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the query is {len(query):,} characters; at most {MAX_QUERY_CHARS:,} are taken here"
        )
    return query


def run_sql(
    settings: Settings, query: str, max_rows: int = 500, timeout: float = TIMEOUT_SECONDS
) -> SqlResult:
    """The first ``max_rows`` rows of ``query``; QueryError when it is refused, fails or
    runs past ``timeout`` seconds (then it is interrupted: a page never holds the server)."""
    query = _checked(query)
    con = open_connection(settings, views=views_read_by(query))
    timer = threading.Timer(timeout, con.interrupt)
    try:
        relation = run_query(con, query)  # the same checks as `hypermetric sql`
        columns = tuple(relation.columns)
        timer.start()
        rows = relation.limit(max_rows + 1).fetchall()
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.InterruptException):
            raise QueryError(
                f"the query ran past {timeout:g} s and was stopped; narrow it (WHERE run_id = "
                "..., LIMIT) or run it with `hypermetric sql`, which has no time limit"
            ) from None
        raise query_error(exc) from None
    finally:
        timer.cancel()
        con.close()
    return SqlResult(columns, tuple(rows[:max_rows]), len(rows) > max_rows)


class _QueueSink(io.RawIOBase):
    """A binary file whose writes go to a bounded queue (the response reads them)."""

    def __init__(self, chunks: queue.Queue[bytes | BaseException | None], stop: threading.Event):
        self._chunks = chunks
        self._stop = stop

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        """Queue a copy of ``data``; raises once the reader went away."""
        chunk = bytes(data)
        while not self._stop.is_set():
            try:
                self._chunks.put(chunk, timeout=0.5)
                return len(chunk)
            except queue.Full:
                continue
        raise BrokenPipeError("the client went away")


def stream_rows(settings: Settings, query: str, fmt: str = "csv") -> Iterator[bytes]:
    """Every row of ``query`` as ``fmt`` (csv or json), in chunks, written by a thread.

    The query is checked and started before the first chunk, so a refused query raises
    here (a clear error status) and not in the middle of a download.
    """
    relation = sql(_checked(query), settings=settings)
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
    stop = threading.Event()

    def produce() -> None:
        try:
            sink = io.BufferedWriter(_QueueSink(chunks, stop), buffer_size=1 << 16)
            write_rows(relation, fmt, sink)
            sink.flush()
            chunks.put(None)
        except BaseException as exc:  # handed to the reader, who raises it
            if not stop.is_set():
                chunks.put(exc)

    thread = threading.Thread(target=produce, name="hypermetric-ui-csv", daemon=True)
    thread.start()

    def consume() -> Iterator[bytes]:
        try:
            while True:
                item = chunks.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    return consume()
