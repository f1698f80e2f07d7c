"""Real scheduler processes on the real clock: one run per interval, through a SIGKILL and
with two schedulers at once. Runs are fakes inside the scheduler process, or stand-in run
processes (:mod:`tests.scheduler.run_process`; no Ray), so the tests measure scheduling,
not evaluation. Each test kills only the processes it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import list_runs
from hypermetric.cli import cli
from hypermetric.config import Settings
from hypermetric.scheduler.definitions import store_definition
from tests.scheduler.conftest import DEFAULTS
from tests.scheduler.helpers import count_active, logical_dates, stop_scheduler

ROOT = Path(__file__).resolve().parents[2]
Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn(env: dict[str, str], tmp_path: Path) -> Iterator[Spawn]:
    """Start ``hypermetric scheduler`` processes; every one is killed and reaped after."""
    started: list[subprocess.Popen[bytes]] = []

    def _spawn(*args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"scheduler-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hypermetric", "scheduler", "--tick", "0.5", *args],
            cwd=ROOT,
            env={**env, "HYPERMETRIC_HEARTBEAT_SECONDS": "0.5"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def assert_one_run_per_interval(db: Database, first_logical: object) -> int:
    """Runs exist for every interval from the first to the next uncreated one, once each."""
    ev = get_evaluation(db, "every2")
    assert ev.next_logical_date is not None
    dates = logical_dates(db, "every2")
    expected, current = [], first_logical
    while current < ev.next_logical_date:  # type: ignore[operator]
        expected.append(current)
        current = current + timedelta(seconds=2)  # type: ignore[operator]
    assert dates == expected
    return len(dates)


def define_every_two_seconds(db: Database, **fields: object) -> object:
    ev = store_definition(db, "every2", {**DEFAULTS, **fields}).evaluation
    return ev.next_logical_date


pytestmark = pytest.mark.slow


def test_thirty_seconds_of_two_second_intervals(db: Database, spawn: Spawn) -> None:
    first = define_every_two_seconds(db)
    proc = spawn("--launcher", "tests.scheduler.fakes:instant")
    time.sleep(30)
    stop_scheduler(proc)
    assert assert_one_run_per_interval(db, first) >= 13
    runs = list_runs(db, limit=None)
    assert all(r.attempt == 1 for r in runs)  # each launched once
    assert sum(r.state == "success" for r in runs) >= len(runs) - 1


def test_a_scheduler_killed_and_restarted_loses_and_doubles_nothing(
    db: Database, spawn: Spawn
) -> None:
    first = define_every_two_seconds(db, max_active_runs=4)
    args = ("--launcher", "tests.scheduler.fakes:steady", "--stale-after", "3")
    killed = spawn(*args)
    time.sleep(15)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    time.sleep(4)  # down for two intervals
    restarted = spawn(*args)
    time.sleep(15)
    stop_scheduler(restarted)
    count = assert_one_run_per_interval(db, first)
    assert count >= 13
    # runs the killed scheduler was driving were resumed by its successor
    assert sum(r.state == "success" for r in list_runs(db, limit=None)) >= count - 2


def test_a_second_scheduler_on_sqlite_refuses_to_start(
    db: Database, spawn: Spawn, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("several schedulers are allowed on PostgreSQL")
    define_every_two_seconds(db)
    first = spawn("--launcher", "tests.scheduler.fakes:instant")
    deadline = time.monotonic() + 30
    while not logical_dates(db, "every2") and time.monotonic() < deadline:
        time.sleep(0.2)
    second = CliRunner().invoke(cli, ["scheduler", "--once"])
    assert second.exit_code == 1
    assert second.output.startswith("error: another scheduler (pid ")
    assert "allows one scheduler; stop it first, or use PostgreSQL" in second.output
    stop_scheduler(first)


def test_two_schedulers_on_postgresql_create_and_launch_each_run_once(
    db: Database, spawn: Spawn, backend: str, settings: Settings, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite allows one scheduler")
    first = define_every_two_seconds(db, max_active_runs=2)
    # real run processes, each writing a line when it starts, then waiting 2.5 s between
    # its claim and the start of its run: longer than --stale-after, so for that long the
    # other scheduler sees a claimed run whose process has not started it yet
    args = ("--launcher", "tests.scheduler.launchers:paused", "--stale-after", "2")
    procs = [spawn(*args) for _ in range(2)]
    peak, end = 0, time.monotonic() + 30
    while time.monotonic() < end:
        active = count_active(db, "every2")
        assert active <= 2
        peak = max(peak, active)
        time.sleep(0.05)
    for proc in procs:
        stop_scheduler(proc)
    assert peak == 2
    assert assert_one_run_per_interval(db, first) >= 10
    wait_until_launched_runs_ended(db)
    launched = [line.split() for line in (settings.home / "launches.txt").read_text().split("\n")]
    run_ids = [int(fields[0]) for fields in launched if fields]
    assert sorted(run_ids) == sorted(set(run_ids)), "a run was launched twice"
    started = {r.id for r in list_runs(db, limit=None) if r.attempt > 0}
    assert set(run_ids) == started and len(started) >= 8
    launchers = {int(fields[2]) for fields in launched if fields}
    assert launchers <= {proc.pid for proc in procs}
    # both schedulers took part in the passes the whole time (which of them launches is a
    # race the first usually keeps winning: it hears first of its own run processes' ends,
    # so it takes each freed slot); the other saw every claimed run before its start
    for n in range(len(procs)):
        log = (tmp_path / f"scheduler-{n}.log").read_text()
        assert " created for " in log or " launched: " in log, f"scheduler {n} did nothing"
    assert all(r.attempt <= 1 for r in list_runs(db, limit=None))


def wait_until_launched_runs_ended(db: Database) -> None:
    """Wait for the run processes the stopped schedulers left to end their runs."""
    deadline = time.monotonic() + 30
    while any(r.state == "running" or (r.state == "queued" and r.owner) for r in all_runs(db)):
        assert time.monotonic() < deadline, "launched runs did not end"
        time.sleep(0.2)


def all_runs(db: Database) -> list[RunRecord]:
    """Every run, newest first."""
    return list_runs(db, limit=None)
