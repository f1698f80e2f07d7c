"""Run attempts: starting one, and fencing every write it makes.

A run's ``attempt`` counts its attempts and never goes back. Each attempt that drives a run
carries its number as a **fencing token**: its heartbeats, progress, unit commits and its
end are written only while the run is still ``running`` at that attempt. Once a newer
attempt took over (``runs resume --force``, a scheduler resuming a run it found lost), or the
run was queued again, canceled, failed by a timeout or reprocessed, the DB refuses the old
attempt's writes: :class:`~hypermetric.errors.SupersededError` (taken over or queued again)
or :class:`RunNotRunning` (ended), and its process stops. A superseded attempt therefore
never registers a shard, so nothing it wrote after it was superseded is ever read.

Each attempt also has a row in ``run_attempts``: how it began (start, resume, retry,
takeover), where it ran, and how and why it ended.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Run, RunAttempt
from hypermetric.catalog.records import AttemptRecord, RunRecord
from hypermetric.catalog.runs import check_startable, close_attempt, get_run
from hypermetric.catalog.types import utcnow
from hypermetric.errors import ConflictError, NotFoundError, SupersededError
from hypermetric.masking import masked

__all__ = [
    "RunNotRunning",
    "fence",
    "finish_attempt",
    "heartbeat",
    "list_attempts",
    "queue_retry",
    "update_attempt",
]


class RunNotRunning(ConflictError):
    """The run ended (canceled, failed or done) while an attempt was writing to it."""

    def __init__(self, run_id: int, state: str) -> None:
        self.state = state
        super().__init__(f"run {run_id} is {state}; its shards are not registered")


def fence(row: Run | None, run_id: int, attempt: int) -> Run:
    """The run row if ``attempt`` may still write to it; else the error that stops it."""
    if row is None:
        raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
    if row.attempt != attempt:
        raise SupersededError(
            f"run {run_id}: attempt {attempt} was superseded by attempt {row.attempt} "
            f"({row.state}); this process stops without writing more",
            run_id,
        )
    if row.state == "queued":
        raise SupersededError(
            f"run {run_id}: attempt {attempt} was superseded: the run was queued again (found "
            "lost by a scheduler, or reprocessed); this process stops without writing more",
            run_id,
        )
    if row.state != "running":
        raise RunNotRunning(run_id, row.state)
    return row


def _locked(db: Database, session: Session, run_id: int) -> Run | None:
    return session.scalar(db.dialect.for_update(select(Run).where(Run.id == run_id)))


def _fenced_update(db: Database, run_id: int, attempt: int, values: dict[str, Any]) -> None:
    with db.session() as session:
        done = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.attempt == attempt, Run.state == "running")
            .values(**values)
        )
        if done.rowcount == 0:  # type: ignore[attr-defined]
            fence(session.get(Run, run_id), run_id, attempt)


def heartbeat(db: Database, run_id: int, attempt: int, **fields: Any) -> None:
    """Refresh the heartbeat of ``attempt`` (and progress fields); raises if it was fenced."""
    _fenced_update(db, run_id, attempt, {"heartbeat_at": utcnow(), **fields})


def update_attempt(db: Database, run_id: int, attempt: int, **fields: Any) -> None:
    """Set columns of a run on behalf of ``attempt``; raises if it was fenced."""
    _fenced_update(db, run_id, attempt, fields)


def finish_attempt(
    db: Database, run_id: int, attempt: int, state: str, error: str | None = None
) -> None:
    """End ``attempt`` and its run in ``state`` (success, failed or canceled), if the
    attempt may still write; raises SupersededError or RunNotRunning otherwise."""
    if state not in ("success", "failed", "canceled"):
        raise ValueError(f"a run ends success, failed or canceled, not {state!r}")
    now = utcnow()
    with db.session() as session:
        row = fence(_locked(db, session, run_id), run_id, attempt)
        row.state, row.error, row.ended_at = state, masked(error) if error else error, now
        close_attempt(session, run_id, attempt, state, now, error)


def queue_retry(db: Database, run_id: int) -> RunRecord:
    """Queue a failed or canceled run for a retry that drives its failed work again; a
    scheduler launches it. The retry budget counts from this retry."""
    with db.session() as session:
        row = _locked(db, session, run_id)
        if row is None:
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
        check_startable(run_id, row.state, row.error, "retry")
        row.attempt_base, row.redo_from = row.attempt, row.attempt + 1
        row.state, row.error = "queued", None
        row.owner = row.host = None
        row.pid = None
        row.started_at = row.ended_at = row.heartbeat_at = row.next_attempt_at = None
        session.flush()
        return get_run(db, run_id, session)


def list_attempts(db: Database, run_id: int) -> list[AttemptRecord]:
    """The attempts of a run, first first."""
    stmt = select(RunAttempt).where(RunAttempt.run_id == run_id).order_by(RunAttempt.attempt)
    with db.session() as session:
        return [
            AttemptRecord(
                run_id=a.run_id,
                attempt=a.attempt,
                kind=a.kind,
                state=a.state,
                reason=a.reason,
                owner=a.owner,
                host=a.host,
                pid=a.pid,
                started_at=a.started_at,
                ended_at=a.ended_at,
            )
            for a in session.scalars(stmt)
        ]
