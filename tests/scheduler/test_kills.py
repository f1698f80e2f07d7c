"""The scheduler kills real run processes: a hung run's whole process tree at its timeout,
the hung process of an earlier scheduler, never a pid reused by another process, and never
queues a run again while its process outlives a kill.

The run processes are :mod:`tests.scheduler.run_process` stand-ins for ``runs resume`` (no
Ray), launched by the real :class:`SubprocessLauncher`; the scheduler runs its passes here
on the system clock. Every test runs on SQLite and on PostgreSQL, and kills what it
started when it ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import get_run, start_run, update_run
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings
from hypermetric.scheduler.definitions import store_definition, trigger
from hypermetric.scheduler.options import SchedulerOptions
from hypermetric.scheduler.processes import alive
from hypermetric.scheduler.service import Scheduler
from tests.scheduler.conftest import DEFAULTS
from tests.scheduler.launchers import stand_in

pytestmark = pytest.mark.slow

Make = Callable[..., Scheduler]


class Refusing:
    """A killer that cannot kill (as for another user's process); counts its attempts."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self, proc: psutil.Process) -> None:
        self.attempts += 1
        raise psutil.AccessDenied(proc.pid)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Where stand-ins record their launches and trees."""
    return {"record": tmp_path / "launches.txt", "trees": tmp_path}


@pytest.fixture
def make(settings: Settings, db: Database, files: dict[str, Path]) -> Iterator[Make]:
    """Started schedulers on the system clock whose runs are stand-in processes; after the
    test, the schedulers stop and every process a stand-in recorded is killed."""
    made: list[Scheduler] = []
    began = time.time()

    def _make(*options: str, killer: Any = None, stale_after: float = 1.0) -> Scheduler:
        record = ("--record", str(files["record"]))
        tree = ("--tree", str(files["trees"]))
        extra = {"killer": killer} if killer is not None else {}
        launcher = stand_in(settings, *record, *tree, *options, **extra)
        service = Scheduler(
            settings,
            options=SchedulerOptions(tick_seconds=0.2, stale_after=stale_after),
            launcher=launcher,
            db=db,
        )
        service.start()
        made.append(service)
        return service

    yield _make
    try:
        for service in made:
            service.stop()
            for child in service.supervisor.children.values():
                child.handle.kill()  # with its tree, written down yet or not (a test's
                # killer may refuse: what was written down is killed below, whatever happens)
    finally:
        for pid in recorded_pids(files):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                if proc.create_time() >= began - 1:  # ours, not a later holder of the pid
                    proc.kill()


def recorded_pids(files: dict[str, Path]) -> list[int]:
    """Every run process and tree member the stand-ins wrote down."""
    pids = [int(line.split()[1]) for line in launches(files)]
    for tree in files["trees"].glob("tree-*.txt"):
        pids.extend(int(p) for p in tree.read_text().split())
    return pids


def launches(files: dict[str, Path]) -> list[str]:
    """One line ``RUN_ID PID PARENT_PID`` per run process started."""
    path = files["record"]
    return path.read_text().splitlines() if path.exists() else []


def define(db: Database, **fields: Any) -> None:
    """A definition that never comes due by itself (runs are triggered)."""
    store_definition(db, "hung", {**DEFAULTS, "schedule": None, **fields})


def passes_until(service: Scheduler, check: Callable[[], bool], seconds: float, what: str) -> None:
    """Run passes until ``check()`` holds (asserting it does within ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        service.run_pass()
        if check():
            return
        assert time.monotonic() < deadline, f"waited {seconds}s for {what}"
        time.sleep(0.2)


def tree_of(files: dict[str, Path], run_id: int, service: Scheduler) -> list[psutil.Process]:
    """The process tree of the run's first attempt (itself and three helpers)."""
    path = files["trees"] / f"tree-{run_id}-1.txt"
    passes_until(service, path.exists, 60, "the run's process tree")
    procs = [psutil.Process(int(pid)) for pid in path.read_text().split()]
    assert len(procs) == 4 and all(alive(p) for p in procs)
    return procs


def test_a_hung_run_past_its_timeout_loses_its_whole_process_tree_and_fails(
    db: Database, files: dict[str, Path], make: Make
) -> None:
    define(db, timeout_s=2.0)
    service = make("--then", "heartbeat")  # heartbeats forever: only the scheduler stops it
    run = trigger(db, "hung")
    tree = tree_of(files, run.id, service)
    escaped = tree[3]
    assert escaped.pid not in {p.pid for p in tree[0].children()}  # below a helper...
    assert psutil.Process(escaped.pid).ppid() == tree[2].pid
    assert os.getpgid(escaped.pid) != tree[0].pid  # ...and out of the run's process group
    passes_until(service, lambda: get_run(db, run.id).finished, 30, "the run to time out")
    final = get_run(db, run.id)
    assert final.state == "failed"
    assert final.error == "timed out: attempt 1 ran longer than its timeout of 2s"
    assert [p.pid for p in tree if alive(p)] == []  # the whole tree, the escaped one too
    assert len(launches(files)) == 1


@pytest.mark.parametrize("path", ["stale", "timeout"])
def test_a_run_whose_process_outlives_its_kill_waits_for_it_and_is_never_requeued_before(
    db: Database, files: dict[str, Path], make: Make, path: str
) -> None:
    killer = Refusing()
    if path == "stale":
        define(db)
        service = make("--then", "silent", "--hang-attempts", "1", killer=killer)
    else:
        define(db, timeout_s=1.0, retries=1, retry_delay_s=0.1)
        service = make("--then", "heartbeat", "--hang-attempts", "1", killer=killer)
    run = trigger(db, "hung")
    process = tree_of(files, run.id, service)[0]
    passes_until(service, lambda: killer.attempts > 0, 30, "a kill")
    end = time.monotonic() + 3
    while time.monotonic() < end:  # pass after pass, the kill fails and the run waits
        service.run_pass()
        current = get_run(db, run.id)
        assert (current.state, current.attempt, current.pid) == ("running", 1, process.pid)
        assert alive(process) and len(launches(files)) == 1
        time.sleep(0.2)
    assert killer.attempts > 3  # tried again at every pass
    process.kill()  # it goes at last (its helpers stay: they do not drive the run)
    service.run_pass()
    requeued = get_run(db, run.id)
    assert requeued.state in ("queued", "running") and requeued.error is not None
    expected = "no heartbeat" if path == "stale" else "timed out"
    assert expected in requeued.error
    passes_until(service, lambda: get_run(db, run.id).finished, 60, "the second attempt")
    final = get_run(db, run.id)
    assert (final.state, final.attempt, len(launches(files))) == ("success", 2, 2)


def test_a_hung_run_of_an_earlier_scheduler_on_this_host_is_killed_tree_and_all(
    db: Database, files: dict[str, Path], make: Make
) -> None:
    define(db)
    earlier = make("--then", "silent", "--hang-attempts", "1", stale_after=600)
    run = trigger(db, "hung")
    tree = tree_of(files, run.id, earlier)
    earlier.stop()  # on an external Ray its runs go on; a successor must deal with them
    # a resumed run process may take over a second to its first heartbeat on a loaded
    # machine: a tighter staleness would kill it too and resume the run a third time
    successor = make("--hang-attempts", "1", stale_after=5)
    passes_until(successor, lambda: not alive(tree[0]), 30, "the hung process to be killed")
    assert [p.pid for p in tree if alive(p)] == []
    passes_until(successor, lambda: get_run(db, run.id).finished, 60, "the resumed run")
    final = get_run(db, run.id)
    assert (final.state, final.attempt) == ("success", 2)
    assert final.error is None and len(launches(files)) == 2


def test_a_pid_reused_by_another_process_is_never_killed(
    db: Database, settings: Settings, files: dict[str, Path], make: Make
) -> None:
    define(db)
    run = trigger(db, "hung")
    # the run's process died long ago; its pid now names a newer process that looks like
    # a run process of the same run
    impostor = subprocess.Popen(
        [sys.executable, "-c", "import time, sys; time.sleep(600)", "resume", str(run.id)]
    )
    try:
        start_run(db, run.id, owner="gone", pid=impostor.pid, host=socket.gethostname())
        update_run(db, run.id, started_at=utcnow() - timedelta(hours=1))
        update_run(db, run.id, heartbeat_at=utcnow() - timedelta(hours=1))
        service = make()
        passes_until(service, lambda: get_run(db, run.id).finished, 60, "the resumed run")
        final = get_run(db, run.id)
        assert (final.state, final.attempt) == ("success", 2)
        assert impostor.poll() is None  # never killed
    finally:
        impostor.kill()
        impostor.wait()
