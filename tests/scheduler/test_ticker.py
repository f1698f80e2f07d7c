"""The ticker stops cleanly whatever its pass is doing when the stop comes."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from hypermetric.scheduler.ticker import Ticker


class _SlowPlanner:
    """A service whose pass is quick but whose re-planning of due times is slow."""

    def __init__(self) -> None:
        self.options = SimpleNamespace(tick_seconds=0.05, compact_every=None)
        self.planning = threading.Event()

    def run_pass(self) -> None:
        pass

    def next_due(self, horizon: float) -> list[datetime]:
        self.planning.set()
        time.sleep(0.6)  # the stop arrives now, while the pass is between APScheduler calls
        return [datetime.now(UTC) + timedelta(seconds=5)]


def test_a_stop_in_the_middle_of_a_pass_ends_the_ticker() -> None:
    stop = threading.Event()
    service: Any = _SlowPlanner()
    ticker = Ticker(service, stop)
    thread = threading.Thread(target=ticker.run, daemon=True)
    thread.start()
    assert service.planning.wait(10)
    stop.set()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the ticker did not stop: its pass and shutdown deadlocked"
