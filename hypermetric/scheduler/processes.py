"""Processes on this host, read through psutil: the same on Linux and macOS.

A process is known by its pid *and* its creation time (:class:`ProcessRef`), so a pid the
system gave to a newer process is never killed, and never taken for a run's process. A
kill is checked, not assumed: :func:`kill_tree` returns the processes that outlived it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import psutil

from hypermetric.liveness import CLOCK_SLACK, MISSING, pid_alive

__all__ = [
    "CLOCK_SLACK",
    "Killer",
    "ProcessRef",
    "alive",
    "descendants",
    "find_run_process",
    "holders_of",
    "kill_survivors",
    "kill_tree",
    "pid_alive",
    "ray_session_dir",
    "sigkill",
]

log = logging.getLogger("hypermetric.scheduler")

#: how often a kill's result is looked at while waiting for it
_POLL = 0.05


@dataclass(frozen=True)
class ProcessRef:
    """One process: a pid and the creation time that tells it from a later holder of it."""

    pid: int
    created: float

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The process holding ``pid`` now, or None if there is none."""
        if pid <= 0:
            return None
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except (*MISSING, psutil.AccessDenied):
            return None

    def process(self) -> psutil.Process | None:
        """This process as psutil sees it, or None once its pid is free or reused."""
        try:
            proc = psutil.Process(self.pid)
            return proc if proc.create_time() == self.created else None
        except (*MISSING, psutil.AccessDenied):
            return None


#: sends SIGKILL to one process; raises psutil.Error when it cannot (tests inject failures)
Killer = Callable[[psutil.Process], None]


def sigkill(proc: psutil.Process) -> None:
    """SIGKILL ``proc`` (psutil refuses if its pid now names another process)."""
    proc.kill()


def alive(proc: psutil.Process) -> bool:
    """True while ``proc`` runs: not exited, not a zombie, its pid not reused."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except MISSING:
        return False
    except psutil.AccessDenied:
        return True


def find_run_process(
    pid: int | None, run_id: int, *, created_before: datetime | None = None
) -> ProcessRef | None:
    """The live process ``pid`` if it drives ``run_id``, else None.

    It must have ``resume`` and the run id among its command-line words (``hypermetric runs
    resume RUN_ID``) and, when ``created_before`` is given (the attempt's start), have been
    created by then: a pid reused since by a newer process is not the run's.
    """
    if pid is None or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        words = proc.cmdline()
        created = proc.create_time()
    except (*MISSING, psutil.AccessDenied):
        return None  # gone, or another user's: not a process this scheduler launched
    if "resume" not in words or str(run_id) not in words:
        return None
    if created_before is not None and created > created_before.timestamp() + CLOCK_SLACK:
        return None
    return ProcessRef(pid, created)


def _group(leader: psutil.Process) -> list[psutil.Process]:
    """The other members of the process group ``leader`` leads (none if it leads none)."""
    try:
        if os.getpgid(leader.pid) != leader.pid:
            return []
    except OSError:
        return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError):  # gone meanwhile: no member
            if proc.pid != leader.pid and os.getpgid(proc.pid) == leader.pid:
                members.append(proc)
    return members


def _tree(root: psutil.Process) -> list[psutil.Process]:
    """``root``, every process below it, and the rest of its process group."""
    found = {root.pid: root}
    with contextlib.suppress(*MISSING):
        found.update((p.pid, p) for p in root.children(recursive=True))
    found.update((p.pid, p) for p in _group(root) if p.pid not in found)
    return list(found.values())


def _wait_gone(procs: Iterable[psutil.Process], grace: float) -> list[psutil.Process]:
    """Wait up to ``grace`` seconds for ``procs`` to end; those still alive then."""
    deadline = time.monotonic() + grace
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(_POLL)
        left = [p for p in left if alive(p)]
    return left


def _send(killer: Killer, procs: Iterable[psutil.Process]) -> None:
    for proc in procs:
        try:
            killer(proc)
        except MISSING:
            continue
        except psutil.Error as exc:  # it stays among the survivors the caller is given
            log.warning("could not kill process %d: %s", proc.pid, exc)


def kill_tree(
    root: ProcessRef,
    *,
    also: Iterable[psutil.Process] = (),
    killer: Killer = sigkill,
    grace: float = 1.0,
) -> list[psutil.Process]:
    """SIGKILL ``root``, every process below it and the rest of its process group.

    ``also``: processes an earlier kill of this tree left alive (they may have left it).
    Returns the members still alive ``grace`` seconds later: an empty list means the whole
    tree is gone (or was already). Members that escaped the group (a new session) are found
    as descendants: the tree is read before the kill, while they still have their parent.
    """
    leader = root.process()
    members = {p.pid: p for p in also if alive(p)}
    if leader is not None:
        members.update((p.pid, p) for p in _tree(leader))
    _send(killer, members.values())
    if leader is not None:
        # a member that forked while being killed left its child in the group
        late = [p for p in _group(leader) if p.pid not in members]
        _send(killer, late)
        members.update((p.pid, p) for p in late)
    return _wait_gone(members.values(), grace)


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` (none if it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except MISSING:
        return []


def kill_survivors(processes: list[psutil.Process], grace: float) -> int:
    """SIGKILL those of ``processes`` still alive after ``grace`` seconds; how many were."""
    left = _wait_gone(processes, grace)
    _send(sigkill, left)
    return len(left)


_SESSION = re.compile(r"(.*/session_\d{4}-\d\d-\d\d_[^/]+)/")


def _open_paths(proc: psutil.Process) -> list[str]:
    try:
        return [f.path for f in proc.open_files()]
    except (*MISSING, psutil.AccessDenied):
        return []


def ray_session_dir() -> str | None:
    """The Ray session directory this process holds a file open in (its local head's)."""
    for path in _open_paths(psutil.Process()):
        found = _SESSION.match(path)
        if found:
            return found.group(1)
    return None


def holders_of(directory: str) -> list[psutil.Process]:
    """Other processes with a file under ``directory`` open."""
    prefix = directory.rstrip("/") + "/"
    return [
        proc
        for proc in psutil.process_iter()
        if proc.pid != os.getpid() and any(p.startswith(prefix) for p in _open_paths(proc))
    ]
