"""Runs: create, read, list and move through their states."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Evaluation, Run, RunAttempt
from hypermetric.catalog.records import RUN_STATES, RUN_TYPES, RunRecord
from hypermetric.catalog.types import utcnow
from hypermetric.errors import ConflictError, NotFoundError
from hypermetric.masking import masked

__all__ = [
    "START_MODES",
    "cancel_run",
    "check_startable",
    "close_attempt",
    "count_runs",
    "create_run",
    "finish_run",
    "get_run",
    "list_runs",
    "make_run_key",
    "open_attempt",
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


def _insert(session: Session, row: Run) -> RunRecord:
    session.add(row)
    session.flush()
    name = session.scalar(select(Evaluation.name).where(Evaluation.id == row.evaluation_id))
    return run_record(row, name or "")


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
    source_run_id: int | None = None,
    session: Session | None = None,
) -> RunRecord:
    """Insert a queued run. ConflictError if the evaluation has one for that date or key.
    ``source_run_id``: the run a rescore replays."""
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
        source_run_id=source_run_id,
        attempt=0,
        queued_at=utcnow(),
    )
    if session is not None:
        return _insert(session, row)
    try:
        with db.session() as own:
            return _insert(own, row)
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


#: how a process takes a run: ``resume`` a queued run (or one whose process died), ``force``
#: it from a live-looking one, or ``retry`` a failed or canceled one
START_MODES = ("resume", "force", "retry")


def check_startable(run_id: int, state: str, error: str | None, mode: str) -> None:
    """ConflictError unless a run in ``state`` may be started in ``mode``."""
    if mode == "retry":
        if state not in ("failed", "canceled"):
            raise ConflictError(
                f"run {run_id} is {state}; only a failed or canceled run is retried"
            )
        return
    if state in ("success", "canceled"):
        raise ConflictError(f"run {run_id} is {state}; there is nothing to resume")
    if state == "failed":
        raise ConflictError(
            f"run {run_id} failed ({error or 'no reason given'}); "
            f"`hypermetric runs retry {run_id}` runs its failed work again"
        )


def _kind(row: Run, mode: str) -> str:
    """How the next attempt begins: the first of a run or of a reprocess (start), a retry,
    a takeover of a live-looking attempt, or a resume of a lost or queued one."""
    if mode == "retry" or row.redo_from == row.attempt + 1:
        return "retry"
    if row.attempt == row.attempt_base:
        return "start"
    return "takeover" if row.state == "running" else "resume"


def close_attempt(
    session: Session, run_id: int, attempt: int, state: str, now: datetime, reason: str | None
) -> None:
    """End the history row of an attempt still marked running (older runs have none)."""
    session.execute(
        update(RunAttempt)
        .where(
            RunAttempt.run_id == run_id,
            RunAttempt.attempt == attempt,
            RunAttempt.state == "running",
        )
        .values(state=state, reason=masked(reason) if reason else reason, ended_at=now)
    )


def start_run(
    db: Database,
    run_id: int,
    *,
    owner: str,
    pid: int,
    host: str,
    examples_total: int | None = None,
    mode: str = "resume",
) -> RunRecord:
    """Move a run to running for a new attempt, owned by this process (see :data:`START_MODES`).

    A ``retry`` starts a new round: the retry budget counts from it, and the units committed
    before it drive their failed examples again. A running attempt taken over is marked
    superseded: from now on the DB refuses its writes.
    """
    if mode not in START_MODES:
        raise ValueError(f"mode must be one of {START_MODES}, not {mode!r}")
    now = utcnow()
    with db.session() as session:
        row = session.scalar(db.dialect.for_update(select(Run).where(Run.id == run_id)))
        if row is None:
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
        check_startable(run_id, row.state, row.error, mode)
        kind = _kind(row, mode)
        if row.state == "running":
            reason = f"taken over by attempt {row.attempt + 1}"
            close_attempt(session, run_id, row.attempt, "superseded", now, reason)
        if mode == "retry":
            row.attempt_base, row.redo_from = row.attempt, row.attempt + 1
        row.error = row.ended_at = row.next_attempt_at = None
        open_attempt(session, row, row.attempt + 1, kind, owner, pid, host, now, examples_total)
        session.flush()
        return get_run(db, run_id, session)


def open_attempt(
    session: Session,
    row: Run,
    attempt: int,
    kind: str,
    owner: str,
    pid: int,
    host: str,
    now: datetime,
    examples_total: int | None = None,
) -> None:
    """Make ``row`` running under ``attempt``, owned by this process, and record the
    attempt's start, in the caller's transaction (a run started, resumed or imported)."""
    row.state, row.attempt = "running", attempt
    row.started_at = row.heartbeat_at = now  # the attempt's start: its timeout counts from here
    row.owner, row.pid, row.host = owner, pid, host
    if examples_total is not None:
        row.examples_total = examples_total
    session.add(
        RunAttempt(
            run_id=row.id,
            attempt=attempt,
            kind=kind,
            state="running",
            owner=owner,
            host=host,
            pid=pid,
            started_at=now,
        )
    )


def finish_run(db: Database, run_id: int, state: str, error: str | None = None) -> None:
    """End a run in ``state`` (success, failed or canceled) with an optional reason,
    whichever attempt runs it (an attempt ends its own run with ``finish_attempt``)."""
    if state not in ("success", "failed", "canceled"):
        raise ValueError(f"a run ends success, failed or canceled, not {state!r}")
    now = utcnow()
    with db.session() as session:
        row = session.scalar(db.dialect.for_update(select(Run).where(Run.id == run_id)))
        if row is None:
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
        row.state, row.error, row.ended_at = state, masked(error) if error else error, now
        close_attempt(session, run_id, row.attempt, state, now, error)


def cancel_run(db: Database, run_id: int, reason: str = "canceled by user") -> RunRecord:
    """Cancel a queued or running run; its attempt stops at its next write."""
    with db.session() as session:
        row = session.scalar(db.dialect.for_update(select(Run).where(Run.id == run_id)))
        if row is None:
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
        if row.state not in ("queued", "running"):
            raise ConflictError(f"run {run_id} is {row.state}; only queued or running runs cancel")
        now = utcnow()
        row.state, row.error, row.ended_at = "canceled", reason, now
        close_attempt(session, run_id, row.attempt, "canceled", now, reason)
        session.flush()
        return get_run(db, run_id, session)


def count_runs(db: Database) -> int:
    """How many runs the DB holds."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)
