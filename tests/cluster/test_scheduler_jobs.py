"""The scheduler with the ray-jobs launcher on a real two-node cluster (token auth on).

Runs due every 5 seconds, with catchup, succeed as Ray jobs; the scheduler is SIGKILLed
and started again, and the cluster then holds exactly one job per run attempt the DB
knows, none more; a run past its timeout has its job stopped; ``runs logs`` prints what
the evaluation printed on the cluster.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobSubmissionClient

from hypermetric.catalog.attempts import list_attempts
from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import get_run, list_runs
from hypermetric.scheduler.rayjobs import submission_id
from tests.cluster.conftest import Spawn, cli
from tests.cluster.raycluster import RayCluster
from tests.scheduler.helpers import stop_scheduler, wait_for

pytestmark = pytest.mark.slow

EVAL = """
import time
import hypermetric as hm

def exact(output, answer):
    return float(output == answer)

@hm.component(evals=[exact])
def answer(q: str, pause: float) -> str:
    time.sleep(pause)
    if q == "3":
        print("EVAL-SAW", q, flush=True)
    return q

def rows(params):
    return [{{"id": i, "q": str(i), "answer": str(i), "pause": params["pause"]}}
            for i in range(int(params["n"]))]

@hm.runtime(name={name!r}, dataset=lambda ctx: rows(ctx.params), {options})
def runtime(example):
    return answer(example["q"], example["pause"])
"""


def write_eval(code: Path, module: str, name: str, **options: Any) -> str:
    """An evaluation module in the folder the jobs ship; returns MODULE:NAME."""
    code.mkdir(exist_ok=True)
    text = ", ".join(f"{k}={v!r}" for k, v in options.items())
    (code / f"{module}.py").write_text(EVAL.format(name=name, options=text))
    return f"{module}:runtime"


def jobs_of(cluster: RayCluster) -> list[Any]:
    """The cluster's job list (what Ray says, not what the DB says)."""
    client = JobSubmissionClient(cluster.jobs_address, headers=cluster.client_headers())
    return [j for j in client.list_jobs() if (j.metadata or {}).get("hypermetric_run")]


def finished(db: Database, name: str, state: str = "success") -> int:
    return sum(r.state == state for r in list_runs(db, evaluation=name, limit=1000))


def under_way(db: Database, name: str) -> int:
    """Runs of ``name`` running or being launched."""
    runs = list_runs(db, evaluation=name, limit=1000)
    return sum(r.state == "running" or (r.state == "queued" and r.owner is not None) for r in runs)


@pytest.mark.timeout(600)
def test_runs_are_ray_jobs_one_per_attempt_across_a_scheduler_kill(
    db: Database,
    tmp_path: Path,
    cluster_env: dict[str, str],
    ray_jobs_cluster: RayCluster,
    spawn: Spawn,
) -> None:
    code = tmp_path / "code"
    env = {**cluster_env, "HYPERMETRIC_HEARTBEAT_SECONDS": "0.5", "HYPERMETRIC_UNIT_SIZE": "10"}
    target = write_eval(
        code, "every5", "every5", schedule="*/5 * * * * *", catchup=True, max_active_runs=2,
        params={"n": 40, "pause": 0.01},
    )  # fmt: skip
    done = cli(env, code, "evals", "register", target)
    assert done.returncode == 0, done.stderr
    args = ("scheduler", "--tick", "1", "--stale-after", "4")
    first = spawn(env, code, *args)
    wait_for(lambda: finished(db, "every5") >= 2, 240, "two runs to succeed as jobs")
    os.killpg(first.pid, signal.SIGKILL)  # no goodbye: its runs and jobs are left as they are
    first.wait(timeout=30)
    at_kill = {r.id for r in list_runs(db, evaluation="every5", limit=1000)}
    second = spawn(env, code, *args)
    wait_for(
        lambda: (
            all(get_run(db, rid).finished for rid in at_kill)
            and finished(db, "every5") >= len(at_kill) + 1
        ),
        300,
        "the runs of the killed scheduler to end, and one more run",
    )
    assert cli(env, code, "evals", "pause", "every5").returncode == 0  # the rest stay queued
    wait_for(lambda: under_way(db, "every5") == 0, 240, "the runs under way to end")
    stop_scheduler(second)

    runs = [r for r in list_runs(db, evaluation="every5", limit=1000) if r.attempt]
    assert [r.state for r in runs] == ["success"] * len(runs), [(r.id, r.error) for r in runs]
    expected = {
        submission_id("every5", r.id, a.attempt) for r in runs for a in list_attempts(db, r.id)
    }
    jobs = [j.submission_id for j in jobs_of(ray_jobs_cluster) if "every5" in j.submission_id]
    assert sorted(jobs) == sorted(expected)  # one job per attempt, and no other
    # a job's driver may still be printing its summary when its run is a success in the DB
    wait_for(
        lambda: all(j.status.is_terminal() for j in jobs_of(ray_jobs_cluster)), 60, "jobs to end"
    )
    statuses = {j.submission_id: str(j.status.value) for j in jobs_of(ray_jobs_cluster)}
    assert {statuses[sid] for sid in expected} == {"SUCCEEDED"}, statuses

    for log in tmp_path.glob("process-*.log"):  # the schedulers' logs
        assert ray_jobs_cluster.token and ray_jobs_cluster.token not in log.read_text()
    shown = cli(env, code, "runs", "logs", str(runs[0].id))
    assert shown.returncode == 0, shown.stderr
    assert f"== job {submission_id('every5', runs[0].id, 1)} (SUCCEEDED) ==" in shown.stdout
    assert "EVAL-SAW 3" in shown.stdout


def test_a_run_past_its_timeout_has_its_job_stopped(
    db: Database,
    tmp_path: Path,
    cluster_env: dict[str, str],
    ray_jobs_cluster: RayCluster,
    spawn: Spawn,
) -> None:
    code = tmp_path / "code"
    env = {**cluster_env, "HYPERMETRIC_HEARTBEAT_SECONDS": "0.5"}
    target = write_eval(code, "stuck", "stuck", timeout=4, params={"n": 4, "pause": 3600})
    assert cli(env, code, "evals", "register", target).returncode == 0
    # the code the job ships has no timeout (its own deadline never comes): only the
    # scheduler, holding the definition's 4 s, can stop it
    write_eval(code, "stuck", "stuck", params={"n": 4, "pause": 3600})
    assert cli(env, code, "evals", "trigger", "stuck").returncode == 0
    proc = spawn(env, code, "scheduler", "--tick", "1", "--stale-after", "4")
    (run,) = list_runs(db, evaluation="stuck")
    wait_for(lambda: get_run(db, run.id).finished, 240, "the run to time out")
    stop_scheduler(proc)
    final = get_run(db, run.id)
    assert final.state == "failed"
    assert final.error == "timed out: attempt 1 ran longer than its timeout of 4s"
    sid = submission_id("stuck", run.id, 1)
    client = JobSubmissionClient(
        ray_jobs_cluster.jobs_address, headers=ray_jobs_cluster.client_headers()
    )
    deadline = time.monotonic() + 60
    while not client.get_job_status(sid).is_terminal():
        assert time.monotonic() < deadline, "the job still runs"
        time.sleep(0.5)
    assert str(client.get_job_status(sid).value) == "STOPPED"
