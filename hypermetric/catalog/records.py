"""Frozen records: what the catalog hands to the rest of Hypermetric (never ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "RUN_STATES",
    "RUN_TYPES",
    "AttemptRecord",
    "EvaluationRecord",
    "FailedExample",
    "RunRecord",
    "ShardFile",
    "ShardRecord",
    "UnitSummary",
    "VersionRecord",
]

RUN_STATES = ("queued", "running", "success", "failed", "canceled")
RUN_TYPES = ("scheduled", "manual", "backfill", "import")
FINISHED_STATES = ("success", "failed", "canceled")


@dataclass(frozen=True)
class EvaluationRecord:
    """An evaluation's stored definition."""

    id: int
    name: str
    import_path: str | None
    schedule: str | None
    timezone: str
    catchup: bool
    start_date: datetime | None
    end_date: datetime | None
    max_active_runs: int
    retries: int
    retry_delay_s: float
    retry_exponential: bool
    timeout_s: float | None
    max_error_rate: float
    params: dict[str, Any]
    paused: bool
    version_label: str | None
    code_version: str | None
    next_logical_date: datetime | None
    next_due_at: datetime | None
    description: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A run's row, with its evaluation's name."""

    id: int
    evaluation_id: int
    evaluation: str
    run_key: str
    logical_date: datetime
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    run_type: str
    state: str
    version_label: str | None
    code_version: str | None
    versions: dict[str, Any] | None
    params: dict[str, Any]
    attempt: int
    attempt_base: int
    redo_from: int | None
    queued_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    heartbeat_at: datetime | None
    next_attempt_at: datetime | None
    owner: str | None
    pid: int | None
    host: str | None
    error: str | None
    dataset: str | None
    unit_size: int | None
    examples_total: int | None
    units_total: int | None
    rows_count: int
    calls_count: int
    errors_count: int
    examples_done: int
    shard_count: int
    source_run_id: int | None = None
    import_key: str | None = None

    @property
    def finished(self) -> bool:
        """True once the run is success, failed or canceled."""
        return self.state in FINISHED_STATES


@dataclass(frozen=True)
class ShardFile:
    """A shard written to its final path and waiting to be registered."""

    dataset: str
    path: str
    rows: int
    bytes: int
    schema_fingerprint: str
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FailedExample:
    """An example of a unit that had an error (a component call or an eval raised), with
    the rows it wrote: what a retry drives again and retracts."""

    position: int  # in its unit
    example_id: str
    rows: int
    calls: int
    errors: int


@dataclass(frozen=True)
class UnitSummary:
    """What one work unit holds: all of it, or, when a retry drove its failed examples
    again, those examples only (``examples`` of them)."""

    unit_id: int
    examples: int
    rows: int
    calls: int
    errors: int
    failed_examples: int = 0
    failed: tuple[FailedExample, ...] = ()


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a run: how it began (start, resume, retry, takeover), where it ran,
    and how and why it ended (None while it runs)."""

    run_id: int
    attempt: int
    kind: str
    state: str
    reason: str | None
    owner: str | None
    host: str | None
    pid: int | None
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class ShardRecord:
    """A registered shard."""

    id: int
    run_id: int | None
    dataset: str
    path: str
    rows: int
    bytes: int
    schema_fingerprint: str
    added_version_id: int
    removed_version_id: int | None
    stats: dict[str, Any] | None


@dataclass(frozen=True)
class VersionRecord:
    """A dataset version (snapshot)."""

    id: int
    dataset: str
    kind: str
    run_id: int | None
    created_at: datetime
    message: str | None
    expired: bool
