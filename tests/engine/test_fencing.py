"""Fenced attempts, for real: a run process is stopped (SIGSTOP) in the middle of its run,
the run is taken over as a scheduler does with a lost run (or failed and reprocessed by a
backfill), a new attempt finishes it, and the old process, woken up (SIGCONT), has every
write refused and exits saying so; the run keeps exactly the new attempt's rows."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from hypermetric import sql
from hypermetric.catalog.attempts import list_attempts
from hypermetric.catalog.db import Database, database
from hypermetric.catalog.dialect import _SNAPSHOT_LOCK
from hypermetric.catalog.runs import get_run, list_runs
from hypermetric.catalog.shards import committed_unit_ids
from hypermetric.catalog.supervision import fail_timed_out, recover_lost
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings
from hypermetric.engine.runner import resume_run
from hypermetric.scheduler.backfill import backfill
from hypermetric.scheduler.definitions import register
from tests.engine.conftest import assert_exactly_once

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _db_free(db: Database, run_id: int) -> bool:
    """True if no transaction holds what a run's writes lock (the stopped process may be
    frozen inside one: it would block everyone, as a real frozen process would)."""
    try:
        if db.dialect.name == "sqlite":
            raw = sqlite3.connect(str(db.engine.url.database), timeout=0.2, isolation_level=None)
            try:
                raw.execute("BEGIN IMMEDIATE")
                raw.execute("ROLLBACK")
            finally:
                raw.close()
            return True
        with db.engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '200ms'"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SNAPSHOT_LOCK})
            conn.execute(text("SELECT id FROM runs WHERE id = :r FOR UPDATE"), {"r": run_id})
            conn.rollback()
        return True
    except Exception:  # locked: the database says so in its own words
        return False


def _stop(proc: subprocess.Popen[str], db: Database, run_id: int) -> None:
    """SIGSTOP the process at a moment it holds no transaction."""
    for _ in range(50):
        os.kill(proc.pid, signal.SIGSTOP)
        if _db_free(db, run_id):
            return
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the run process always held a transaction")


def _start(argv: list[str], env: dict[str, str], ray_cluster: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hypermetric", *argv, "--no-progress"],
        cwd=ROOT,
        env={
            **env,
            "RAY_ADDRESS": ray_cluster,
            "HYPERMETRIC_UNIT_SIZE": "25",
            "HYPERMETRIC_FLUSH_ROWS": "200",
            "HYPERMETRIC_HEARTBEAT_SECONDS": "0.5",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_units(db: Database, evaluation: str, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = list_runs(db, evaluation=evaluation)
        if runs and runs[0].state == "running" and len(committed_unit_ids(db, runs[0].id)) >= 8:
            return runs[0].id
        assert proc.poll() is None, f"the run ended before it could be stopped: {proc.stderr}"
        time.sleep(0.1)
    raise AssertionError("the run committed nothing in time")


def _wake_and_watch(proc: subprocess.Popen[str]) -> str:
    """SIGCONT the stopped process; its last words once it exited (non-zero)."""
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    return [line for line in err.splitlines() if line.strip()][-1]


@pytest.fixture
def stopped() -> list[subprocess.Popen[str]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()


def test_an_attempt_taken_over_while_stopped_writes_nothing_when_it_wakes(
    engine_settings: Settings,
    env: dict[str, str],
    ray_cluster: str,
    stopped: list[subprocess.Popen[str]],
) -> None:
    db = database()
    proc = _start(["run", "tests.engine.sample:slow"], env, ray_cluster)
    stopped.append(proc)
    run_id = _wait_for_units(db, "engine-slow", proc)
    _stop(proc, db, run_id)
    kept = committed_unit_ids(db, run_id)
    # a scheduler finds the run lost (no heartbeat) and queues it again: attempt 2 takes it
    now = utcnow()
    reason = "no heartbeat for 30s"
    state = recover_lost(
        db, run_id, now, seen_before=now + timedelta(days=1), max_attempts=9, reason=reason
    )
    assert state == "queued"
    done = resume_run(run_id)
    assert (done.state, done.attempt) == ("success", 2)

    last = _wake_and_watch(proc)
    assert last == (
        f"error: run {run_id}: attempt 1 was superseded by attempt 2 (success); "
        "this process stops without writing more"
    )
    final = get_run(db, run_id)
    assert (final.state, final.attempt, final.error) == ("success", 2, None)
    assert_exactly_once(run_id, 6000)
    # attempt 1's rows are those of the units it committed before it was taken over
    by_attempt = dict(
        sql(
            f"SELECT run_attempt, count(*) FROM scores WHERE run_id = {run_id} GROUP BY 1"
        ).fetchall()
    )
    assert by_attempt == {1: 2 * 25 * len(kept), 2: 6000 - 2 * 25 * len(kept)}
    attempts = [(a.attempt, a.kind, a.state, a.reason) for a in list_attempts(db, run_id)]
    assert attempts == [(1, "start", "lost", reason), (2, "resume", "success", None)]


def test_an_attempt_from_before_a_reprocess_is_refused_while_the_new_one_runs(
    engine_settings: Settings,
    env: dict[str, str],
    ray_cluster: str,
    stopped: list[subprocess.Popen[str]],
) -> None:
    db = database()
    register(db, "tests.engine.sample:nightly_slow")
    (run_id,) = backfill(db, "engine-nightly", "2026-11-01", "2026-11-01").run_ids
    first = _start(["runs", "resume", str(run_id)], env, ray_cluster)
    stopped.append(first)
    _wait_for_units(db, "engine-nightly", first)
    _stop(first, db, run_id)
    # its scheduler failed it at its timeout but could not kill it (another host, a stopped
    # process); then a backfill reprocesses the interval, and attempt 2 starts
    now = utcnow()
    later = now + timedelta(days=1)
    assert fail_timed_out(db, run_id, now, started_before=later, reason="timed out")
    redo = backfill(db, "engine-nightly", "2026-11-01", "2026-11-01", reprocess="all")
    assert redo.run_ids == (run_id,)
    second = _start(["runs", "resume", str(run_id)], env, ray_cluster)
    stopped.append(second)
    _wait_for_units(db, "engine-nightly", second)
    # attempt 1 wakes while attempt 2 runs: the run is running, but not at its attempt
    last = _wake_and_watch(first)
    assert last == (
        f"error: run {run_id}: attempt 1 was superseded by attempt 2 (running); "
        "this process stops without writing more"
    )
    assert second.wait(timeout=180) == 0, second.communicate()[1]
    final = get_run(db, run_id)
    assert (final.state, final.attempt) == ("success", 2)
    assert_exactly_once(run_id, 6000)
    # everything from before the reprocess was retracted, and attempt 1 added nothing after
    assert sql(f"SELECT DISTINCT run_attempt FROM scores WHERE run_id = {run_id}").fetchall() == [
        (2,)
    ]
    assert sql(f"SELECT count(*) FROM calls WHERE run_id = {run_id}").fetchall() == [(6000,)]
    attempts = [(a.attempt, a.kind, a.state) for a in list_attempts(db, run_id)]
    assert attempts == [(1, "start", "failed"), (2, "start", "success")]


def test_resume_is_refused_while_the_runs_process_lives_not_once_its_pid_names_another(
    settings: Settings,
) -> None:
    import socket

    from hypermetric.catalog.evaluations import upsert_evaluation
    from hypermetric.catalog.runs import create_run, update_run
    from hypermetric.errors import ConflictError, DefinitionError

    db = database()
    evaluation = upsert_evaluation(db, "driven-elsewhere")  # no import path: cannot rerun
    run = create_run(db, evaluation.id, run_type="manual")
    here = socket.gethostname()
    update_run(db, run.id, state="running", pid=os.getpid(), host=here, started_at=utcnow())
    with pytest.raises(ConflictError, match=f"being driven by process {os.getpid()}"):
        resume_run(run.id)
    # the process died and the system gave its pid to one started since: not the run's
    newer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = utcnow() - timedelta(hours=1)
        update_run(db, run.id, pid=newer.pid, started_at=started)
        with pytest.raises(DefinitionError, match="has no import path"):  # past the check
            resume_run(run.id)
    finally:
        newer.kill()
        newer.wait()
