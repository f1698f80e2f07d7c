"""Scheduler instances: one row per scheduler process, kept alive by its heartbeat.

States: ``running`` (heartbeating), ``stopped`` (exited cleanly) or ``dead`` (its heartbeat
went stale, or its process is gone), then ``adopted`` once a live scheduler took over what
it left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import SchedulerInstance
from hypermetric.errors import SchedulerError

__all__ = [
    "InstanceRecord",
    "adopt_instances",
    "heartbeat_instance",
    "list_instances",
    "prune_instances",
    "reap_instances",
    "register_instance",
    "stop_instance",
]


@dataclass(frozen=True)
class InstanceRecord:
    """A scheduler process as the DB knows it."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    state: str


def _record(row: SchedulerInstance) -> InstanceRecord:
    return InstanceRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        state=row.state,
    )


def register_instance(
    db: Database,
    *,
    instance_id: str,
    host: str,
    pid: int,
    now: datetime,
    seen_before: datetime,
    is_gone: Callable[[InstanceRecord], bool],
) -> list[InstanceRecord]:
    """Record a starting scheduler; returns the running ones it found dead.

    A running instance is dead when its heartbeat is older than ``seen_before`` or
    ``is_gone`` says its process no longer exists. On a backend that allows one scheduler
    (SQLite), a live one makes this raise SchedulerError and nothing is written.
    """
    with db.session() as session:
        running = session.scalars(
            db.dialect.for_update(
                select(SchedulerInstance).where(SchedulerInstance.state == "running")
            )
        ).all()
        dead, alive = [], []
        for row in running:
            if row.heartbeat_at < seen_before or is_gone(_record(row)):
                row.state = "dead"
                dead.append(_record(row))
            else:
                alive.append(row)
        if alive and not db.dialect.allows_many_schedulers:
            other = alive[0]
            raise SchedulerError(
                f"another scheduler (pid {other.pid} on {other.host}) is running against this "
                f"{db.dialect.name} DB, which allows one scheduler; stop it first, or use "
                "PostgreSQL to run several"
            )
        session.add(
            SchedulerInstance(
                id=instance_id,
                host=host,
                pid=pid,
                started_at=now,
                heartbeat_at=now,
                state="running",
            )
        )
        return dead


def heartbeat_instance(db: Database, instance_id: str, now: datetime) -> None:
    """Refresh this scheduler's heartbeat.

    Raises SchedulerError if another scheduler declared it dead meanwhile and the backend
    allows only one scheduler (a successor may be running); with several allowed, the
    instance simply comes back to life.
    """
    with db.session() as session:
        row = session.get(SchedulerInstance, instance_id)
        if row is None or row.state != "running":
            if not db.dialect.allows_many_schedulers:
                raise SchedulerError(
                    f"this scheduler ({instance_id}) was declared dead after missing heartbeats; "
                    "it stops so that only one scheduler runs on this DB"
                )
            if row is None:
                raise SchedulerError(f"scheduler instance {instance_id} vanished from the DB")
            row.state = "running"
        row.heartbeat_at = now


def stop_instance(db: Database, instance_id: str, now: datetime) -> None:
    """Mark this scheduler stopped (a clean exit)."""
    with db.session() as session:
        session.execute(
            update(SchedulerInstance)
            .where(SchedulerInstance.id == instance_id, SchedulerInstance.state == "running")
            .values(state="stopped", heartbeat_at=now)
        )


def reap_instances(db: Database, seen_before: datetime) -> list[InstanceRecord]:
    """Declare dead the running schedulers whose heartbeat is older than ``seen_before``."""
    stmt = select(SchedulerInstance).where(
        SchedulerInstance.state == "running", SchedulerInstance.heartbeat_at < seen_before
    )
    with db.session() as session:
        rows = session.scalars(db.dialect.for_update(stmt, skip_locked=True)).all()
        for row in rows:
            row.state = "dead"
        return [_record(r) for r in rows]


def adopt_instances(db: Database) -> list[InstanceRecord]:
    """Take over every stopped or dead scheduler not adopted yet (each is adopted once)."""
    stmt = select(SchedulerInstance).where(SchedulerInstance.state.in_(("stopped", "dead")))
    with db.session() as session:
        rows = session.scalars(db.dialect.for_update(stmt, skip_locked=True)).all()
        found = [_record(r) for r in rows]
        for row in rows:
            row.state = "adopted"
        return found


def list_instances(db: Database, *, state: str | None = None) -> list[InstanceRecord]:
    """Scheduler instances, newest first, optionally in one state."""
    stmt = select(SchedulerInstance).order_by(SchedulerInstance.started_at.desc())
    if state is not None:
        stmt = stmt.where(SchedulerInstance.state == state)
    with db.session() as session:
        return [_record(r) for r in session.scalars(stmt)]


def prune_instances(db: Database, before: datetime) -> int:
    """Delete adopted instances last seen before ``before``; returns how many."""
    with db.session() as session:
        result = session.execute(
            delete(SchedulerInstance).where(
                SchedulerInstance.state == "adopted", SchedulerInstance.heartbeat_at < before
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
