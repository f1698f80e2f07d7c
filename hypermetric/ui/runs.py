"""One run for the web view: its record, summary, attempts, errors grouped and examples.

Everything shown passes through :func:`hypermetric.masking.masked` where a user may have
put a credential: params, the dataset URI, the run's and attempts' errors, and the error
texts of rows. Examples come a page at a time, in example id order, each with its calls
(inputs, output, latency) and its scores; ``errors_only`` keeps the examples that have an
error row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import duckdb

from hypermetric.catalog.attempts import list_attempts
from hypermetric.catalog.db import database
from hypermetric.catalog.records import AttemptRecord, EvaluationRecord, RunRecord
from hypermetric.catalog.runs import get_run
from hypermetric.config import Settings
from hypermetric.masking import masked
from hypermetric.query.connection import open_connection, query_error
from hypermetric.query.result import SummaryRow, summarize
from hypermetric.query.sources import quote_literal
from hypermetric.ui.jsonable import masked_all

__all__ = [
    "ErrorGroup",
    "ExampleRows",
    "RunView",
    "masked_json",
    "run_view",
    "shown_evaluation",
    "shown_run",
]


@dataclass(frozen=True)
class ErrorGroup:
    """Rows with the same error text: where, how many, and the first example hit."""

    kind: str  # "call" or "score"
    component: str | None
    metric: str | None
    error: str
    count: int
    example_id: str


@dataclass(frozen=True)
class ExampleRows:
    """One example's calls and scores (dicts of their columns, error texts masked)."""

    example_id: str
    calls: tuple[dict[str, Any], ...]
    scores: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class RunView:
    """What the run page shows."""

    run: RunRecord
    params: str
    dataset: str
    error: str
    versions: str
    summary: tuple[SummaryRow, ...]
    attempts: tuple[AttemptRecord, ...]
    errors: tuple[ErrorGroup, ...]
    examples: tuple[ExampleRows, ...]
    examples_total: int
    page: int
    per_page: int
    errors_only: bool

    @property
    def pages(self) -> int:
        """How many pages of examples there are (at least 1)."""
        return max(1, -(-self.examples_total // self.per_page))


def masked_json(value: Any) -> str:
    """``value`` as indented JSON with credentials masked."""
    return masked(json.dumps(value, indent=2, sort_keys=True, default=str))


def _masked_value(value: Any) -> Any:
    text = masked_json(value)
    try:
        return json.loads(text)
    except ValueError:  # masking cut through the JSON's syntax: show the text
        return text


def shown_run(run: RunRecord) -> RunRecord:
    """``run`` with what may hold a credential masked (params, dataset, error, versions)."""
    return replace(
        run,
        params=_masked_value(run.params),
        versions=_masked_value(run.versions) if run.versions is not None else None,
        dataset=masked(run.dataset) if run.dataset else run.dataset,
        error=masked(run.error) if run.error else run.error,
    )


def shown_evaluation(ev: EvaluationRecord) -> EvaluationRecord:
    """``ev`` with its params and import path masked."""
    return replace(
        ev,
        params=_masked_value(ev.params),
        import_path=masked(ev.import_path) if ev.import_path else ev.import_path,
    )


_ERRORS_SQL = """
SELECT 'call' AS kind, component, NULL AS metric, error, count(*) AS n, min(example_id)
FROM calls WHERE error IS NOT NULL GROUP BY component, error
UNION ALL
SELECT 'score', component, metric, error, count(*), min(example_id)
FROM scores WHERE error IS NOT NULL GROUP BY component, metric, error
ORDER BY n DESC, kind, component, metric LIMIT 50
"""

_EXAMPLES_SQL = """
WITH ids AS (SELECT example_id FROM scores {where} UNION SELECT example_id FROM calls {where})
SELECT example_id, count(*) OVER () AS total FROM ids
ORDER BY example_id LIMIT {limit} OFFSET {offset}
"""


def _dicts(con: duckdb.DuckDBPyConnection, query: str) -> list[dict[str, Any]]:
    relation = con.sql(query)
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def _examples(
    con: duckdb.DuckDBPyConnection, page: int, per_page: int, errors_only: bool
) -> tuple[list[ExampleRows], int]:
    where = "WHERE error IS NOT NULL" if errors_only else ""
    found = con.sql(
        _EXAMPLES_SQL.format(where=where, limit=per_page, offset=(page - 1) * per_page)
    ).fetchall()
    if not found:
        return [], 0
    ids = ", ".join(quote_literal(r[0]) for r in found)
    calls = _dicts(
        con,
        "SELECT example_id, component, call_index, inputs, output, latency_ms, error "
        f"FROM calls WHERE example_id IN ({ids}) ORDER BY example_id, call_index, component",
    )
    scores = _dicts(
        con,
        "SELECT example_id, component, call_index, metric, value, error "
        f"FROM scores WHERE example_id IN ({ids}) "
        "ORDER BY example_id, component, call_index, metric",
    )
    cells = [
        (row, c) for row in (*calls, *scores) for c in ("error", "inputs", "output") if c in row
    ]
    for (row, column), text in zip(cells, masked_all([r[c] for r, c in cells]), strict=True):
        row[column] = text
    out = [
        ExampleRows(
            example_id=example_id,
            calls=tuple(c for c in calls if c["example_id"] == example_id),
            scores=tuple(s for s in scores if s["example_id"] == example_id),
        )
        for example_id, _ in found
    ]
    return out, int(found[0][1])


def run_view(
    settings: Settings, run_id: int, *, page: int = 1, per_page: int = 20, errors_only: bool = False
) -> RunView:
    """The run page's data; NotFoundError when there is no such run."""
    db = database(settings)
    run = shown_run(get_run(db, run_id))
    con = open_connection(settings, run_ids=[run_id], views=["scores", "calls"])
    try:
        summary = summarize(con)
        errors = [
            ErrorGroup(kind, component, metric, masked(error or ""), int(n), example_id)
            for kind, component, metric, error, n, example_id in con.sql(_ERRORS_SQL).fetchall()
        ]
        examples, total = _examples(con, page, per_page, errors_only)
    except duckdb.Error as exc:
        raise query_error(exc) from None
    finally:
        con.close()
    return RunView(
        run=run,
        params=masked_json(run.params),
        dataset=run.dataset or "",
        error=run.error or "",
        versions=masked_json(run.versions or {}),
        summary=tuple(summary),
        attempts=tuple(
            replace(a, reason=masked(a.reason)) if a.reason else a
            for a in list_attempts(db, run_id)
        ),
        errors=tuple(errors),
        examples=tuple(examples),
        examples_total=total,
        page=page,
        per_page=per_page,
        errors_only=errors_only,
    )
