"""A stand-in for ``hypermetric runs resume RUN_ID``: a real run process without Ray.

``python -m tests.scheduler.run_process resume RUN_ID [options]`` (the words ``resume`` and
the run id are how a scheduler recognises a run's process):

* ``--record FILE``: first append ``RUN_ID PID LAUNCHER_PID`` to FILE (one line a launch;
  ``--launched-by PID`` names the launcher's process, else this one's parent);
* ``--pause S``: then wait S seconds before starting the run (the claim→start window);
* ``--tree DIR``: after starting the run, start helper processes (one in its process
  group, one below a second helper in a session of its own, as servers a runtime starts
  do) and write every pid of the tree, this one first, to ``DIR/tree-RUN-ATTEMPT.txt``;
* ``--then``: ``success`` (heartbeats for ``--seconds``, then succeeds), ``heartbeat``
  (heartbeats forever and never ends: a hang the run's own deadline does not catch) or
  ``silent`` (hangs without a heartbeat); ``--hang-attempts N``: only attempts up to N do
  that, later ones succeed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from hypermetric.catalog.attempts import finish_attempt, heartbeat
from hypermetric.catalog.db import database
from hypermetric.catalog.runs import start_run

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
#: a helper that starts its own helper in a new session (out of the group), then sleeps
PARENT = [
    sys.executable,
    "-c",
    "import subprocess, sys, time\n"
    "p = subprocess.Popen(sys.argv[1:], start_new_session=True)\n"
    "print(p.pid, flush=True)\n"
    "time.sleep(600)",
    *SLEEPER,
]


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("word", choices=["resume"])
    parser.add_argument("run_id", type=int)
    parser.add_argument("--record", type=Path)
    parser.add_argument("--launched-by", type=int)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--tree", type=Path)
    parser.add_argument("--then", choices=["success", "heartbeat", "silent"], default="success")
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--hang-attempts", type=int, default=1_000_000)
    return parser.parse_args(argv)


def _start_tree(path: Path) -> None:
    same_group = subprocess.Popen(SLEEPER)
    parent = subprocess.Popen(PARENT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    escaped = int(parent.stdout.readline())
    pids = [os.getpid(), same_group.pid, parent.pid, escaped]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(map(str, pids)) + "\n")
    tmp.rename(path)  # the test reads a whole list or none


def main(argv: list[str]) -> None:
    """Behave as told (see the module's docstring)."""
    args = _args(argv)
    if args.record is not None:
        with args.record.open("a") as fh:
            fh.write(f"{args.run_id} {os.getpid()} {args.launched_by or os.getppid()}\n")
    time.sleep(args.pause)
    db = database()
    run = start_run(
        db, args.run_id, owner=f"stand-in:{os.getpid()}", pid=os.getpid(), host=socket.gethostname()
    )
    if args.tree is not None:
        _start_tree(args.tree / f"tree-{run.id}-{run.attempt}.txt")
    then = args.then if run.attempt <= args.hang_attempts else "success"
    if then == "silent":
        time.sleep(3600)
    deadline = time.monotonic() + (3600.0 if then == "heartbeat" else args.seconds)
    while time.monotonic() < deadline:
        heartbeat(db, args.run_id, run.attempt)  # fenced, as a real attempt's are
        time.sleep(0.1)
    finish_attempt(db, args.run_id, run.attempt, "success")


if __name__ == "__main__":
    main(sys.argv[1:])
