"""How a scheduler process behaves: its tick, limits and recovery thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from hypermetric.catalog.records import EvaluationRecord
from hypermetric.errors import SchedulerError

__all__ = ["MAX_RETRY_DELAY", "SchedulerOptions", "retry_delay"]

#: the longest wait between two attempts, however many failed
MAX_RETRY_DELAY = 24 * 3600.0


@dataclass(frozen=True)
class SchedulerOptions:
    """A scheduler's settings; the defaults suit a nightly schedule on one machine."""

    #: seconds between two passes (a pass also runs the moment an interval is due)
    tick_seconds: float = 1.0
    #: run processes this scheduler keeps alive at once
    parallelism: int = 4
    #: seconds without a heartbeat after which a run or a scheduler counts as lost
    #: (None: six run heartbeats, see ``heartbeat_seconds``)
    stale_after: float | None = None
    #: attempts a run may lose to crashes (process gone, no heartbeat) beyond its retries
    crash_resumes: int = 2
    #: how often a run process may exit before starting its run, then the run fails
    launch_attempts: int = 3
    #: definitions made due per pass, and runs created per definition per pass
    due_batch: int = 100
    catchup_batch: int = 100
    #: one pass, then exit (runs already launched go on)
    once: bool = False
    #: seconds between two background maintenance passes that compact finished runs' small
    #: shards (None or 0: never; ``hypermetric compact`` still works by hand)
    compact_every: float | None = 300.0
    #: rows of a packed file (shards under half of it are packed)
    compact_target_rows: int = 1_000_000
    #: files a maintenance pass registers in one dataset version
    compact_batch_files: int = 4
    #: seconds after which a maintenance pass begins no new batch
    compact_budget: float = 120.0

    def __post_init__(self) -> None:
        if self.tick_seconds <= 0:
            raise SchedulerError("the tick must be a positive number of seconds")
        if self.parallelism < 1:
            raise SchedulerError("parallelism must be at least 1")
        if self.stale_after is not None and self.stale_after <= 0:
            raise SchedulerError("stale_after must be a positive number of seconds")
        if self.crash_resumes < 0 or self.launch_attempts < 1:
            raise SchedulerError("crash_resumes must be ≥ 0 and launch_attempts ≥ 1")
        if self.compact_every is not None and self.compact_every < 0:
            raise SchedulerError("compact_every must be ≥ 0 seconds (0 turns compaction off)")
        if self.compact_target_rows < 2 or self.compact_batch_files < 1:
            raise SchedulerError("compact_target_rows must be ≥ 2 and compact_batch_files ≥ 1")
        if self.compact_budget <= 0:
            raise SchedulerError("compact_budget must be a positive number of seconds")

    @property
    def compacts(self) -> bool:
        """True when this scheduler compacts in the background."""
        return bool(self.compact_every)

    def stale_seconds(self, heartbeat_seconds: float) -> float:
        """The staleness threshold in seconds for this run heartbeat interval."""
        return self.stale_after if self.stale_after is not None else 6 * heartbeat_seconds


def retry_delay(ev: EvaluationRecord, attempt: int) -> float:
    """Seconds before retrying after failed attempt ``attempt`` (1-based).

    ``retry_delay`` doubling each attempt with exponential backoff (60 s, 120 s, 240 s...),
    else constant; never more than a day.
    """
    factor = 2 ** max(0, attempt - 1) if ev.retry_exponential else 1
    return min(MAX_RETRY_DELAY, ev.retry_delay_s * factor)
