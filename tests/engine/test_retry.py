"""Retries that retry: a run that failed because a model API was down is run again where it
failed, through the command line, in real processes; the current dataset then holds every
score once and no superseded error row, and the version before the retry still shows them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermetric import sql
from hypermetric.catalog.attempts import list_attempts
from hypermetric.catalog.db import database
from hypermetric.catalog.runs import get_run, list_runs
from hypermetric.catalog.shards import latest_version_id, ledger_totals
from hypermetric.config import Settings
from tests.engine.conftest import run_cli

pytestmark = pytest.mark.ray


def _counts(run_id: int, dataset: str, as_of: int | None = None) -> tuple[int, int, int]:
    """(rows, distinct keys, rows with an error) of a run's rows in ``dataset``."""
    key = "example_id, component, call_index" + (", metric" if dataset == "scores" else "")
    ((rows, keys, errors),) = sql(
        f"SELECT count(*), count(DISTINCT ({key})), count(error) FROM {dataset} "
        f"WHERE run_id = {run_id}",
        as_of=as_of,
    ).fetchall()
    return int(rows), int(keys), int(errors)


def test_runs_retry_runs_the_failed_examples_again_and_retracts_their_errors(
    engine_settings: Settings, env: dict[str, str], ray_cluster: str, tmp_path: Path
) -> None:
    marker = tmp_path / "api-is-back"
    env = {**env, "RAY_ADDRESS": ray_cluster, "HYPERMETRIC_UNIT_SIZE": "25"}
    params = ["--param", f"marker={marker}", "--param", "n=300", "--no-progress"]
    failed = run_cli(env, "run", "tests.engine.sample:flaky", *params)
    assert failed.returncode == 1, failed.stderr
    assert "100 of 300 examples had errors" in failed.stderr
    db = database()
    (run,) = list_runs(db, evaluation="engine-flaky")
    assert (run.state, run.attempt) == ("failed", 1)
    # each failed example: its two evals are "not scored" rows; its component and runtime
    # calls carry the error
    assert _counts(run.id, "scores") == (600, 600, 200)
    assert _counts(run.id, "calls") == (600, 600, 200)
    before = latest_version_id(db)
    again = run_cli(env, "runs", "resume", str(run.id), "--no-progress")
    assert again.returncode == 1 and f"runs retry {run.id}" in again.stderr

    marker.write_text("up")
    retried = run_cli(env, "runs", "retry", str(run.id), "--no-progress")
    assert retried.returncode == 0, retried.stderr
    done = get_run(db, run.id)
    assert (done.state, done.attempt, done.error) == ("success", 2, None)
    # every score once, none of the superseded error rows
    assert _counts(run.id, "scores") == (600, 600, 0)
    assert _counts(run.id, "calls") == (600, 600, 0)
    assert (done.rows_count, done.calls_count, done.errors_count) == (600, 600, 0)
    assert (done.examples_done, ledger_totals(db, run.id).failed_examples) == (300, 0)
    # only the failed examples ran again: the others keep the first attempt's rows
    by_attempt = sql(
        f"SELECT run_attempt, count(*) FROM scores WHERE run_id = {run.id} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert by_attempt == [(1, 400), (2, 200)]
    # time travel is not rewritten: the version before the retry still shows the errors
    assert _counts(run.id, "scores", as_of=before) == (600, 600, 200)
    assert _counts(run.id, "calls", as_of=before) == (600, 600, 200)
    attempts = [(a.attempt, a.kind, a.state) for a in list_attempts(db, run.id)]
    assert attempts == [(1, "start", "failed"), (2, "retry", "success")]
    shown = run_cli(env, "runs", "show", str(run.id))
    assert "retry" in shown.stdout and "above max_error_rate" in shown.stdout
