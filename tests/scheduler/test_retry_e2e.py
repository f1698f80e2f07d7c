"""The scheduler's automatic retry runs the failed work again: a run that failed because its
model API was down is retried by a real scheduler process once the API is back, and ends
with every score once and none of the superseded error rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hypermetric import sql
from hypermetric.catalog.attempts import list_attempts
from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import get_run
from hypermetric.catalog.shards import latest_version_id
from hypermetric.scheduler.definitions import register, trigger
from tests.scheduler.helpers import stop_scheduler, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]

RUNTIME = """
from pathlib import Path
import hypermetric as hm

def exact(output, answer):
    return float(output == answer)

@hm.component(evals=[exact])
def answer(q: str, i: int, marker: str) -> str:
    if i % 3 == 0 and not Path(marker).exists():
        raise ConnectionError("the model API is unavailable")
    return q

def rows(ctx):
    return [{{"id": i, "q": str(i), "answer": str(i), "marker": ctx.params["marker"]}}
            for i in range(90)]

@hm.runtime(name="flaky-nightly", dataset=rows, retries=1, retry_delay=2, params={{
    "marker": {marker!r}}})
def runtime(example):
    return answer(example["q"], example["id"], example["marker"])
"""


def _count(run_id: int, as_of: int | None = None) -> tuple[int, int, int]:
    ((rows, keys, errors),) = sql(
        "SELECT count(*), count(DISTINCT (example_id, component, call_index, metric)), "
        f"count(error) FROM scores WHERE run_id = {run_id}",
        as_of=as_of,
    ).fetchall()
    return int(rows), int(keys), int(errors)


def test_the_scheduler_retries_the_failed_examples_once_the_api_is_back(
    db: Database, tmp_path: Path, env: dict[str, str], ray_cluster: str
) -> None:
    marker = tmp_path / "api-is-back"
    module = tmp_path / f"hm_flaky_{uuid.uuid4().hex[:10]}.py"  # a fresh import each test
    module.write_text(RUNTIME.format(marker=str(marker)))
    register(db, f"{module}:runtime")
    run = trigger(db, "flaky-nightly")
    log = (tmp_path / "scheduler.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypermetric", "scheduler", "--tick", "0.5"],
        cwd=ROOT,
        env={**env, "RAY_ADDRESS": ray_cluster, "HYPERMETRIC_UNIT_SIZE": "10"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # the first attempt fails its error budget; the scheduler queues the retry
        wait_for(
            lambda: get_run(db, run.id).state == "queued" and get_run(db, run.id).attempt == 1,
            180,
            "the first attempt to fail and be queued for its retry",
        )
        assert "retry 1/1 after 2s" in (get_run(db, run.id).error or "")
        before = latest_version_id(db)
        assert _count(run.id) == (90, 90, 30)
        marker.write_text("up")
        wait_for(lambda: get_run(db, run.id).finished, 180, "the retry to end")
        stop_scheduler(proc)
    except AssertionError:
        print((tmp_path / "scheduler.log").read_text())  # shown with the failure
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    final = get_run(db, run.id)
    assert (final.state, final.attempt) == ("success", 2), final.error
    assert _count(run.id) == (90, 90, 0)
    assert _count(run.id, as_of=before) == (90, 90, 30)
    by_attempt = sql(
        f"SELECT run_attempt, count(*) FROM calls WHERE run_id = {run.id} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert by_attempt == [(1, 120), (2, 60)]  # 60 ok examples x 2 calls, 30 retried x 2
    assert [(a.kind, a.state) for a in list_attempts(db, run.id)] == [
        ("start", "failed"),
        ("retry", "success"),
    ]
