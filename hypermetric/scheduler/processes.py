"""Processes on this host: is one alive, does it drive a run, what did Ray leave behind.

Linux ``/proc`` is read where a pid alone is not enough (a reused pid is never killed: a
process is checked by its command line or its start time first).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

__all__ = [
    "descendants",
    "drives_run",
    "holders_of",
    "kill_group",
    "kill_local_run",
    "kill_survivors",
    "pid_alive",
    "ray_session_dir",
]


def kill_group(pid: int) -> None:
    """SIGKILL process ``pid`` and, if it leads one, its process group (never waits)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drives_run(pid: int, run_id: int) -> bool:
    """True if process ``pid`` is a ``runs resume`` of this run (Linux /proc; else False)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [a.decode(errors="replace") for a in argv]
    return "resume" in words and str(run_id) in words


def kill_local_run(pid: int | None, run_id: int) -> bool:
    """Kill the process driving ``run_id`` on this host, if it is one; True if it was.

    Only a process whose command line is ``... resume RUN_ID`` is killed, so a reused pid
    is never hit.
    """
    if pid is None or not drives_run(pid, run_id):
        return False
    kill_group(pid)
    return True


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a process from /proc, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19]


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below ``pid`` as (pid, start time), read from /proc (Linux; else [])."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _stat(int(entry.name))
        if stat is not None:
            parents.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found, frontier = [], [pid]
    while frontier:
        children = [c for p in frontier for c in parents.get(p, [])]
        found.extend(children)
        frontier = [c for c, _ in children]
    return found


def kill_survivors(processes: list[tuple[int, str]], grace: float) -> int:
    """SIGKILL those of ``processes`` still alive after ``grace`` seconds; how many were.

    A process counts only if its start time is unchanged, so a reused pid is never hit.
    """
    deadline = time.monotonic() + grace
    alive = processes
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [(p, t) for p, t in alive if (_stat(p) or (0, ""))[1] == t]
    for pid, _ in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(alive)


def _open_paths(pid: int | str) -> list[str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    paths = []
    for fd in fds:
        try:
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return paths


def ray_session_dir() -> str | None:
    """The Ray session directory this process holds open (its local head's), if any."""
    for path in _open_paths("self"):
        found = re.match(r"(.*/session_\d{4}-\d\d-\d\d_[^/]+)", path)
        if found:
            return found.group(1)
    return None


def holders_of(directory: str) -> list[tuple[int, str]]:
    """Other processes with a file under ``directory`` open, as (pid, start time)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        if any(p.startswith(directory + "/") for p in _open_paths(pid)):
            stat = _stat(pid)
            if stat is not None:
                found.append((pid, stat[1]))
    return found
