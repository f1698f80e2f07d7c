"""Launchers start the process that drives a run; the scheduler never waits on one.

The default, :class:`SubprocessLauncher`, runs ``python -m hypermetric runs resume RUN_ID``
in a session of its own (so it outlives a scheduler restart and its whole process group
can be killed), writing its output to ``<home>/logs/runs/run-<id>.log``. Another launcher
(a container, a remote host) implements :class:`Launcher` and is named with
``hypermetric scheduler --launcher MODULE:FACTORY``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from hypermetric.catalog.records import RunRecord
from hypermetric.config import Settings
from hypermetric.scheduler.processes import kill_group

__all__ = ["Launcher", "RunHandle", "SubprocessLauncher"]


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
        """Kill it and whatever it started, without waiting."""

    def last_words(self) -> str:
        """The last line it printed, for error messages (may be empty)."""
        return ""


class Launcher(ABC):
    """Starts runs. ``needs_ray``: its processes want the scheduler's Ray address."""

    needs_ray: bool = False

    @abstractmethod
    def launch(self, run: RunRecord, ray_address: str | None) -> RunHandle:
        """Start the process that drives ``run`` (queued, claimed) and return at once."""

    def close(self) -> None:
        """Release what the launcher holds (launched processes go on)."""
        return None


class _ProcessHandle(RunHandle):
    def __init__(self, run_id: int, process: subprocess.Popen[bytes], log: Path) -> None:
        super().__init__(run_id, process.pid)
        self.process = process
        self.log = log

    def poll(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        kill_group(self.process.pid)

    def last_words(self) -> str:
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
    items may contain ``{run_id}`` and ``{ray_address}``.
    """

    def __init__(self, settings: Settings, command: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.command = list(command) if command else None
        self.needs_ray = command is None
        self.log_dir = settings.home / "logs" / "runs"

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
        return _ProcessHandle(run.id, process, log)
