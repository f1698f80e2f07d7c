"""Runs: create, read, list and move through their states."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Evaluation, Run
from hypermetric.catalog.records import RUN_STATES, RUN_TYPES, RunRecord
from hypermetric.catalog.types import utcnow
from hypermetric.errors import ConflictError, NotFoundError

__all__ = [
    "cancel_run",
    "count_runs",
    "create_run",
    "finish_run",
    "get_run",
    "heartbeat",
    "list_runs",
    "make_run_key",
    "run_record",
    "start_run",
    "update_run",
]


def make_run_key(run_type: str, logical_date: datetime) -> str:
    """The run key: its type and its logical date, e.g. ``scheduled__2026-11-26T02:00:00+00:00``."""
    return f"{run_type}__{logical_date.isoformat()}"


def run_record(row: Run, evaluation: str) -> RunRecord:
    """The frozen record of an ORM row."""
    return RunRecord(
        evaluation=evaluation,
        **{c.key: getattr(row, c.key) for c in Run.__table__.columns},
    )


def _select_runs() -> Select[Run, str]:
    return select(Run, Evaluation.name).join(Evaluation, Run.evaluation_id == Evaluation.id)


def create_run(
    db: Database,
    evaluation_id: int,
    *,
    run_type: str,
    logical_date: datetime | None = None,
    run_key: str | None = None,
    data_interval: tuple[datetime, datetime] | None = None,
    version_label: str | None = None,
    code_version: str | None = None,
    versions: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    dataset: str | None = None,
    unit_size: int | None = None,
    session: Session | None = None,
) -> RunRecord:
    """Insert a queued run. ConflictError if the evaluation has one for that date or key."""
    if run_type not in RUN_TYPES:
        raise ValueError(f"run_type must be one of {RUN_TYPES}, not {run_type!r}")
    logical_date = logical_date or utcnow()
    row = Run(
        evaluation_id=evaluation_id,
        run_type=run_type,
        run_key=run_key or make_run_key(run_type, logical_date),
        logical_date=logical_date,
        data_interval_start=data_interval[0] if data_interval else None,
        data_interval_end=data_interval[1] if data_interval else None,
        state="queued",
        version_label=version_label,
        code_version=code_version,
        versions=versions,
        params=params or {},
        dataset=dataset,
        unit_size=unit_size,
        attempt=0,
        queued_at=utcnow(),
    )
    if session is not None:
        session.add(row)
        session.flush()
        name = session.scalar(select(Evaluation.name).where(Evaluation.id == evaluation_id))
        return run_record(row, name or "")
    try:
        with db.session() as own:
            return create_run(
                db,
                evaluation_id,
                run_type=run_type,
                logical_date=logical_date,
                run_key=row.run_key,
                data_interval=data_interval,
                version_label=version_label,
                code_version=code_version,
                versions=versions,
                params=params,
                dataset=dataset,
                unit_size=unit_size,
                session=own,
            )
    except IntegrityError:
        raise ConflictError(
            f"evaluation {evaluation_id} already has a run for {logical_date.isoformat()} "
            f"or key {row.run_key!r}"
        ) from None


def get_run(db: Database, run_id: int, session: Session | None = None) -> RunRecord:
    """The run with this id; NotFoundError if there is none."""
    if session is None:
        with db.session() as own:
            return get_run(db, run_id, own)
    found = session.execute(_select_runs().where(Run.id == run_id)).first()
    if found is None:
        raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
    return run_record(found[0], found[1])


def list_runs(
    db: Database,
    *,
    evaluation: str | None = None,
    state: str | None = None,
    run_type: str | None = None,
    limit: int | None = 50,
) -> list[RunRecord]:
    """Runs, newest first, filtered by evaluation name, state and run type."""
    if state is not None and state not in RUN_STATES:
        raise ValueError(f"state must be one of {RUN_STATES}, not {state!r}")
    if run_type is not None and run_type not in RUN_TYPES:
        raise ValueError(f"run type must be one of {RUN_TYPES}, not {run_type!r}")
    stmt = _select_runs().order_by(Run.id.desc())
    if evaluation is not None:
        stmt = stmt.where(Evaluation.name == evaluation)
    if state is not None:
        stmt = stmt.where(Run.state == state)
    if run_type is not None:
        stmt = stmt.where(Run.run_type == run_type)
    if limit is not None:
        stmt = stmt.limit(limit)
    with db.session() as session:
        return [run_record(row, name) for row, name in session.execute(stmt)]


def update_run(db: Database, run_id: int, **fields: Any) -> None:
    """Set columns of a run row."""
    with db.session() as session:
        result = session.execute(update(Run).where(Run.id == run_id).values(**fields))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")


def start_run(
    db: Database, run_id: int, *, owner: str, pid: int, host: str, examples_total: int | None = None
) -> RunRecord:
    """Move a run to running for a new attempt, owned by this process."""
    now = utcnow()
    with db.session() as session:
        row = session.scalar(db.dialect.for_update(select(Run).where(Run.id == run_id)))
        if row is None:
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
        if row.state in ("success", "canceled"):
            raise ConflictError(f"run {run_id} is {row.state}; it cannot be started again")
        row.state = "running"
        row.attempt = row.attempt + 1
        row.started_at = row.started_at or now
        row.heartbeat_at = now
        row.ended_at = None
        row.next_attempt_at = None
        row.error = None
        row.owner, row.pid, row.host = owner, pid, host
        if examples_total is not None:
            row.examples_total = examples_total
        session.flush()
        return get_run(db, run_id, session)


def heartbeat(db: Database, run_id: int, **fields: Any) -> str:
    """Refresh a run's heartbeat (and progress fields); returns the run's current state."""
    with db.session() as session:
        session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow(), **fields))
        state = session.scalar(select(Run.state).where(Run.id == run_id))
        if state is None:
            raise NotFoundError(f"no run {run_id}")
        return state


def finish_run(db: Database, run_id: int, state: str, error: str | None = None) -> None:
    """End a run in ``state`` (success, failed or canceled) with an optional reason."""
    if state not in ("success", "failed", "canceled"):
        raise ValueError(f"a run ends success, failed or canceled, not {state!r}")
    update_run(db, run_id, state=state, error=error, ended_at=utcnow())


def cancel_run(db: Database, run_id: int, reason: str = "canceled by user") -> RunRecord:
    """Cancel a queued or running run; its driver stops at its next heartbeat."""
    with db.session() as session:
        row = session.scalar(db.dialect.for_update(select(Run).where(Run.id == run_id)))
        if row is None:
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
        if row.state not in ("queued", "running"):
            raise ConflictError(f"run {run_id} is {row.state}; only queued or running runs cancel")
        row.state, row.error, row.ended_at = "canceled", reason, utcnow()
        session.flush()
        return get_run(db, run_id, session)


def count_runs(db: Database) -> int:
    """How many runs the DB holds."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)
