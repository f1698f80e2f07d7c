"""Test doubles for the scheduler: launchers whose "processes" live in this process.

A fake run starts its run at launch (like ``runs resume`` does) and, when polled after its
duration on the injected clock, ends it the way it was told to: success, failed, dying
without ending it, hanging without heartbeats, or exiting before it ever started.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypermetric.catalog.db import Database, database
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import finish_run, get_run, start_run, update_run
from hypermetric.config import Settings
from hypermetric.scheduler.clock import Clock, SystemClock
from hypermetric.scheduler.launcher import Launcher, RunHandle

OUTCOMES = ("success", "failed", "die", "hang", "early")
_pids = itertools.count(4_000_000)


@dataclass(frozen=True)
class Behaviour:
    """How a fake run ends, and after how many seconds of the injected clock."""

    outcome: str = "success"
    seconds: float = 0.0


class FakeRun(RunHandle):
    """A launched run that lives in this process."""

    def __init__(self, db: Database, run: RunRecord, clock: Clock, behaviour: Behaviour) -> None:
        super().__init__(run.id, next(_pids))
        self.db, self.clock, self.behaviour = db, clock, behaviour
        self.started = clock.now()
        self.code: int | None = None
        if behaviour.outcome != "early":
            start_run(db, run.id, owner=f"fake:{self.pid}", pid=self.pid or 0, host="fake-host")
            now = clock.now()
            update_run(db, run.id, started_at=now, heartbeat_at=now)

    def _still_mine(self) -> bool:
        run = get_run(self.db, self.run_id)
        return run.state == "running" and run.pid == self.pid

    def poll(self) -> int | None:
        if self.code is not None:
            return self.code
        now = self.clock.now()
        outcome = self.behaviour.outcome
        if outcome == "early":
            self.code = 1
        elif now < self.started + timedelta(seconds=self.behaviour.seconds) or outcome == "hang":
            if outcome != "hang" and self._still_mine():
                update_run(self.db, self.run_id, heartbeat_at=now)
            return None
        elif outcome == "die":
            self.code = -9
        elif self._still_mine():
            finish_run(self.db, self.run_id, outcome, None if outcome == "success" else "boom")
            self.code = 0 if outcome == "success" else 1
        else:
            self.code = 1  # like the engine: it stops once its run is no longer running
        return self.code

    def kill(self) -> None:
        self.code = -9

    def last_words(self) -> str:
        return "DefinitionError: cannot import x:y" if self.behaviour.outcome == "early" else ""


class FakeLauncher(Launcher):
    """Launches fake runs; ``behave`` decides each one's fate. Records every launch."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        behave: Callable[[RunRecord], Behaviour] = lambda run: Behaviour(),
    ) -> None:
        self.db, self.clock, self.behave = db, clock, behave
        self.launches: list[tuple[int, datetime]] = []
        self.handles: list[FakeRun] = []

    def launch(self, run: RunRecord, ray_address: str | None) -> RunHandle:
        self.launches.append((run.id, self.clock.now()))
        handle = FakeRun(self.db, run, self.clock, self.behave(run))
        self.handles.append(handle)
        return handle


def instant(settings: Settings) -> Launcher:
    """``--launcher tests.scheduler.fakes:instant``: runs succeed 0.2 s after launch."""
    return FakeLauncher(database(settings), SystemClock(), lambda run: Behaviour("success", 0.2))


def steady(settings: Settings) -> Launcher:
    """``--launcher tests.scheduler.fakes:steady``: runs take 1.5 s, then succeed."""
    return FakeLauncher(database(settings), SystemClock(), lambda run: Behaviour("success", 1.5))


def slow(settings: Settings) -> Launcher:
    """``--launcher tests.scheduler.fakes:slow``: runs take 3 s (longer than a 2 s interval)."""
    return FakeLauncher(database(settings), SystemClock(), lambda run: Behaviour("success", 3.0))
