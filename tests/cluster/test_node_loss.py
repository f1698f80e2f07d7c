"""A run over 100k examples on the real cluster (RAY_ADDRESS=HOST:PORT) loses its second
node mid-run (its raylet SIGKILLed): the run completes, or is resumed to the end, and SQL
over its scores shows each of the 100k exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import UnitCommit
from hypermetric.catalog.runs import get_run, list_runs
from tests.cluster.conftest import cli
from tests.cluster.raycluster import RayCluster
from tests.scheduler.helpers import wait_for

pytestmark = pytest.mark.slow

N = 100_000
EVAL = f"""
import hypermetric as hm

def same(output, q):
    return float(output == q)

@hm.component(evals=[same])
def echo(q: str) -> str:
    return q

@hm.runtime(name="node-loss", dataset=lambda ctx: [{{"id": i, "q": str(i)}} for i in range({N})])
def runtime(example):
    return echo(example["q"])
"""


def committed_units(db: Database, run_id: int) -> int:
    with db.session() as session:
        stmt = select(func.count()).select_from(UnitCommit).where(UnitCommit.run_id == run_id)
        return int(session.scalar(stmt) or 0)


@pytest.mark.timeout(900)
def test_a_run_outlives_the_loss_of_a_node_with_every_score_once(
    db: Database, tmp_path: Path, cluster_env: dict[str, str], ray_jobs_cluster: RayCluster
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "node_loss.py").write_text(EVAL)
    env = {k: v for k, v in cluster_env.items() if k != "HYPERMETRIC_LAUNCHER"}
    # a driver on this host joins the cluster itself, with the cluster's token
    env.update(RAY_ADDRESS=ray_jobs_cluster.gcs_address, RAY_AUTH_MODE="token")
    # units of 1000 committed by flushes of 10k rows: some are in when the node goes
    env.update(HYPERMETRIC_UNIT_SIZE="1000", HYPERMETRIC_FLUSH_ROWS="10000")
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypermetric", "run", "node_loss:runtime", "--no-progress"],
        cwd=code,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: bool(list_runs(db, evaluation="node-loss")), 300, "the run to start")
        (run,) = list_runs(db, evaluation="node-loss")
        wait_for(lambda: committed_units(db, run.id) >= 10, 300, "ten committed units")
        assert committed_units(db, run.id) < 100, "the run ended before the node was lost"
        ray_jobs_cluster.worker_raylet().send_signal(signal.SIGKILL)
        code_ = proc.wait(timeout=600)
        print("the run's process exited", code_, "with the run", get_run(db, run.id).state)
        if get_run(db, run.id).state != "success":  # it failed or died: resume it
            done = cli(env, code, "runs", "resume", str(run.id), "--no-progress")
            assert done.returncode == 0, done.stdout + done.stderr
        final = get_run(db, run.id)
        assert final.state == "success", (code_, final.error, (tmp_path / "run.log").read_text())
        query = (
            "SELECT count(*) AS n, count(DISTINCT (example_id, component, call_index, metric)) "
            f"AS d, count(DISTINCT example_id) AS e FROM scores WHERE run_id = {run.id}"
        )
        done = cli(env, code, "sql", query, "--format", "csv")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == f"{N},{N},{N}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ray_jobs_cluster.restart_worker()
