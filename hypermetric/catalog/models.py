"""The metadata DB schema (SQLAlchemy 2 typed ORM). One model set for every dialect.

ORM objects stay inside ``hypermetric.catalog``; the rest of the package sees the frozen
records of :mod:`hypermetric.catalog.records`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hypermetric.catalog.types import BigCount, JSONType, UTCDateTime, utcnow

__all__ = [
    "Base",
    "DatasetVersion",
    "Evaluation",
    "MaintenanceLease",
    "Retraction",
    "Run",
    "RunAttempt",
    "SchedulerInstance",
    "Shard",
    "ShardRun",
    "UnitCommit",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Evaluation(Base):
    """A runtime's definition: where its code lives, its schedule and its limits."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    import_path: Mapped[str | None] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    schedule: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    catchup: Mapped[bool] = mapped_column(Boolean, default=False)
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_active_runs: Mapped[int] = mapped_column(Integer, default=1)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    retry_delay_s: Mapped[float] = mapped_column(Float, default=60.0)
    retry_exponential: Mapped[bool] = mapped_column(Boolean, default=True)
    timeout_s: Mapped[float | None] = mapped_column(Float)
    max_error_rate: Mapped[float] = mapped_column(Float, default=0.1)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    version_label: Mapped[str | None] = mapped_column(String(200))
    code_version: Mapped[str | None] = mapped_column(String(64))
    #: the logical date of the next interval to create, and when it becomes due
    next_logical_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (Index(None, "paused", "next_due_at"),)


class Run(Base):
    """One run of an evaluation: for one logical date, or manual, or a backfill."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    run_key: Mapped[str] = mapped_column(String(250))
    logical_date: Mapped[datetime] = mapped_column(UTCDateTime)
    data_interval_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    data_interval_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_type: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    version_label: Mapped[str | None] = mapped_column(String(200))
    code_version: Mapped[str | None] = mapped_column(String(64))
    versions: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: the number of the latest attempt, never reset: every write an attempt makes carries
    #: it, and the DB refuses writes of any other attempt (fencing)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: attempts made before the current round (a new run, a retry by hand or a reprocess
    #: starts a round): the retry budget counts ``attempt - attempt_base``
    attempt_base: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: set by a retry: units committed by an attempt before this one drive their failed
    #: examples again (None: committed units are done)
    redo_from: Mapped[int | None] = mapped_column(Integer)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owner: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    #: what the run reads and how it is cut into units: a resumed attempt must cut the same
    dataset: Mapped[str | None] = mapped_column(String(1000))
    unit_size: Mapped[int | None] = mapped_column(Integer)
    examples_total: Mapped[int | None] = mapped_column(BigCount)
    units_total: Mapped[int | None] = mapped_column(Integer)
    rows_count: Mapped[int] = mapped_column(BigCount, default=0)
    calls_count: Mapped[int] = mapped_column(BigCount, default=0)
    errors_count: Mapped[int] = mapped_column(BigCount, default=0)
    examples_done: Mapped[int] = mapped_column(BigCount, default=0)
    shard_count: Mapped[int] = mapped_column(Integer, default=0)
    #: a rescore: the run whose stored calls this one scored again (no foreign key, so a
    #: pruned source leaves its rescores as they are)
    source_run_id: Mapped[int | None] = mapped_column(Integer)
    #: an imported run: the key of the log it came from (see :mod:`hypermetric.importing`),
    #: unique so that a log is imported once however many processes import it
    import_key: Mapped[str | None] = mapped_column(String(250), unique=True)

    __table_args__ = (
        UniqueConstraint("evaluation_id", "logical_date"),
        UniqueConstraint("evaluation_id", "run_key"),
        Index(None, "state", "evaluation_id"),
        Index(None, "evaluation_id", "state", "run_type"),
        # a scheduler taking over a dead one sweeps runs that failed since: bounded by this
        Index(None, "state", "ended_at"),
    )


class DatasetVersion(Base):
    """A snapshot: each commit that adds or removes shards of a dataset makes one."""

    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message: Mapped[str | None] = mapped_column(Text)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)


class Shard(Base):
    """An immutable Parquet file of one dataset, live between two versions.

    ``run_id`` is the run whose rows the file holds; NULL for a file compaction packed
    with the rows of several finished runs, which lists them in ``shard_runs``.
    """

    __tablename__ = "shards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    dataset: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(1000), unique=True)
    rows: Mapped[int] = mapped_column(BigCount)
    bytes: Mapped[int] = mapped_column(BigCount)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    schema_fingerprint: Mapped[str] = mapped_column(String(64))
    added_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    removed_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(None, "dataset", "removed_version_id", "added_version_id"),
        Index(None, "run_id"),
    )


class ShardRun(Base):
    """A run with rows in a shard that mixes runs, and how many (what reading, reprocessing
    or pruning that run must know about the file)."""

    __tablename__ = "shard_runs"

    shard_id: Mapped[int] = mapped_column(
        ForeignKey("shards.id", ondelete="CASCADE"), primary_key=True
    )
    #: the run id written in the rows (no foreign key: a pruned run's rows stay in a packed
    #: file, retracted, as long as the file is live)
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rows: Mapped[int] = mapped_column(BigCount)

    __table_args__ = (Index(None, "run_id"),)


class UnitCommit(Base):
    """The unit ledger: which shards hold a run's work unit. A unit commits at most once per
    attempt: once when first driven, and once more by each retry that drives its failed
    examples again (the row then holds the unit's totals after the retry)."""

    __tablename__ = "unit_commits"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    unit_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scores_shard_id: Mapped[int | None] = mapped_column(
        ForeignKey("shards.id", ondelete="SET NULL")
    )
    calls_shard_id: Mapped[int | None] = mapped_column(ForeignKey("shards.id", ondelete="SET NULL"))
    examples: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    calls: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    failed_examples: Mapped[int] = mapped_column(Integer, default=0)
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the attempt that last committed rows of this unit
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: the unit's failed examples: ``[position, example id, score rows, call rows, error rows]``
    #: each, what a retry drives again and retracts (None: none failed)
    failed: Mapped[list[Any] | None] = mapped_column(JSONType)


class Retraction(Base):
    """A row-level delete: the rows of one example of a run written by attempts before
    ``attempt`` leave ``dataset`` from version ``added_version_id`` on (a retry drove the
    example again). ``example_id`` NULL retracts every example of the run: a reprocess or
    a prune of a run whose rows compaction packed into files shared with other runs. Live
    between two versions, like a shard, so that reading an older version still shows the
    retracted rows."""

    __tablename__ = "retractions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(32))
    #: the run id written in the rows (no foreign key: a pruned run's retractions stay as
    #: long as a readable version shows its rows)
    run_id: Mapped[int] = mapped_column(Integer)
    example_id: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    added_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    removed_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))

    __table_args__ = (
        Index(None, "dataset", "removed_version_id", "added_version_id"),
        Index(None, "run_id"),
    )


class RunAttempt(Base):
    """One attempt of a run: how it began, where it ran, and how and why it ended."""

    __tablename__ = "run_attempts"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: start, resume, retry or takeover
    kind: Mapped[str] = mapped_column(String(16))
    #: running, success, failed, canceled, lost or superseded
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SchedulerInstance(Base):
    """A running (or once running) scheduler process, kept alive by its heartbeat."""

    __tablename__ = "scheduler_instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="running")

    __table_args__ = (Index(None, "state", "heartbeat_at"),)


class MaintenanceLease(Base):
    """Who does a piece of background maintenance (compaction) until when: several
    schedulers on one DB take turns, and a lease left by a dead one expires."""

    __tablename__ = "maintenance_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
