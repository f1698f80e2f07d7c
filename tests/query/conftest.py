"""Runs built without Ray: shards written through the store and committed through the ledger."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.records import ShardFile, UnitSummary
from hypermetric.catalog.runs import create_run, finish_run, get_run, start_run, update_run
from hypermetric.catalog.shards import commit_units
from hypermetric.config import Settings
from hypermetric.storage.files import ShardStore, store_for
from hypermetric.storage.schemas import CALLS_SCHEMA, SCORES_SCHEMA

NOW = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def scores_table(
    run_id: int,
    example_ids: Sequence[str],
    values: Sequence[float | None] | np.ndarray,
    *,
    evaluation: str = "qa",
    version: str | None = "v1",
    metric: str = "exact_match",
    component: str = "generate",
    errors: Sequence[str | None] | None = None,
) -> pa.Table:
    """Score rows of one metric, one per example (call_index 0)."""
    n = len(example_ids)
    value_array = pa.array(values, type=pa.float64(), from_pandas=True)
    return pa.Table.from_pydict(
        {
            "run_id": pa.array([run_id] * n, pa.int64()),
            "evaluation": pa.array([evaluation] * n, pa.string()),
            "version": pa.array([version] * n, pa.string()),
            "example_id": pa.array(list(example_ids), pa.string()),
            "component": pa.array([component] * n, pa.string()),
            "call_index": pa.array([0] * n, pa.int32()),
            "metric": pa.array([metric] * n, pa.string()),
            "value": value_array,
            "error": pa.array(errors if errors is not None else [None] * n, pa.string()),
            "run_attempt": pa.array([1] * n, pa.int32()),
            "created_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            "epoch": pa.array([0] * n, pa.int32()),
        },
        schema=SCORES_SCHEMA,
    )


def calls_table(run_id: int, example_ids: Sequence[str], *, evaluation: str = "qa") -> pa.Table:
    """One recorded call per example."""
    n = len(example_ids)
    return pa.Table.from_pydict(
        {
            "run_id": pa.array([run_id] * n, pa.int64()),
            "evaluation": pa.array([evaluation] * n, pa.string()),
            "version": pa.array(["v1"] * n, pa.string()),
            "example_id": pa.array(list(example_ids), pa.string()),
            "component": pa.array(["generate"] * n, pa.string()),
            "call_index": pa.array([0] * n, pa.int32()),
            "inputs": pa.array(['{"q": 1}'] * n, pa.string()),
            "output": pa.array(['"a"'] * n, pa.string()),
            "latency_ms": pa.array([1.5] * n, pa.float64()),
            "error": pa.array([None] * n, pa.string()),
            "run_attempt": pa.array([1] * n, pa.int32()),
            "created_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            "attempts": pa.array([1] * n, pa.int32()),
            "cached": pa.array([False] * n, pa.bool_()),
            "epoch": pa.array([0] * n, pa.int32()),
        },
        schema=CALLS_SCHEMA,
    )


class Runs:
    """Builds evaluations and runs in the test's home, committing shards like the engine."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.store: ShardStore = store_for(settings)
        self._dates = 0

    def start(
        self,
        evaluation: str = "qa",
        *,
        version: str | None = "v1",
        versions: dict[str, Any] | None = None,
        logical_date: datetime | None = None,
    ) -> int:
        """A running run of ``evaluation`` (created if needed)."""
        ev = upsert_evaluation(self.db, evaluation)
        self._dates += 1
        run = create_run(
            self.db,
            ev.id,
            run_type="manual",
            logical_date=logical_date or NOW + timedelta(days=self._dates),
            version_label=version,
            versions=versions,
        )
        start_run(self.db, run.id, owner="test", pid=os.getpid(), host="localhost")
        return run.id

    def commit(self, run_id: int, unit_id: int, tables: dict[str, pa.Table]) -> list[ShardFile]:
        """Write one shard per dataset and commit them as work unit ``unit_id``."""
        attempt = get_run(self.db, run_id).attempt
        # every row carries the attempt that wrote it, as the engine's do
        tables = {
            d: t.set_column(
                t.schema.get_field_index("run_attempt"),
                "run_attempt",
                pa.array([attempt] * t.num_rows, pa.int32()),
            )
            if "run_attempt" in t.column_names
            else t
            for d, t in tables.items()
        }
        files = [
            self.store.write(dataset, run_id, table, f"u{unit_id}")
            for dataset, table in tables.items()
        ]
        scores = tables.get("scores")
        rows = scores.num_rows if scores is not None else 0
        has_errors = scores is not None and "error" in scores.column_names
        errors = rows - scores["error"].null_count if has_errors else 0
        calls = tables["calls"].num_rows if "calls" in tables else 0
        unit = UnitSummary(unit_id=unit_id, examples=rows, rows=rows, calls=calls, errors=errors)
        commit_units(self.db, run_id, files, [unit], attempt=attempt)
        return files

    def finish(self, run_id: int, state: str = "success") -> None:
        """End the run."""
        finish_run(self.db, run_id, state)

    def run(
        self,
        evaluation: str = "qa",
        *,
        tables: Sequence[pa.Table] | None = None,
        build: Any = None,
        version: str | None = "v1",
        versions: dict[str, Any] | None = None,
        shards: int = 1,
        with_calls: bool = False,
        state: str = "success",
    ) -> int:
        """A whole run: ``build(run_id) -> scores table`` split into ``shards`` commits.

        Without ``versions``, the run records every eval it has scores of as
        higher-is-better, as a run of plain function evals does."""
        run_id = self.start(evaluation, version=version, versions=versions)
        table = build(run_id) if build is not None else pa.concat_tables(tables or [])
        if versions is None:
            evals = {m.split(".")[0] for m in table["metric"].to_pylist()} if table.num_rows else ()
            recorded = {"evals": {name: {"higher_is_better": True} for name in evals}}
            update_run(self.db, run_id, versions=recorded)
        bounds = np.linspace(0, table.num_rows, shards + 1).astype(int)
        for unit, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            part = table.slice(lo, hi - lo)
            chunk = {"scores": part}
            if with_calls:
                chunk["calls"] = calls_table(run_id, part["example_id"].to_pylist())
            self.commit(run_id, unit, chunk)
        self.finish(run_id, state)
        return run_id


@pytest.fixture
def runs(db: Database, settings: Settings) -> Runs:
    """A run builder on the test's metadata DB and store."""
    return Runs(db, settings)


def ids(n: int, prefix: str = "ex") -> list[str]:
    """``n`` example ids."""
    return [f"{prefix}{i:06d}" for i in range(n)]
