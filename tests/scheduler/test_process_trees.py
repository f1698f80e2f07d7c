"""Processes on this host through psutil, on real process trees (no DB, no Ray).

A tree is a leader in a session of its own (as the launcher starts runs) with a child in its
group and a grandchild that left the group for a session of its own. Each test kills what
it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from hypermetric.scheduler.processes import (
    ProcessRef,
    alive,
    descendants,
    find_run_process,
    holders_of,
    kill_survivors,
    kill_tree,
    pid_alive,
)

TREE = """
import subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
child = subprocess.Popen(sleep)
parent = subprocess.Popen(
    [sys.executable, "-c",
     "import subprocess, sys, time; p = subprocess.Popen(sys.argv[1:], start_new_session=True);"
     " print(p.pid, flush=True); time.sleep(600)", *sleep],
    stdout=subprocess.PIPE, text=True)
escaped = parent.stdout.readline().strip()
print(child.pid, parent.pid, escaped, flush=True)
time.sleep(600)
"""


@pytest.fixture
def spawned() -> Iterator[list[psutil.Process]]:
    """Processes a test started; any still alive after it are killed."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        if alive(proc):
            proc.kill()


def start_tree(spawned: list[psutil.Process], *argv: str) -> list[psutil.Process]:
    """A leader (its command line ends with ``argv``) and its three helpers, all running."""
    leader = subprocess.Popen(
        [sys.executable, "-c", TREE, *argv],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert leader.stdout is not None
    pids = [leader.pid, *map(int, leader.stdout.readline().split())]
    tree = [psutil.Process(pid) for pid in pids]
    spawned.extend(tree)
    assert len(tree) == 4 and all(alive(p) for p in tree)
    return tree


def test_kill_tree_kills_the_leader_its_group_and_what_left_the_group(
    spawned: list[psutil.Process],
) -> None:
    tree = start_tree(spawned)
    escaped = tree[3]
    assert os.getpgid(escaped.pid) == escaped.pid != tree[0].pid
    assert sorted(p.pid for p in descendants(tree[0].pid)) == sorted(p.pid for p in tree[1:])
    left = kill_tree(ProcessRef(tree[0].pid, tree[0].create_time()))
    assert left == []
    assert [p.pid for p in tree if alive(p)] == []


def test_a_kill_that_fails_returns_the_survivors_and_a_later_one_finishes_the_job(
    spawned: list[psutil.Process],
) -> None:
    tree = start_tree(spawned)
    ref = ProcessRef(tree[0].pid, tree[0].create_time())

    def refuse(proc: psutil.Process) -> None:
        raise psutil.AccessDenied(proc.pid)

    left = kill_tree(ref, killer=refuse, grace=0.2)
    assert sorted(p.pid for p in left) == sorted(p.pid for p in tree)
    assert all(alive(p) for p in tree)
    tree[2].kill()  # the escaped one's parent goes first: it is no longer below the leader
    assert kill_tree(ref, also=left) == []
    assert [p.pid for p in tree if alive(p)] == []


def test_a_reused_pid_is_never_killed(spawned: list[psutil.Process]) -> None:
    tree = start_tree(spawned, "resume", "7")
    leader = tree[0]
    # the process once recorded with this pid was created earlier: the pid was reused since
    recorded = ProcessRef(leader.pid, leader.create_time() - 5)
    assert recorded.process() is None
    assert kill_tree(recorded) == []
    assert all(alive(p) for p in tree)
    created = datetime.fromtimestamp(leader.create_time(), UTC)
    assert not pid_alive(leader.pid, created_before=created - timedelta(minutes=1))
    assert pid_alive(leader.pid, created_before=created)
    assert find_run_process(leader.pid, 7, created_before=created - timedelta(minutes=1)) is None
    assert find_run_process(leader.pid, 7, created_before=created) is not None


def test_a_run_process_is_recognised_by_resume_and_its_run_id(
    spawned: list[psutil.Process],
) -> None:
    leader = start_tree(spawned, "resume", "7")[0]
    other = start_tree(spawned, "run", "7")[0]
    assert find_run_process(leader.pid, 7) == ProcessRef(leader.pid, leader.create_time())
    assert find_run_process(leader.pid, 8) is None
    assert find_run_process(other.pid, 7) is None
    assert find_run_process(None, 7) is None
    # 0 and below name process groups to kill(2), never one process
    assert find_run_process(0, 7) is None and find_run_process(-1, 7) is None
    assert not pid_alive(0) and not pid_alive(-1) and ProcessRef.of(-1) is None
    leader.kill()
    leader.wait(timeout=10)
    assert find_run_process(leader.pid, 7) is None


def test_an_exited_child_not_yet_reaped_is_not_alive(spawned: list[psutil.Process]) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    proc = psutil.Process(child.pid)
    spawned.append(proc)
    while proc.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    assert not alive(proc) and not pid_alive(child.pid)
    assert child.wait() == 0


def test_kill_survivors_kills_only_those_still_alive_after_the_grace(
    spawned: list[psutil.Process],
) -> None:
    quick = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    procs = [psutil.Process(quick.pid), psutil.Process(slow.pid)]
    spawned.extend(procs)
    assert kill_survivors(procs, grace=3.0) == 1
    assert (quick.wait(timeout=10), slow.wait(timeout=10)) == (0, -9)


def test_the_holders_of_a_session_directory_are_found(
    tmp_path: Path, spawned: list[psutil.Process]
) -> None:
    session = tmp_path / "session_2026-11-29_10-00-00_123456_789"
    (session / "logs").mkdir(parents=True)
    code = "import sys, time; f = open(sys.argv[1], 'w'); time.sleep(600)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(session / "logs" / "agent.log")])
    proc = psutil.Process(holder.pid)
    spawned.append(proc)
    deadline = time.monotonic() + 10
    while proc.pid not in {p.pid for p in holders_of(str(session))}:
        assert time.monotonic() < deadline, "the holder was not found"
        time.sleep(0.05)
    assert holders_of(str(tmp_path / "elsewhere")) == []
    # a process of its own: this one may hold the session Ray cluster's files open
    code = (
        "import sys; from hypermetric.scheduler.processes import ray_session_dir as found\n"
        "with open(sys.argv[1], 'w'):\n    print(found())"
    )
    mine = session / "logs" / "mine.log"
    out = subprocess.run([sys.executable, "-c", code, str(mine)], capture_output=True, text=True)
    assert out.stdout.strip() == str(session), out.stderr
