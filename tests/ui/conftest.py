"""Fixtures of the web view's tests: runs built without Ray, and an HTTP client."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import update_run
from hypermetric.config import Settings
from hypermetric.storage.schemas import CALLS_SCHEMA
from hypermetric.ui.app import create_app
from tests.query.conftest import NOW, Runs, scores_table

#: the directions the runs built here record
DIRECTIONS = {
    "evals": {"exact_match": {"higher_is_better": True}, "words": {"higher_is_better": False}}
}


def calls_of(run_id: int, example_ids: Sequence[str], outputs: Sequence[str]) -> pa.Table:
    """One call of ``generate`` per example, with these outputs (JSON strings)."""
    n = len(example_ids)
    return pa.Table.from_pydict(
        {
            "run_id": [run_id] * n,
            "evaluation": ["qa"] * n,
            "version": ["v"] * n,
            "example_id": list(example_ids),
            "component": ["generate"] * n,
            "call_index": [0] * n,
            "inputs": [json.dumps({"question": f"q {e}"}) for e in example_ids],
            "output": [json.dumps(o) for o in outputs],
            "latency_ms": [2.5] * n,
            "error": [None] * n,
            "run_attempt": [1] * n,
            "created_at": [NOW] * n,
            "attempts": [1] * n,
            "cached": [False] * n,
            "epoch": [0] * n,
        },
        schema=CALLS_SCHEMA,
    )


def make_run(
    runs: Runs,
    evaluation: str,
    version: str,
    values: Sequence[float | None],
    *,
    outputs: Sequence[str] | None = None,
    errors: Sequence[str | None] | None = None,
    params: dict[str, Any] | None = None,
    state: str = "success",
) -> int:
    """A run of ``evaluation`` with one ``exact_match`` score per example (ex00, ex01...),
    a ``words`` score (lower is better) and one call each."""
    example_ids = [f"ex{i:02d}" for i in range(len(values))]
    run_id = runs.start(evaluation, version=version)
    update_run(runs.db, run_id, versions=DIRECTIONS, params=params or {})
    scores = pa.concat_tables(
        [
            scores_table(
                run_id, example_ids, values, evaluation=evaluation, version=version, errors=errors
            ),
            scores_table(
                run_id,
                example_ids,
                [10.0 + (v or 0) for v in values],
                evaluation=evaluation,
                version=version,
                metric="words",
            ),
        ]
    )
    shown = outputs or [f"answer {v}" for v in values]
    runs.commit(run_id, 0, {"scores": scores, "calls": calls_of(run_id, example_ids, shown)})
    runs.finish(run_id, state)
    return run_id


@pytest.fixture
def runs(db: Database, settings: Settings) -> Runs:
    """A run builder on the test's metadata DB and store."""
    return Runs(db, settings)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An HTTP client of a read-only web view over the test's DB."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
