"""Per-example reduction across epochs, and cluster labels from the examples' fields.

**Epochs.** A runtime with ``epochs=K`` scores every example K times. The statistics treat
the *example* as the unit (its K scores are not K independent examples), so every reader
first reduces the rows of one (run, component, metric, example, call) to one value. The
grouping needs no epoch column: rows that share that key are the epochs, whether or not
the stored data says which epoch each is, so the same SQL reads runs written before
epochs existed (one row a key: every reducer gives the value back). Reducers:

- ``mean`` (default): the mean of the example's non-null values;
- ``majority``: 1 when more than half of the example's non-null values are 1, else 0 — a
  tie (exactly half) is **not** a majority and gives 0, so an even split never counts as a
  pass; needs a 0/1 metric;
- ``pass_at_k:K``: the unbiased pass@k from the example's ``n`` values with ``c`` ones,
  ``1 - C(n-c, K)/C(n, K)`` (Chen et al. 2021); needs a 0/1 metric and ``n >= K``.

An example whose every epoch errored has a NULL value (an errored row, as without epochs).
Each reduced row keeps ``epochs`` (its non-null values) and ``within_var``, the sample
variance across its epochs (NULL with one value): the mean of ``within_var`` over examples
is the **within-example variance** that summaries and compare report (None when every
example has one value).

**Clusters.** ``cluster_by=FIELD`` labels each example by the field of the ``examples``
view (``json_extract_string(fields, '$."FIELD"')``). An example without the field (or
without an examples row) is a cluster of its own, so it counts as independent; a field that
no example of the runs has is an error that names the fields they do have.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import duckdb

from hypermetric.errors import QueryError
from hypermetric.query.inference import ClusteredMean, cluster_codes, cluster_means_by
from hypermetric.query.sources import quote_literal

__all__ = [
    "REDUCERS",
    "Reducer",
    "attach_labels",
    "cluster_means",
    "label_sql",
    "parse_reducer",
    "reduce_scores",
    "views_for",
]

REDUCERS = ("mean", "majority", "pass_at_k")


@dataclass(frozen=True)
class Reducer:
    """How an example's epochs become one value: ``mean``, ``majority`` or ``pass_at_k``
    (with its ``k``)."""

    name: str = "mean"
    k: int = 1

    def __str__(self) -> str:
        return f"pass_at_k:{self.k}" if self.name == "pass_at_k" else self.name

    @property
    def binary_only(self) -> bool:
        """True when the reducer is defined only for 0/1 values."""
        return self.name != "mean"


def views_for(cluster_by: str | None) -> list[str]:
    """The dataset views a reading of reduced scores needs: ``scores``, and ``examples``
    only to cluster (its labels come from the examples' fields)."""
    return ["scores", "examples"] if cluster_by else ["scores"]


def parse_reducer(spec: str | Reducer | None) -> Reducer:
    """A :class:`Reducer` from ``mean``, ``majority`` or ``pass_at_k:K`` (None: mean)."""
    if spec is None:
        return Reducer()
    if isinstance(spec, Reducer):
        return spec
    name, _, arg = spec.strip().partition(":")
    if name == "pass_at_k":
        if not arg.strip().isdigit() or int(arg) < 1:
            raise QueryError(f"cannot read reducer {spec!r}; write pass_at_k:K with K >= 1")
        return Reducer("pass_at_k", int(arg))
    if name in ("mean", "majority") and not arg:
        return Reducer(name)
    raise QueryError(f"unknown reducer {spec!r}; use mean, majority or pass_at_k:K")


def _value_sql(reducer: Reducer) -> str:
    if reducer.name == "mean":
        return "avg(value)"
    if reducer.name == "majority":
        return (
            "CASE WHEN count(value) = 0 THEN NULL "
            "WHEN sum(value) > count(value) / 2.0 THEN 1.0 ELSE 0.0 END"
        )
    n, c, k = "count(value)", "sum(value)", str(reducer.k)
    # 1 - C(n-c, k)/C(n, k) through log-gamma: (n-c)!(n-k)! / ((n-c-k)! n!)
    ratio = f"exp(lgamma({n}-{c}+1) + lgamma({n}-{k}+1) - lgamma({n}-{c}-{k}+1) - lgamma({n}+1))"
    return f"CASE WHEN {n} = 0 THEN NULL WHEN {n} - {c} < {k} THEN 1.0 ELSE 1.0 - {ratio} END"


def reduce_scores(
    con: duckdb.DuckDBPyConnection, reducer: Reducer, *, where: str = "", table: str = "reduced"
) -> None:
    """Create the temp view ``table`` of ``scores`` rows (``where``: a SQL condition)
    reduced to one a (run, component, metric, example, call), and check that ``reducer``
    applies to them (a one-line QueryError when it does not)."""
    condition = f"WHERE {where}" if where else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {table} AS
        SELECT run_id, component, metric, example_id, call_index,
               CAST({_value_sql(reducer)} AS DOUBLE) AS value, count(value) AS epochs,
               var_samp(value) AS within_var, count(error) AS errors,
               count(*) FILTER (WHERE value IS NOT NULL AND value NOT IN (0, 1)) AS nonbinary,
               any_value(value) FILTER (WHERE value NOT IN (0, 1)) AS odd
        FROM scores {condition}
        GROUP BY run_id, component, metric, example_id, call_index"""
    )
    if reducer.binary_only:
        _check_binary(con, table, reducer)
    if reducer.name == "pass_at_k":
        _check_epochs(con, table, reducer)


def _check_binary(con: duckdb.DuckDBPyConnection, table: str, reducer: Reducer) -> None:
    rows = con.sql(
        f"SELECT component, metric, example_id, odd FROM {table} WHERE nonbinary > 0 "
        "ORDER BY component, metric, example_id LIMIT 1"
    ).fetchall()
    if rows:
        component, metric, example, odd = rows[0]
        raise QueryError(
            f"--reduce {reducer} needs a 0/1 metric, but {component}/{metric} scored {odd:g} "
            f"on example {example}; use --reduce mean or pick a 0/1 metric with --metric"
        )


def _check_epochs(con: duckdb.DuckDBPyConnection, table: str, reducer: Reducer) -> None:
    rows = con.sql(
        f"SELECT component, metric, example_id, epochs FROM {table} "
        f"WHERE epochs > 0 AND epochs < {reducer.k} ORDER BY epochs, example_id LIMIT 1"
    ).fetchall()
    if rows:
        component, metric, example, epochs = rows[0]
        raise QueryError(
            f"--reduce {reducer} needs at least {reducer.k} scored epochs per example, but "
            f"{component}/{metric} has {epochs} on example {example}; use a smaller k"
        )


def _json_path(field: str) -> str:
    if not field or '"' in field:
        raise QueryError(f"cannot cluster by {field!r}; name an example field without quotes")
    return quote_literal(f'$."{field}"')


def attach_labels(
    con: duckdb.DuckDBPyConnection, field: str, run_ids: Sequence[int], *, table: str = "labels"
) -> None:
    """Create the temp view ``table`` (run_id, example_id, label) of each example's value
    of ``field`` in the ``examples`` view, for ``run_ids``; a QueryError naming the fields
    present when no example of those runs has ``field``."""
    path = _json_path(field)
    runs = ", ".join(str(int(r)) for r in run_ids)
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW {table} AS
            SELECT run_id, example_id, json_extract_string(fields, {path}) AS label
            FROM examples WHERE run_id IN ({runs})"""
        )
    except duckdb.CatalogException:
        raise QueryError(
            f"cannot cluster by {field!r}: this store keeps no examples view; run the "
            "evaluation with a version of Hypermetric that records its examples"
        ) from None
    ((labelled, total),) = con.sql(f"SELECT count(label), count(*) FROM {table}").fetchall()
    if total == 0:
        raise QueryError(
            f"cannot cluster by {field!r}: runs {runs} recorded no examples; re-run them "
            "with a version of Hypermetric that records its examples"
        )
    if labelled == 0:
        keys = [
            k
            for (k,) in con.sql(
                "SELECT DISTINCT unnest(json_keys(fields)) AS k FROM examples "
                f"WHERE run_id IN ({runs}) ORDER BY k"
            ).fetchall()
        ]
        raise QueryError(
            f"no example of run {runs} has the field {field!r}; its examples have: "
            + (", ".join(keys) or "no fields")
        )


def label_sql(example: str, *runs: int, table: str = "labels") -> str:
    """The SQL expression of an example's cluster label: the first of ``runs`` that labels
    it wins; an unlabelled example is a cluster of its own (its id)."""
    picks = ", ".join(
        f"(SELECT label FROM {table} l WHERE l.run_id = {int(r)} AND l.example_id = {example})"
        for r in runs
    )
    return f"coalesce({picks}, chr(0) || {example})"


def cluster_means(
    con: duckdb.DuckDBPyConnection, query: str, keys: Sequence[str]
) -> dict[Hashable, ClusteredMean | None]:
    """The CR1 clustered mean of each group of the rows of ``query``: its columns are
    ``keys``, ``value`` and ``label``, its rows ordered by ``keys``; a group's key is the
    tuple of its ``keys`` values."""
    table = con.sql(query).arrow().read_all()
    groups = list(zip(*(table[k].to_pylist() for k in keys), strict=True))
    values = table["value"].to_numpy(zero_copy_only=False)
    return cluster_means_by(groups, values, cluster_codes(table["label"].to_pylist()))
