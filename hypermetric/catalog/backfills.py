"""Backfill's catalog side: which intervals have runs, creating runs, and reprocessing one.

Reprocessing keeps the run (one run per logical date) but starts it over: its shards (and
its retractions) leave the live datasets in a new dataset version (older versions still
show them), its unit ledger is cleared and it is queued again. Its attempt number goes on
from where it was (a new round of retries begins), so an attempt from before the reprocess
that is still alive somewhere can never write into the run again (its fencing token is
stale).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import covered_intervals, lock_evaluation
from hypermetric.catalog.models import (
    DatasetVersion,
    Evaluation,
    Retraction,
    Run,
    Shard,
    UnitCommit,
)
from hypermetric.catalog.packing import packed_datasets, retract_run
from hypermetric.catalog.records import FINISHED_STATES, RunRecord
from hypermetric.catalog.runs import create_run, get_run, run_record
from hypermetric.errors import ConflictError, NotFoundError

__all__ = ["count_unfinished", "create_backfill_run", "reprocess_run", "runs_at"]


def runs_at(
    db: Database, evaluation_id: int, dates: Sequence[datetime]
) -> dict[datetime, RunRecord]:
    """The runs of an evaluation at these logical dates (unique index lookups)."""
    found: dict[datetime, RunRecord] = {}
    with db.session() as session:
        name = session.scalar(select(Evaluation.name).where(Evaluation.id == evaluation_id)) or ""
        for start in range(0, len(dates), 500):
            chunk = list(dates[start : start + 500])
            stmt = select(Run).where(
                Run.evaluation_id == evaluation_id, Run.logical_date.in_(chunk)
            )
            for row in session.scalars(stmt):
                found[row.logical_date] = run_record(row, name)
    return found


def create_backfill_run(
    db: Database,
    evaluation_id: int,
    *,
    logical_date: datetime,
    data_interval: tuple[datetime, datetime],
    version_label: str | None,
    code_version: str | None,
    params: dict[str, Any],
    unit_size: int | None = None,
) -> RunRecord | None:
    """Queue a backfill run for one interval; None if the interval got a run meanwhile, or
    a scheduled or backfill run covers any part of it (checked under the definition's lock,
    as the scheduler checks)."""
    try:
        with db.session() as session:
            lock_evaluation(db, session, evaluation_id)
            if covered_intervals(session, evaluation_id, *data_interval):
                return None
            return create_run(
                db,
                evaluation_id,
                run_type="backfill",
                logical_date=logical_date,
                data_interval=data_interval,
                version_label=version_label,
                code_version=code_version,
                params=params,
                unit_size=unit_size,
                session=session,
            )
    except IntegrityError:
        return None


def reprocess_run(
    db: Database,
    run_id: int,
    now: datetime,
    *,
    version_label: str | None,
    code_version: str | None,
    params: dict[str, Any],
) -> RunRecord:
    """Start a finished run over: retract its shards, clear its ledger, queue it again."""
    with db.session() as session:
        db.dialect.lock_snapshots(session)  # the engine's commit order: snapshot lock, then run
        row = session.scalar(db.dialect.for_update(select(Run).where(Run.id == run_id)))
        if row is None:
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
        if row.state not in FINISHED_STATES:
            raise ConflictError(f"run {run_id} is {row.state}; only a finished run is reprocessed")
        live = session.scalars(
            select(Shard).where(Shard.run_id == run_id, Shard.removed_version_id.is_(None))
        ).all()
        retracted = session.scalars(
            select(Retraction).where(
                Retraction.run_id == run_id, Retraction.removed_version_id.is_(None)
            )
        ).all()
        # rows packed with other runs' rows cannot leave with a file: retract them whole
        packed = packed_datasets(session, run_id)
        changed = {s.dataset for s in live} | {r.dataset for r in retracted} | packed
        for dataset in sorted(changed):
            version = DatasetVersion(
                dataset=dataset,
                kind="retract",
                run_id=run_id,
                created_at=now,
                message=f"run {run_id} is reprocessed",
            )
            session.add(version)
            session.flush()
            for shard in live:
                if shard.dataset == dataset:
                    shard.removed_version_id = version.id
            for retraction in retracted:
                if retraction.dataset == dataset:
                    retraction.removed_version_id = version.id
            if dataset in packed:  # every attempt so far; the next one writes row.attempt + 1
                retract_run(session, dataset, run_id, row.attempt + 1, version.id)
        session.execute(delete(UnitCommit).where(UnitCommit.run_id == run_id))
        _reset(row, now, version_label=version_label, code_version=code_version, params=params)
        session.flush()
        return get_run(db, run_id, session)


def _reset(
    row: Run,
    now: datetime,
    *,
    version_label: str | None,
    code_version: str | None,
    params: dict[str, Any],
) -> None:
    row.state, row.error, row.queued_at = "queued", None, now
    row.attempt_base, row.redo_from = row.attempt, None
    row.started_at = row.ended_at = row.heartbeat_at = row.next_attempt_at = None
    row.owner = row.host = None
    row.pid = None
    row.version_label, row.code_version, row.params = version_label, code_version, params
    row.examples_total = row.units_total = None
    row.rows_count = row.calls_count = row.errors_count = 0
    row.examples_done = row.shard_count = 0


def count_unfinished(db: Database, evaluation_id: int, run_ids: Sequence[int]) -> int:
    """How many of these runs of one evaluation are queued or running."""
    if not run_ids:
        return 0
    with db.session() as session:
        total = 0
        for start in range(0, len(run_ids), 500):
            chunk = list(run_ids[start : start + 500])
            total += int(
                session.scalar(
                    select(func.count()).where(
                        Run.evaluation_id == evaluation_id,
                        Run.id.in_(chunk),
                        Run.state.in_(("queued", "running")),
                    )
                )
                or 0
            )
        return total
