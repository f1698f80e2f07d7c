"""Engine fixtures: small units and flushes, and readers of what a run committed."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from hypermetric.catalog.db import database
from hypermetric.catalog.shards import live_shards
from hypermetric.config import Settings, reset_settings
from hypermetric.storage.files import store_for


@pytest.fixture
def engine_settings(settings: Settings, ray_cluster: str) -> Settings:
    """Settings cut for tests: 25-example units and 200-row flushes (many shards)."""
    return reset_settings(
        replace(settings, unit_size=25, flush_rows=200, heartbeat_seconds=1.0, flush_seconds=5.0)
    )


def committed(run_id: int, dataset: str = "scores") -> pa.Table:
    """Every row of a run's registered shards, read by DuckDB straight from the files."""
    store = store_for()
    files = [store.full_path(s.path) for s in live_shards(database(), dataset, run_ids=[run_id])]
    if not files:
        return pa.table({})
    return duckdb.sql(f"SELECT * FROM read_parquet({files!r})").arrow().read_all()


def assert_exactly_once(run_id: int, expected_scores: int, keys: int = 0) -> pa.Table:
    """The run's scores: exactly ``expected_scores`` rows and no key twice."""
    scores = committed(run_id)
    assert scores.num_rows == expected_scores
    dupes = duckdb.sql(
        "SELECT example_id, component, call_index, metric, count(*) c FROM scores "
        "GROUP BY ALL HAVING c > 1"
    ).fetchall()
    assert dupes == []
    return scores


def values_of(scores: pa.Table, metric: str) -> list[float | None]:
    """The values of one metric in a scores table."""
    metrics = scores["metric"].to_pylist()
    return [v for m, v in zip(metrics, scores["value"].to_pylist(), strict=True) if m == metric]


ROOT = Path(__file__).resolve().parents[2]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``hypermetric`` command line in a process of its own, from the repository."""
    return subprocess.run(
        [sys.executable, "-m", "hypermetric", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


ROOT = Path(__file__).resolve().parents[2]


def kill_cli_run(
    target: str, evaluation: str, env: dict[str, str], ray_cluster: str, units: int
) -> int:
    """Start ``hypermetric run TARGET`` as a process on ``ray_cluster``, with units of 25
    examples written every 200 rows (so that it commits early), SIGKILL it once its run has
    committed ``units`` units, and return the run's id (left running, to be resumed)."""
    import os
    import signal
    import time

    from hypermetric.catalog.runs import list_runs
    from hypermetric.catalog.shards import committed_unit_ids

    proc = subprocess.Popen(
        [sys.executable, "-m", "hypermetric", "run", target, "--no-progress"],
        cwd=ROOT,
        env={
            **env,
            "RAY_ADDRESS": ray_cluster,
            "HYPERMETRIC_UNIT_SIZE": "25",
            "HYPERMETRIC_FLUSH_ROWS": "200",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = database()
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline:
            runs = list_runs(db, evaluation=evaluation)
            if runs and len(committed_unit_ids(db, runs[0].id)) >= units:
                run_id = runs[0].id
                break
            assert proc.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.1)
        assert run_id is not None, "the driver committed nothing in time"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return run_id
