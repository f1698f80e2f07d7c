"""Which runs a query reads, when its text says so for sure: a connection then lists only
those runs' files (and the packed files that hold their rows), so its cost does not grow
with history and a query on one run never opens another run's shards.

Conservative on purpose: a statement counts only when it is one plain ``SELECT`` (no set
operation, no CTE) whose ``FROM`` is the one reference to a dataset view in the whole
statement, and whose ``WHERE`` has, among its ``AND``-ed terms, ``run_id = N`` or
``run_id IN (N, ...)`` with integer constants. Anything else reads all runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import duckdb

from hypermetric.catalog.shards import DATASETS

__all__ = ["parser", "runs_named_by"]

_local = threading.local()


def parser() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB connection for parsing queries (never given data):
    opening a database costs more than parsing most queries, so it is opened once."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect(":memory:", config={"threads": 1})
    return con


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _dataset_refs(node: Any) -> list[dict[str, Any]]:
    return [
        n
        for n in _walk(node)
        if n.get("type") == "BASE_TABLE" and str(n.get("table_name", "")).lower() in DATASETS
    ]


def _is_run_id(expr: dict[str, Any], names: set[str]) -> bool:
    if expr.get("class") != "COLUMN_REF":
        return False
    parts = [str(p).lower() for p in expr.get("column_names", [])]
    return parts == ["run_id"] or (len(parts) == 2 and parts[0] in names and parts[1] == "run_id")


def _integer(expr: dict[str, Any]) -> int | None:
    literal = expr.get("literal") if expr.get("class") == "CONSTANT" else None
    if not isinstance(literal, dict) or literal.get("kind") not in ("INTEGER", "BIGINT"):
        return None
    try:
        return int(literal["text"])
    except (KeyError, ValueError):
        return None


def _terms(where: dict[str, Any]) -> list[dict[str, Any]]:
    if where.get("type") == "CONJUNCTION_AND":
        return [t for child in where.get("children", []) for t in _terms(child)]
    return [where]


def _runs_of_term(term: dict[str, Any], names: set[str]) -> set[int] | None:
    if term.get("type") == "COMPARE_EQUAL":
        pairs = [(term.get("left", {}), term.get("right", {}))]
        pairs.append((pairs[0][1], pairs[0][0]))
        for column, value in pairs:
            number = _integer(value)
            if _is_run_id(column, names) and number is not None:
                return {number}
    if term.get("type") == "COMPARE_IN":
        column, *values = term.get("children", [None])
        numbers = [_integer(v) for v in values]
        if column and _is_run_id(column, names) and numbers and None not in numbers:
            return {n for n in numbers if n is not None}
    return None


def _runs_of_statement(statement: dict[str, Any]) -> frozenset[int] | None:
    node = statement.get("node", {})
    if node.get("type") != "SELECT_NODE" or node.get("cte_map", {}).get("map"):
        return None
    refs = _dataset_refs(statement)
    source = node.get("from_table", {})
    if len(refs) != 1 or refs[0] is not source or not node.get("where_clause"):
        return None
    names = {str(source.get("table_name", "")).lower(), str(source.get("alias", "")).lower()}
    found: set[int] | None = None
    for term in _terms(node["where_clause"]):
        runs = _runs_of_term(term, names)
        if runs is not None:
            found = runs if found is None else found & runs
    return frozenset(found) if found is not None else None


def runs_named_by(query: str) -> frozenset[int] | None:
    """The run ids ``query`` can read rows of, when its one statement says so for sure
    (see the module docstring); None when it may read any run."""
    try:
        text = parser().execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0]
    except duckdb.Error:
        return None
    parsed = json.loads(text)
    statements = parsed.get("statements", [])
    if parsed.get("error") or len(statements) != 1:
        return None
    return _runs_of_statement(statements[0])
