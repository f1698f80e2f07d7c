"""Launchers start the process that drives a run; the scheduler never waits on one.

The default, :class:`SubprocessLauncher`, runs ``python -m hypermetric runs resume RUN_ID``
in a session of its own (so it outlives a scheduler restart and its whole tree can be
killed), writing its output to ``<home>/logs/runs/run-<id>.log``. Another launcher (a
container, a remote host) implements :class:`Launcher` and is named with
``hypermetric scheduler --launcher MODULE:FACTORY``. :class:`~hypermetric.scheduler.rayjobs.
RayJobsLauncher` (``--launcher ray-jobs``) submits each run attempt to a Ray cluster as a job.

A kill is checked: :meth:`RunHandle.stopped` tells whether the process that drives the run
is gone, and the scheduler acts on a killed run only once it is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

import psutil

from hypermetric.catalog.records import RunRecord
from hypermetric.config import Settings
from hypermetric.scheduler.processes import (
    Killer,
    ProcessRef,
    alive,
    find_run_process,
    kill_tree,
    sigkill,
)

__all__ = ["LaunchDeferred", "Launcher", "RunHandle", "SubprocessLauncher", "launcher_for"]

log = logging.getLogger("hypermetric.scheduler")


class LaunchDeferred(Exception):
    """A launcher cannot launch now (its cluster does not answer): the run waits and is
    launched again later, rather than failed."""


class RunHandle(ABC):
    """A launched run process, or whatever stands for it."""

    def __init__(self, run_id: int, pid: int | None) -> None:
        self.run_id = run_id
        self.pid = pid

    @abstractmethod
    def poll(self) -> int | None:
        """Its exit status once it ended, else None (never blocks)."""

    @abstractmethod
    def kill(self) -> None:
        """Kill it and whatever it started; waits a moment at most."""

    def stopped(self) -> bool:
        """True once the process that drives the run is gone (asked after a kill).

        What it started may outlive it (the kill then says so in the log): those do not
        drive the run, so they do not hold it back.
        """
        return self.poll() is not None

    def last_words(self) -> str:
        """The last line it printed, for error messages (may be empty)."""
        return ""

    def drives(self, run: RunRecord) -> bool:
        """True if what it stands for is what drives ``run``'s current attempt."""
        return run.pid == self.pid

    @property
    def name(self) -> str:
        """What it stands for, in log lines and reasons (``process 123``)."""
        return f"process {self.pid}"


class Launcher(ABC):
    """Starts runs. ``needs_ray``: its processes want the scheduler's Ray address.
    ``remote``: they run elsewhere (a cluster), so a run of any host may be one of them."""

    needs_ray: bool = False
    remote: bool = False

    @abstractmethod
    def launch(self, run: RunRecord, ray_address: str | None) -> RunHandle:
        """Start the process that drives ``run`` (queued, claimed) and return at once."""

    def adopt(
        self,
        run_id: int,
        pid: int | None,
        *,
        created_before: datetime | None = None,
        evaluation: str = "",
        attempt: int = 0,
    ) -> RunHandle | None:
        """A handle on what drives attempt ``attempt`` of ``run_id`` (of ``evaluation``),
        launched by an earlier scheduler (or another one); None if there is none.

        The default finds the live process ``pid`` of this host if its command line is
        ``... resume RUN_ID`` and it was created by ``created_before`` (the attempt's start),
        so a reused pid never counts. A remote launcher may return a handle on something
        that already ended (its :meth:`RunHandle.poll` says so).
        """
        ref = find_run_process(pid, run_id, created_before=created_before)
        return None if ref is None else _ProcessHandle(run_id, ref, killer=self.killer)

    def logs(self, run: RunRecord) -> list[tuple[str, str]]:
        """``(where, text)`` of each log ``run``'s launches left, oldest first."""
        return []

    @property
    def killer(self) -> Killer:
        """How this launcher's processes are killed (a test may inject one that fails)."""
        return sigkill

    def close(self) -> None:
        """Release what the launcher holds (launched processes go on)."""
        return None


class _ProcessHandle(RunHandle):
    """A process tree on this host: one this scheduler started (``process``) or adopted."""

    def __init__(
        self,
        run_id: int,
        ref: ProcessRef,
        *,
        killer: Killer,
        process: subprocess.Popen[bytes] | None = None,
        log: Path | None = None,
    ) -> None:
        super().__init__(run_id, ref.pid)
        self.ref, self.killer, self.process, self.log = ref, killer, process, log
        #: the members of its tree the last kill left alive
        self.left: list[psutil.Process] = []

    def poll(self) -> int | None:
        if self.process is not None:
            return self.process.poll()
        # not our child: its exit status is not ours to read, only that it ended
        root = self.ref.process()
        return None if root is not None and alive(root) else -1

    def kill(self) -> None:
        left = kill_tree(self.ref, also=self.left, killer=self.killer)
        if left and {p.pid for p in left} != {p.pid for p in self.left}:
            pids = ", ".join(str(p.pid) for p in left)
            log.error("run %d: processes %s outlived a kill", self.run_id, pids)
        self.left = left

    def stopped(self) -> bool:
        root = self.ref.process()
        return root is None or not alive(root)

    def last_words(self) -> str:
        if self.log is None:
            return ""
        try:
            with self.log.open("rb") as fh:
                fh.seek(max(0, self.log.stat().st_size - 4096))
                lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
        except OSError:
            return ""
        return next((ln for ln in reversed(lines) if ln), "")


class SubprocessLauncher(Launcher):
    """Runs each run as its own process in its own session.

    ``command`` replaces the default ``python -m hypermetric runs resume {run_id}``; its
    items may contain ``{run_id}`` and ``{ray_address}``. A scheduler restarted on this host
    recognises a process it did not start by the words ``resume`` and the run id in its
    command line, so a custom command should keep them. ``killer`` sends SIGKILL to one
    process (tests inject one that fails).
    """

    def __init__(
        self,
        settings: Settings,
        command: Sequence[str] | None = None,
        *,
        killer: Killer = sigkill,
    ) -> None:
        self.settings = settings
        self.command = list(command) if command else None
        self.needs_ray = command is None
        self.log_dir = settings.home / "logs" / "runs"
        self._killer = killer

    @property
    def killer(self) -> Killer:
        """How this launcher's processes are killed."""
        return self._killer

    def _argv(self, run_id: int, ray_address: str | None) -> list[str]:
        if self.command is not None:
            values = {"run_id": str(run_id), "ray_address": ray_address or ""}
            return [part.format(**values) for part in self.command]
        argv = [sys.executable, "-m", "hypermetric", "runs", "resume", str(run_id)]
        argv.append("--no-progress")
        return [*argv, "--ray-address", ray_address] if ray_address else argv

    def _env(self, ray_address: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HYPERMETRIC_HOME=str(self.settings.home),
            HYPERMETRIC_DB_URL=self.settings.db_url,
            HYPERMETRIC_STORAGE=self.settings.storage,
        )
        if ray_address:
            env["RAY_ADDRESS"] = ray_address
        # the run imports the definition the way `evals register` did: from this directory
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), path) if p)
        return env

    def logs(self, run: RunRecord) -> list[tuple[str, str]]:
        """The log file of ``run``'s processes (every launch appends to it), if any."""
        log = self.log_dir / f"run-{run.id}.log"
        try:
            return [(str(log), log.read_text(errors="replace"))]
        except OSError:
            return []

    def launch(self, run: RunRecord, ray_address: str | None) -> RunHandle:
        """Start ``runs resume`` for ``run``; its output goes to its log file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"run-{run.id}.log"
        out: IO[bytes]
        with log.open("ab") as out:
            process = subprocess.Popen(
                self._argv(run.id, ray_address),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._env(ray_address),
            )
        # the child is ours until reaped, so its pid cannot name another process meanwhile;
        # one already gone has nothing left to kill (its ref then matches no process)
        ref = ProcessRef.of(process.pid) or ProcessRef(process.pid, -1.0)
        return _ProcessHandle(run.id, ref, killer=self.killer, process=process, log=log)


def launcher_for(settings: Settings, *, check: bool = True) -> Launcher:
    """The launcher ``settings.launcher`` names: ``local`` or ``ray-jobs`` (``check``: refuse
    what a cluster could not use; off to read logs only)."""
    if settings.launcher == "ray-jobs":
        from hypermetric.scheduler.rayjobs import RayJobsLauncher

        return RayJobsLauncher(settings, check=check)
    return SubprocessLauncher(settings)
