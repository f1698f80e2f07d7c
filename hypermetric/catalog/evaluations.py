"""Evaluation definitions: create, update, read; and the intervals their runs cover.

**Coverage.** The data intervals of a definition's scheduled and backfill runs never
overlap: the scheduler and backfill each check, holding the definition's row lock, that a
new run's interval overlaps none of them. A manual run has a data interval too, but it
does not cover the schedule: the scheduled run of that interval is still created.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Evaluation, Run
from hypermetric.catalog.records import EvaluationRecord
from hypermetric.errors import NotFoundError

__all__ = [
    "COVERING_RUN_TYPES",
    "EDITABLE_FIELDS",
    "CoveredInterval",
    "Reschedule",
    "check_fields",
    "covered_between",
    "covered_intervals",
    "get_evaluation",
    "list_evaluations",
    "lock_evaluation",
    "set_paused",
    "store_evaluation",
    "to_record",
    "upsert_evaluation",
]

#: the run types whose data intervals cover a definition's schedule
COVERING_RUN_TYPES = ("scheduled", "backfill")
_TICK = timedelta(microseconds=1)

EDITABLE_FIELDS = frozenset(
    {
        "import_path",
        "description",
        "schedule",
        "timezone",
        "catchup",
        "start_date",
        "end_date",
        "max_active_runs",
        "retries",
        "retry_delay_s",
        "retry_exponential",
        "timeout_s",
        "max_error_rate",
        "params",
        "paused",
        "version_label",
        "code_version",
        "next_logical_date",
        "next_due_at",
    }
)


def to_record(row: Evaluation) -> EvaluationRecord:
    """The frozen record of an ORM row."""
    return EvaluationRecord(
        id=row.id,
        name=row.name,
        import_path=row.import_path,
        schedule=row.schedule,
        timezone=row.timezone,
        catchup=row.catchup,
        start_date=row.start_date,
        end_date=row.end_date,
        max_active_runs=row.max_active_runs,
        retries=row.retries,
        retry_delay_s=row.retry_delay_s,
        retry_exponential=row.retry_exponential,
        timeout_s=row.timeout_s,
        max_error_rate=row.max_error_rate,
        params=dict(row.params or {}),
        paused=row.paused,
        version_label=row.version_label,
        code_version=row.code_version,
        next_logical_date=row.next_logical_date,
        next_due_at=row.next_due_at,
        description=row.description,
    )


def check_fields(fields: Mapping[str, Any]) -> None:
    """TypeError if ``fields`` names something that is not an editable evaluation field."""
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"unknown evaluation fields {sorted(unknown)}")


def lock_evaluation(db: Database, session: Session, name: str | int) -> Evaluation | None:
    """The row of evaluation ``name`` (or id), locked for this transaction; None if absent."""
    column = Evaluation.id if isinstance(name, int) else Evaluation.name
    return session.scalar(db.dialect.for_update(select(Evaluation).where(column == name)))


def _lock_or_create(db: Database, session: Session, name: str) -> tuple[Evaluation, bool]:
    """The row of evaluation ``name`` locked for this transaction, made first if absent, and
    whether this transaction made it.

    Two processes starting the first runs of a new evaluation at once both find no row; one
    insert wins, and the other (on PostgreSQL it waits for the winner's commit) takes the
    winner's row instead of failing on the unique name.
    """
    row = lock_evaluation(db, session, name)
    if row is not None:
        return row, False
    try:
        with session.begin_nested():
            row = Evaluation(name=name, params={})
            session.add(row)
        return row, True
    except IntegrityError:
        row = lock_evaluation(db, session, name)
        if row is None:
            raise
        return row, False


def upsert_evaluation(db: Database, name: str, **fields: Any) -> EvaluationRecord:
    """Create the evaluation ``name`` or update the given fields of the existing one."""
    check_fields(fields)
    with db.session() as session:
        row, _ = _lock_or_create(db, session, name)
        for key, value in fields.items():
            setattr(row, key, value)
        session.flush()
        return to_record(row)


def get_evaluation(db: Database, name: str | int) -> EvaluationRecord:
    """The evaluation with this name (or id); NotFoundError if there is none."""
    column = Evaluation.id if isinstance(name, int) else Evaluation.name
    with db.session() as session:
        row = session.scalar(select(Evaluation).where(column == name))
        if row is None:
            raise NotFoundError(
                f"no evaluation {name!r}; `hypermetric evals list` shows the registered ones"
            )
        return to_record(row)


def list_evaluations(db: Database) -> list[EvaluationRecord]:
    """Every evaluation, by name."""
    with db.session() as session:
        return [to_record(r) for r in session.scalars(select(Evaluation).order_by(Evaluation.name))]


def set_paused(db: Database, name: str, paused: bool) -> EvaluationRecord:
    """Pause or unpause an evaluation's schedule."""
    get_evaluation(db, name)
    return upsert_evaluation(db, name, paused=paused)


# -- coverage ---------------------------------------------------------------------------


#: given the stored definition (None if new) and the end of the last interval its runs
#: cover (None if none), the fields that move its schedule (the scheduler's cron maths)
Reschedule = Callable[[EvaluationRecord | None, datetime | None], Mapping[str, Any]]


@dataclass(frozen=True)
class CoveredInterval:
    """The data interval ``[start, end)`` of a scheduled or backfill run."""

    run_id: int
    start: datetime
    end: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether ``[start, end)`` shares any instant with this interval."""
        return self.start < end and start < self.end


def _covering(evaluation_id: int) -> Select[int, datetime, datetime | None]:
    return select(Run.id, Run.logical_date, Run.data_interval_end).where(
        Run.evaluation_id == evaluation_id, Run.run_type.in_(COVERING_RUN_TYPES)
    )


def _covered(row: Row[int, datetime, datetime | None]) -> CoveredInterval:
    # a scheduled or backfill run's logical date is its interval's start; a run stored
    # without an interval covers its logical date alone
    return CoveredInterval(row[0], row[1], row[2] or row[1] + _TICK)


def covered_intervals(
    session: Session, evaluation_id: int, start: datetime, end: datetime
) -> list[CoveredInterval]:
    """The covered intervals of an evaluation that overlap ``[start, end)``, in order.

    Two lookups on the unique ``(evaluation_id, logical_date)`` index: the runs starting
    inside, and the last one starting before. Covered intervals never overlap each other,
    so no earlier one can reach further than that last one.
    """
    before = session.execute(
        _covering(evaluation_id)
        .where(Run.logical_date < start)
        .order_by(Run.logical_date.desc())
        .limit(1)
    ).first()
    inside = session.execute(
        _covering(evaluation_id)
        .where(Run.logical_date >= start, Run.logical_date < end)
        .order_by(Run.logical_date)
    )
    found = [_covered(r) for r in ([before] if before is not None else []) + list(inside)]
    return [c for c in found if c.overlaps(start, end)]


def covered_between(
    db: Database, evaluation_id: int, start: datetime, end: datetime
) -> list[CoveredInterval]:
    """:func:`covered_intervals` in a transaction of its own."""
    with db.session() as session:
        return covered_intervals(session, evaluation_id, start, end)


def _last_covered_end(session: Session, evaluation_id: int) -> datetime | None:
    last = session.execute(
        _covering(evaluation_id).order_by(Run.logical_date.desc()).limit(1)
    ).first()
    return None if last is None else _covered(last).end


def store_evaluation(
    db: Database, name: str, fields: Mapping[str, Any], reschedule: Reschedule
) -> tuple[EvaluationRecord, bool]:
    """Create or update evaluation ``name`` and move its schedule, in one transaction.

    The definition's row is locked while ``reschedule`` reads the end of the last covered
    interval, so no scheduler pass or backfill creates a run in between. Returns the
    stored record and whether it is new.
    """
    check_fields(fields)
    with db.session() as session:
        row, created = _lock_or_create(db, session, name)
        before = None if created else to_record(row)
        moved = reschedule(before, None if created else _last_covered_end(session, row.id))
        check_fields(moved)
        for key, value in {**fields, **moved}.items():
            setattr(row, key, value)
        session.flush()
        return to_record(row), before is None
