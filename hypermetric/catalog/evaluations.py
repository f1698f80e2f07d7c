"""Evaluation definitions: create, update, read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Evaluation
from hypermetric.catalog.records import EvaluationRecord
from hypermetric.errors import NotFoundError

__all__ = [
    "EDITABLE_FIELDS",
    "get_evaluation",
    "list_evaluations",
    "set_paused",
    "to_record",
    "upsert_evaluation",
]

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


def upsert_evaluation(db: Database, name: str, **fields: Any) -> EvaluationRecord:
    """Create the evaluation ``name`` or update the given fields of the existing one."""
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"unknown evaluation fields {sorted(unknown)}")
    with db.session() as session:
        row = session.scalar(
            db.dialect.for_update(select(Evaluation).where(Evaluation.name == name))
        )
        if row is None:
            row = Evaluation(name=name, params={})
            session.add(row)
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
