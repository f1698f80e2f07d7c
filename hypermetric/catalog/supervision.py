"""Supervision's transactions: recover lost runs, time them out, retry failed ones.

Each locks the one run it decides on (``SKIP LOCKED``: a run another scheduler is deciding
on is left to it) and re-checks the condition under the lock, so two schedulers watching
the same runs never act twice. The queries read the claimed and running runs only, or
one run by primary key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import to_record
from hypermetric.catalog.models import Evaluation, Run
from hypermetric.catalog.records import EvaluationRecord, RunRecord
from hypermetric.catalog.runs import close_attempt, run_record
from hypermetric.catalog.scheduling import active_condition, lock_run

__all__ = [
    "ActiveRun",
    "Backoff",
    "active_runs",
    "fail_timed_out",
    "failed_since",
    "recover_lost",
    "requeue_for_retry",
    "run_states",
]

#: seconds to wait before retrying after failed attempt number ``attempt``
Backoff = Callable[[EvaluationRecord, int], float]


@dataclass(frozen=True)
class ActiveRun:
    """A claimed or running run, with what supervising it needs from its definition."""

    run_id: int
    evaluation: str
    state: str
    attempt: int
    owner: str | None
    pid: int | None
    host: str | None
    queued_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    timeout_s: float | None
    retries: int

    @property
    def claimed(self) -> bool:
        """True while a scheduler launches it (queued, with an owner)."""
        return self.state == "queued"

    @property
    def last_seen(self) -> datetime:
        """Its last sign of life: heartbeat, else start, else queue time."""
        return self.heartbeat_at or self.started_at or self.queued_at


def active_runs(db: Database, *, limit: int = 10_000) -> list[ActiveRun]:
    """Every claimed or running run, with its definition's timeout and retries."""
    stmt = (
        select(Run, Evaluation.name, Evaluation.timeout_s, Evaluation.retries)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(Run.state.in_(("queued", "running")), active_condition())
        .order_by(Run.id)
        .limit(limit)
    )
    with db.session() as session:
        return [
            ActiveRun(
                run_id=run.id,
                evaluation=name,
                state=run.state,
                attempt=run.attempt,
                owner=run.owner,
                pid=run.pid,
                host=run.host,
                queued_at=run.queued_at,
                started_at=run.started_at,
                heartbeat_at=run.heartbeat_at,
                timeout_s=timeout_s,
                retries=retries,
            )
            for run, name, timeout_s, retries in session.execute(stmt)
        ]


def run_states(db: Database, run_ids: Sequence[int]) -> dict[int, str]:
    """The current state of each of these runs (by primary key)."""
    states: dict[int, str] = {}
    with db.session() as session:
        for start in range(0, len(run_ids), 500):
            chunk = list(run_ids[start : start + 500])
            rows = session.execute(select(Run.id, Run.state).where(Run.id.in_(chunk)))
            states.update((run_id, state) for run_id, state in rows)
    return states


def _round(row: Run) -> int:
    """Attempts made in the run's current round (what its retry budget counts)."""
    return row.attempt - row.attempt_base


def _requeue(row: Run, *, next_attempt_at: datetime | None, error: str | None) -> None:
    row.state, row.error, row.next_attempt_at = "queued", error, next_attempt_at
    row.owner = row.host = None
    row.pid = None
    row.started_at = row.ended_at = row.heartbeat_at = None


def recover_lost(
    db: Database,
    run_id: int,
    now: datetime,
    *,
    seen_before: datetime,
    max_attempts: int,
    reason: str,
    pid: int | None = None,
) -> str | None:
    """Deal with a run that showed no sign of life since ``seen_before``.

    A lost claim is released (the run is ready again); a lost running attempt is resumed
    (queued again, keeping its committed units) while its round has fewer than
    ``max_attempts`` attempts, else failed with the reason; either way the lost attempt is
    fenced (the run no longer runs at it). With ``pid``, only if that process drives it.
    Returns the new state, or None if the run was not lost after all (it moved on, or
    another scheduler holds it).
    """
    with db.session() as session:
        row = lock_run(db, session, run_id)
        if row is None or (row.heartbeat_at or row.started_at or row.queued_at) >= seen_before:
            return None
        if pid is not None and row.pid != pid:
            return None
        if row.state == "queued" and row.owner is not None:
            row.owner = row.host = None
            row.pid = None
            row.heartbeat_at = None
            return "queued"
        if row.state != "running":
            return None
        # the lost attempt is fenced from here: the run is no longer running at it
        close_attempt(session, row.id, row.attempt, "lost", now, reason)
        if _round(row) < max_attempts:
            _requeue(
                row, next_attempt_at=None, error=f"attempt {row.attempt} lost: {reason}; resuming"
            )
            return "queued"
        row.state, row.ended_at = "failed", now
        row.error = f"attempt {row.attempt} lost: {reason}; no attempts left"
        return "failed"


def fail_timed_out(
    db: Database, run_id: int, now: datetime, *, started_before: datetime, reason: str
) -> bool:
    """Fail a running run whose attempt started before ``started_before``; True if it did."""
    with db.session() as session:
        row = lock_run(db, session, run_id)
        if row is None or row.state != "running" or row.started_at is None:
            return False
        if row.started_at >= started_before:
            return False
        row.state, row.error, row.ended_at = "failed", reason, now
        close_attempt(session, row.id, row.attempt, "failed", now, reason)
        return True


def requeue_for_retry(
    db: Database, run_id: int, now: datetime, backoff: Backoff
) -> RunRecord | None:
    """Queue a failed run again if its definition allows another attempt; None otherwise.

    The retry waits ``backoff(definition, attempts so far)`` seconds (``next_attempt_at``),
    then runs the failed work again: every unit never committed, and every example that had
    an error (see :mod:`hypermetric.catalog.ledger`).
    """
    with db.session() as session:
        row = lock_run(db, session, run_id)
        if row is None or row.state != "failed" or _round(row) < 1:
            return None
        ev = session.get(Evaluation, row.evaluation_id)
        if ev is None or _round(row) >= ev.retries + 1:
            return None
        wait = backoff(to_record(ev), _round(row))
        at = now + timedelta(seconds=wait)
        note = f"attempt {row.attempt} failed: {row.error or 'no reason given'}"
        _requeue(
            row,
            next_attempt_at=at,
            error=f"{note}; retry {_round(row)}/{ev.retries} after {wait:g}s",
        )
        row.redo_from = row.attempt + 1
        session.flush()
        return run_record(row, ev.name)


def failed_since(db: Database, since: datetime, *, limit: int = 1000) -> list[int]:
    """Failed runs that ended since ``since`` and may still be retried.

    Used only when adopting the work of a scheduler that stopped or died (not in the
    loop): the runs that failed while no scheduler was watching.
    """
    stmt = (
        select(Run.id)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(
            Run.state == "failed",
            Run.ended_at >= since,
            Run.attempt - Run.attempt_base >= 1,
            Run.attempt - Run.attempt_base < Evaluation.retries + 1,
        )
        .order_by(Run.ended_at)
        .limit(limit)
    )
    with db.session() as session:
        return list(session.scalars(stmt))
