"""The scheduler's transactions: each locks what it decides on, so that several schedulers
sharing a PostgreSQL DB never create, claim or recover the same run twice.

Every query here is bounded and index-backed, so a scheduler pass costs the same with a
thousand runs of history or a million:

* due definitions: ``evaluations(paused, next_due_at)``, ``LIMIT``;
* "does this interval overlap a run's": the unique ``runs(evaluation_id, logical_date)``,
  read over the planned span and one step back (see :func:`covered_intervals`);
* claims and supervision read the queued and running runs only, through
  ``runs(state, evaluation_id)`` and ``runs(evaluation_id, state, run_type)``;
* watched runs are read by primary key.

No two scheduled or backfill runs of a definition cover the same time (the coverage rule
of :mod:`hypermetric.catalog.evaluations`): run creation checks it under the row lock.

A *claimed* run is a queued run whose ``owner`` names the scheduler launching it (its
``heartbeat_at`` is the claim's); the run process's ``start_run`` makes it running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import covered_intervals, to_record
from hypermetric.catalog.models import Evaluation, Run
from hypermetric.catalog.records import EvaluationRecord, RunRecord
from hypermetric.catalog.runs import create_run, run_record
from hypermetric.errors import HypermetricError

__all__ = [
    "DuePlan",
    "PlannedRun",
    "Planner",
    "active_condition",
    "claim_runs",
    "create_due_runs",
    "lock_run",
    "next_due_times",
    "recent_runs",
    "record_launch",
    "release_claim",
    "touch_claims",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedRun:
    """One interval to create a scheduled run for."""

    logical_date: datetime
    data_interval: tuple[datetime, datetime]


@dataclass(frozen=True)
class DuePlan:
    """What a due definition needs: the runs to create and where its schedule goes next."""

    runs: tuple[PlannedRun, ...]
    next_logical_date: datetime | None
    next_due_at: datetime | None


#: computes a due definition's plan at a time (the scheduler's cron maths)
Planner = Callable[[EvaluationRecord, datetime], DuePlan]


def active_condition() -> ColumnElement[bool]:
    """Runs that count against max_active_runs: running, or claimed for launching."""
    return or_(Run.state == "running", and_(Run.state == "queued", Run.owner.is_not(None)))


def _ready(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        Run.state == "queued",
        Run.owner.is_(None),
        or_(Run.next_attempt_at.is_(None), Run.next_attempt_at <= now),
    )


# -- creation ----------------------------------------------------------------------------


def create_due_runs(
    db: Database, now: datetime, planner: Planner, *, limit: int = 100, unit_size: int | None = None
) -> list[RunRecord]:
    """Create the runs of due definitions, advancing each in the same transaction.

    Due rows are locked ``FOR UPDATE SKIP LOCKED`` in a stable order; an interval that
    overlaps a scheduled or backfill run's interval is skipped (checked first, with the
    unique key as the backstop), so a crash at any point neither loses nor doubles an
    interval, and no two runs of a definition cover the same time.
    """
    stmt = (
        select(Evaluation)
        .where(Evaluation.paused.is_(False), Evaluation.next_due_at <= now)
        .order_by(Evaluation.next_due_at, Evaluation.id)
        .limit(limit)
    )
    created: list[RunRecord] = []
    with db.session() as session:
        for row in session.scalars(db.dialect.for_update(stmt, skip_locked=True)).all():
            created += _create_planned(db, session, row, now, planner, unit_size)
    return created


def _create_planned(
    db: Database,
    session: Session,
    row: Evaluation,
    now: datetime,
    planner: Planner,
    unit_size: int | None,
) -> list[RunRecord]:
    try:
        plan = planner(to_record(row), now)
    except HypermetricError as exc:
        log.error("evaluation %r stops being scheduled: %s; register it again", row.name, exc)
        row.next_due_at = None
        return []
    created = []
    for planned in _uncovered(session, row, plan.runs):
        try:
            with session.begin_nested():
                created.append(
                    create_run(
                        db,
                        row.id,
                        run_type="scheduled",
                        logical_date=planned.logical_date,
                        data_interval=planned.data_interval,
                        version_label=row.version_label,
                        code_version=row.code_version,
                        params=dict(row.params or {}),
                        unit_size=unit_size,
                        session=session,
                    )
                )
        except IntegrityError:
            continue  # a manual run holds this logical date: the unique key says no
    row.next_logical_date, row.next_due_at = plan.next_logical_date, plan.next_due_at
    return created


def _uncovered(
    session: Session, row: Evaluation, planned: tuple[PlannedRun, ...]
) -> list[PlannedRun]:
    """The planned runs whose intervals no scheduled or backfill run covers any part of.

    The definition's row is locked, so the check and the inserts are one decision.
    """
    if not planned:
        return []
    span = (planned[0].data_interval[0], planned[-1].data_interval[1])
    covered = covered_intervals(session, row.id, *span)
    kept = []
    for run in planned:
        start, end = run.data_interval
        clash = next((c for c in covered if c.overlaps(start, end)), None)
        if clash is None:
            kept.append(run)
            continue
        log.warning(
            "evaluation %r: no run for %s .. %s: run %d covers %s .. %s",
            row.name, start.isoformat(), end.isoformat(),
            clash.run_id, clash.start.isoformat(), clash.end.isoformat(),
        )  # fmt: skip
    return kept


def next_due_times(
    db: Database, until: datetime, *, limit: int = 1000
) -> list[tuple[int, datetime]]:
    """``(evaluation id, due time)`` of unpaused definitions due by ``until``, soonest first."""
    stmt = (
        select(Evaluation.id, Evaluation.next_due_at)
        .where(Evaluation.paused.is_(False), Evaluation.next_due_at <= until)
        .order_by(Evaluation.next_due_at, Evaluation.id)
        .limit(limit)
    )
    with db.session() as session:
        return [(eid, due) for eid, due in session.execute(stmt) if due is not None]


def recent_runs(db: Database, evaluation_id: int, *, limit: int = 1) -> list[RunRecord]:
    """An evaluation's runs with the latest logical dates, newest first (unique index)."""
    stmt = (
        select(Run, Evaluation.name)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(Run.evaluation_id == evaluation_id)
        .order_by(Run.logical_date.desc())
        .limit(limit)
    )
    with db.session() as session:
        return [run_record(run, name) for run, name in session.execute(stmt)]


# -- claims ------------------------------------------------------------------------------


def claim_runs(
    db: Database, now: datetime, *, owner: str, host: str, limit: int, evaluations: int = 50
) -> list[RunRecord]:
    """Claim up to ``limit`` ready queued runs for launching, within max_active_runs.

    The definitions are locked (``SKIP LOCKED``, in id order) before their active runs are
    counted, so two schedulers never both fill the same definition's last slot. Scheduled
    and manual runs go before backfill runs, then oldest first.
    """
    if limit <= 0:
        return []
    backfill_last = case((Run.run_type == "backfill", 1), else_=0)
    candidates = (
        select(Run.evaluation_id)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(*_ready(now), Evaluation.paused.is_(False))
        .group_by(Run.evaluation_id)
        .order_by(func.min(backfill_last), func.min(Run.id))
        .limit(evaluations)
    )
    claimed: list[RunRecord] = []
    with db.session() as session:
        ids = list(session.scalars(candidates))
        if not ids:
            return []
        locked = select(Evaluation).where(Evaluation.id.in_(ids)).order_by(Evaluation.id)
        rows = {e.id: e for e in session.scalars(db.dialect.for_update(locked, skip_locked=True))}
        active = _active_counts(session, list(rows))
        for eid in ids:
            ev = rows.get(eid)
            room = (
                0
                if ev is None
                else min(ev.max_active_runs - active.get(eid, 0), limit - len(claimed))
            )
            if ev is None or room <= 0:
                continue
            stmt = (
                select(Run)
                .where(Run.evaluation_id == eid, *_ready(now))
                .order_by(backfill_last, Run.id)
                .limit(room)
            )
            for run in session.scalars(db.dialect.for_update(stmt, skip_locked=True)).all():
                run.owner, run.host, run.pid, run.heartbeat_at = owner, host, None, now
                claimed.append(run_record(run, ev.name))
            if len(claimed) >= limit:
                break
        session.flush()
    return claimed


def _active_counts(session: Session, evaluation_ids: list[int]) -> dict[int, int]:
    if not evaluation_ids:
        return {}
    stmt = (
        select(Run.evaluation_id, func.count())
        .where(
            Run.evaluation_id.in_(evaluation_ids),
            Run.state.in_(("queued", "running")),
            active_condition(),
        )
        .group_by(Run.evaluation_id)
    )
    return {eid: int(n) for eid, n in session.execute(stmt)}


def touch_claims(db: Database, run_ids: Iterable[int], owner: str, now: datetime) -> None:
    """Refresh the claims this scheduler holds on runs whose processes are still starting."""
    ids = list(run_ids)
    if not ids:
        return
    with db.session() as session:
        session.execute(
            update(Run)
            .where(Run.id.in_(ids), Run.state == "queued", Run.owner == owner)
            .values(heartbeat_at=now)
        )


def record_launch(db: Database, run_id: int, owner: str, pid: int | None) -> None:
    """Note the pid of the process launched for a run this scheduler claimed."""
    with db.session() as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state == "queued", Run.owner == owner)
            .values(pid=pid)
        )


def lock_run(db: Database, session: Session, run_id: int) -> Run | None:
    """Lock one run row for this transaction, or None if another holds it (or it is gone)."""
    stmt = select(Run).where(Run.id == run_id)
    return session.scalar(db.dialect.for_update(stmt, skip_locked=True))


def release_claim(
    db: Database,
    run_id: int,
    owner: str,
    now: datetime,
    *,
    retry_at: datetime | None = None,
    fail_reason: str | None = None,
) -> bool:
    """Give up this scheduler's claim on a run whose process never started it.

    The run is ready again from ``retry_at``, or failed with ``fail_reason`` when given.
    Returns False if the claim was no longer held (the run started, or moved on).
    """
    with db.session() as session:
        row = lock_run(db, session, run_id)
        if row is None or row.state != "queued" or row.owner != owner:
            return False
        if fail_reason is not None:
            row.state, row.error, row.ended_at = "failed", fail_reason, now
        else:
            row.next_attempt_at = retry_at
        row.owner = row.host = None
        row.pid = None
        row.heartbeat_at = None
        return True
