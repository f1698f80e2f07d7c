"""The scheduler with the real engine: ``hypermetric runs resume`` processes on the session's
Ray cluster. A killed run is found by its heartbeat and resumed to exactly-once scores; a
hung run past its timeout loses its whole process tree and fails with the reason; a failing
run is retried with growing delays. Each test kills only the processes it started (the
schedulers, and the run processes they launched with everything below them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import UnitCommit
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import get_run
from hypermetric.catalog.shards import committed_unit_ids
from hypermetric.scheduler.definitions import register, trigger
from hypermetric.scheduler.processes import alive, find_run_process, kill_tree
from tests.engine.conftest import assert_exactly_once
from tests.scheduler.helpers import stop_scheduler, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]

RUNTIME = """
import time
import hypermetric as hm

def exact(output, answer):
    return float(output == answer)

@hm.component(evals=[exact])
def answer(q: str, pause: float) -> str:
    time.sleep(pause)
    if q == "boom":
        raise ValueError("this system is broken")
    return q

def start_helpers(path):
    # as a runtime that starts a local server would: one helper in the run's process group,
    # and one below another helper in a session of its own
    import subprocess, sys
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    child = subprocess.Popen(sleep)
    code = ("import subprocess, sys, time; p = subprocess.Popen(sys.argv[1:], "
            "start_new_session=True); print(p.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code, *sleep], stdout=subprocess.PIPE)
    escaped = parent.stdout.readline().decode().strip()
    with open(path, "a") as fh:
        fh.write(" ".join([str(child.pid), str(parent.pid), escaped]) + "\\n")

def rows(params):
    n, q = int(params["n"]), params.get("q")
    if params.get("helpers"):
        start_helpers(params["helpers"])
    return [{{"id": i, "q": q or str(i), "answer": str(i), "pause": params["pause"]}}
            for i in range(n)]

@hm.runtime(name={name!r}, dataset=lambda ctx: rows(ctx.params), {options})
def runtime(example):
    return answer(example["q"], example["pause"])
"""

Spawn = Callable[..., subprocess.Popen[bytes]]


def write(folder: Path, name: str, **options: object) -> str:
    """A runtime module named ``name`` (the file is new: a module is imported once a process)."""
    path = folder / f"hm_e2e_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}.py"
    return rewrite(f"{path}:runtime", name, **options)


def rewrite(import_path: str, name: str, **options: object) -> str:
    """Write the runtime module at ``import_path`` with these options (its code changes)."""
    text = ", ".join(f"{k}={v!r}" for k, v in options.items())
    Path(import_path.rpartition(":")[0]).write_text(RUNTIME.format(name=name, options=text))
    return import_path


@pytest.fixture
def spawn(env: dict[str, str], tmp_path: Path, ray_cluster: str, db: Database) -> Iterator[Spawn]:
    """Start schedulers on the session cluster; after the test, kill them and their runs."""
    started: list[subprocess.Popen[bytes]] = []
    runs: list[int] = []
    run_env = {
        **env,
        "RAY_ADDRESS": ray_cluster,
        "HYPERMETRIC_UNIT_SIZE": "20",
        "HYPERMETRIC_FLUSH_ROWS": "40",
        "HYPERMETRIC_FLUSH_SECONDS": "1",
        "HYPERMETRIC_HEARTBEAT_SECONDS": "0.5",
    }

    def _spawn(*args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"scheduler-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hypermetric", "scheduler", "--tick", "0.5", *args],
            cwd=ROOT,
            env=run_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    _spawn.runs = runs  # type: ignore[attr-defined]
    yield _spawn
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    for run_id in runs:
        kill_run_process(get_run(db, run_id))


def kill_run_process(run: RunRecord) -> None:
    """SIGKILL the ``runs resume`` process of a run and its tree, if it is still there."""
    ref = find_run_process(run.pid, run.id)
    if ref is not None:
        kill_tree(ref)


def test_a_killed_run_is_found_by_heartbeat_and_resumed_exactly_once(
    db: Database, tmp_path: Path, spawn: Spawn
) -> None:
    register(db, write(tmp_path, "resumable", params={"n": 400, "pause": 0.02}))
    run = trigger(db, "resumable")
    spawn.runs.append(run.id)  # type: ignore[attr-defined]
    first = spawn("--stale-after", "3")
    wait_for(lambda: len(committed_unit_ids(db, run.id)) >= 2, 120, "two committed units")
    # the machine dies: scheduler and run process both, with no chance to say so
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    killed = get_run(db, run.id)
    assert killed.state == "running" and killed.pid is not None
    kill_run_process(killed)
    second = spawn("--stale-after", "3")
    wait_for(lambda: get_run(db, run.id).finished, 180, "the resumed run to end")
    stop_scheduler(second)
    final = get_run(db, run.id)
    assert (final.state, final.attempt) == ("success", 2), final.error
    assert_exactly_once(run.id, 400)
    with db.session() as session:
        rows = session.scalar(select(func.sum(UnitCommit.rows)).where(UnitCommit.run_id == run.id))
    assert rows == 400


def test_a_hung_run_past_its_timeout_loses_its_process_tree_and_fails(
    db: Database, tmp_path: Path, spawn: Spawn
) -> None:
    helpers = tmp_path / "helpers.txt"
    params = {"n": 20, "pause": 3600, "helpers": str(helpers)}
    ev = register(db, write(tmp_path, "hung", params=params, timeout=4)).evaluation
    # the run's own code has no timeout (its coordinator's deadline never comes): only the
    # scheduler, holding the definition's 4 s, can stop it
    assert ev.import_path is not None and ev.timeout_s == 4
    rewrite(ev.import_path, "hung", params=params)
    run = trigger(db, "hung")
    spawn.runs.append(run.id)  # type: ignore[attr-defined]
    proc = spawn("--stale-after", "3")
    try:

        def running() -> bool:
            return helpers.exists() and get_run(db, run.id).state == "running"

        wait_for(running, 120, "the run and its helpers")
        root = psutil.Process(get_run(db, run.id).pid)
        tree = [root, *root.children(recursive=True)]
        helper_pids = {int(pid) for pid in helpers.read_text().split()}
        assert helper_pids <= {p.pid for p in tree} and len(helper_pids) == 3
        wait_for(lambda: get_run(db, run.id).finished, 120, "the run to time out")
        stop_scheduler(proc)
        final = get_run(db, run.id)
        assert final.state == "failed"
        assert final.error == "timed out: attempt 1 ran longer than its timeout of 4s"
        assert [p.pid for p in tree if alive(p)] == []  # the helpers too
    finally:
        for pid in map(int, helpers.read_text().split() if helpers.exists() else []):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def test_a_failing_run_is_retried_with_growing_delays_then_fails(
    db: Database, tmp_path: Path, spawn: Spawn
) -> None:
    options = {"params": {"n": 20, "pause": 0.0, "q": "boom"}, "retries": 2, "retry_delay": 1}
    register(db, write(tmp_path, "broken", **options))
    run = trigger(db, "broken")
    spawn.runs.append(run.id)  # type: ignore[attr-defined]
    proc = spawn("--stale-after", "3")
    notes: list[str] = []

    def ended() -> bool:
        current = get_run(db, run.id)
        if current.state == "queued" and current.error and current.error not in notes:
            notes.append(current.error)
        return current.finished and current.attempt >= 3

    wait_for(ended, 180, "the third attempt to fail")
    stop_scheduler(proc)
    final = get_run(db, run.id)
    assert (final.state, final.attempt) == ("failed", 3)
    assert final.error is not None and "above max_error_rate" in final.error
    assert [n.rsplit("; ", 1)[1] for n in notes] == ["retry 1/2 after 1s", "retry 2/2 after 2s"]


def session_processes(sid: int) -> list[str]:
    """Processes still in session ``sid`` (the scheduler's, and whatever it started there)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid=,comm="], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.split()[1] == str(sid)]


def test_without_ray_address_the_scheduler_runs_its_own_ray_head_and_stops_it(
    db: Database, tmp_path: Path, env: dict[str, str], backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the Ray head's life does not depend on the DB: SQLite covers it")
    register(db, write(tmp_path, "own-ray", params={"n": 40, "pause": 0.0}))
    run = trigger(db, "own-ray")
    own_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    log = (tmp_path / "scheduler.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypermetric", "scheduler", "--tick", "0.5"],
        cwd=ROOT,
        env=own_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: get_run(db, run.id).finished, 180, "the run to end")
        assert len(session_processes(proc.pid)) > 1  # the head's processes run beside it
        stop_scheduler(proc)
        assert get_run(db, run.id).state == "success"
        wait_for(lambda: session_processes(proc.pid) == [], 30, "Ray's processes to exit")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        kill_run_process(get_run(db, run.id))
        for line in session_processes(proc.pid):
            os.kill(int(line.split()[0]), signal.SIGKILL)
