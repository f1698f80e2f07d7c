"""Scheduler fixtures: a hand-moved clock, definitions stored without importing code, and
schedulers whose runs are fakes living in this process (no Ray, no subprocesses)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from hypermetric.catalog.db import Database
from hypermetric.catalog.records import EvaluationRecord, RunRecord
from hypermetric.config import Settings
from hypermetric.scheduler.clock import ManualClock
from hypermetric.scheduler.definitions import store_definition
from hypermetric.scheduler.options import SchedulerOptions
from hypermetric.scheduler.service import Scheduler
from tests.scheduler.fakes import Behaviour, FakeLauncher

T0 = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)

DEFAULTS: dict[str, Any] = {
    "import_path": "tests.scheduler.nowhere:runtime",
    "schedule": "*/2 * * * * *",
    "timezone": "UTC",
    "catchup": True,
    "max_active_runs": 1,
    "retries": 0,
    "retry_delay_s": 10.0,
    "retry_exponential": True,
    "timeout_s": None,
    "params": {"k": 1},
    "code_version": "c0",
}


@pytest.fixture
def clock() -> ManualClock:
    """A clock at 2026-11-02 09:00:00 UTC that moves only when told."""
    return ManualClock(T0)


@pytest.fixture
def define(db: Database, clock: ManualClock) -> Callable[..., EvaluationRecord]:
    """Store a definition (every 2 s, catchup, one active run by default) at the clock's now."""

    def _define(name: str = "every2", **fields: Any) -> EvaluationRecord:
        return store_definition(db, name, {**DEFAULTS, **fields}, clock=clock).evaluation

    return _define


Maker = Callable[..., tuple[Scheduler, FakeLauncher]]


@pytest.fixture
def make_scheduler(db: Database, settings: Settings, clock: ManualClock) -> Iterator[Maker]:
    """Build started schedulers on the fake launcher; all are stopped after the test."""
    made: list[Scheduler] = []

    def _make(
        behave: Callable[[RunRecord], Behaviour] = lambda run: Behaviour(), **options: Any
    ) -> tuple[Scheduler, FakeLauncher]:
        launcher = FakeLauncher(db, clock, behave)
        options.setdefault("stale_after", 30.0)
        service = Scheduler(
            settings, options=SchedulerOptions(**options), launcher=launcher, clock=clock, db=db
        )
        service.start()
        made.append(service)
        return service, launcher

    yield _make
    for service in made:
        service.stop()


def passes(service: Scheduler, clock: ManualClock, seconds: float, step: float = 0.5) -> None:
    """Move the clock by ``step`` and run a pass, for ``seconds``."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        service.run_pass()
