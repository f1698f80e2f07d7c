"""Files that mix runs: what compaction may pack, which packed files hold a run, run-wide
retractions, and the lease that lets one scheduler at a time compact in the background.

Compaction packs the small shards of many finished runs into large files (``shards.run_id``
NULL, their runs and row counts in ``shard_runs``). Everything the catalog does by run
stays exact with them:

- **reading one run** lists its own shards and the packed files that hold its rows
  (:func:`hypermetric.catalog.shards.live_shards` with ``run_ids``);
- **reprocessing a run** removes its own shards and, when packed files hold its rows,
  adds one run-wide retraction (``example_id`` NULL) of every attempt before the next one;
- **pruning a run** removes its own shards, the packed files that hold only pruned runs,
  and retracts its rows (every attempt) from the packed files that stay.

A packed file is never rewritten in place: a later compaction may pack it again into a
new file (rows and retractions unchanged), in a new version, like any shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import (
    Evaluation,
    MaintenanceLease,
    Retraction,
    Run,
    Shard,
    ShardRun,
)
from hypermetric.catalog.records import ShardRecord
from hypermetric.catalog.shards import shard_record

__all__ = [
    "ALL_ATTEMPTS",
    "COMPACTABLE_STATES",
    "PackCandidate",
    "acquire_lease",
    "lease_holder",
    "packed_datasets",
    "packed_rows",
    "packing_candidates",
    "prunable_packed",
    "release_lease",
    "retract_run",
    "runs_of_shards",
]

#: a run-wide retraction with this attempt takes out the run's rows of every attempt
ALL_ATTEMPTS = 2**31 - 1

#: runs whose shards compaction may pack: those that ended (a failed run resumed or
#: retried later only adds shards and row-level retractions, which apply to packed rows too)
COMPACTABLE_STATES = ("success", "failed", "canceled")


@dataclass(frozen=True)
class PackCandidate:
    """A small live shard compaction may pack: its record, the evaluation it sorts under
    ('' for a packed file) and its rows per run."""

    shard: ShardRecord
    evaluation: str
    runs: dict[int, int]


def _chunks(ids: Sequence[int], size: int = 500) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def runs_of_shards(session: Session, shard_ids: Sequence[int]) -> dict[int, dict[int, int]]:
    """``{shard id: {run id: rows}}`` of the packed shards among ``shard_ids``."""
    out: dict[int, dict[int, int]] = {}
    for chunk in _chunks(sorted(set(shard_ids))):
        stmt = select(ShardRun.shard_id, ShardRun.run_id, ShardRun.rows).where(
            ShardRun.shard_id.in_(chunk)
        )
        for shard_id, run_id, rows in session.execute(stmt):
            out.setdefault(shard_id, {})[run_id] = int(rows)
    return out


def packing_candidates(
    db: Database, dataset: str, *, max_rows: int, evaluation: str | None = None
) -> list[PackCandidate]:
    """Live shards of ``dataset`` under ``max_rows`` rows that compaction may pack.

    Packed files first (oldest first, only without ``evaluation``), then the shards of runs
    that ended, by evaluation name, run and shard: the order their rows are packed in.
    """
    single = (
        select(Shard, Evaluation.name)
        .join(Run, Shard.run_id == Run.id)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(
            Shard.dataset == dataset,
            Shard.removed_version_id.is_(None),
            Shard.rows < max_rows,
            Run.state.in_(COMPACTABLE_STATES),
        )
        .order_by(Evaluation.name, Shard.run_id, Shard.id)
    )
    if evaluation is not None:
        single = single.where(Evaluation.name == evaluation)
    packed = (
        select(Shard)
        .where(
            Shard.dataset == dataset,
            Shard.removed_version_id.is_(None),
            Shard.run_id.is_(None),
            Shard.rows < max_rows,
        )
        .order_by(Shard.id)
    )
    out: list[PackCandidate] = []
    with db.session() as session:
        if evaluation is None:
            rows = [shard_record(r) for r in session.scalars(packed)]
            runs = runs_of_shards(session, [r.id for r in rows])
            # a packed file lists its runs; one that does not (none should) is left alone
            out.extend(PackCandidate(r, "", runs[r.id]) for r in rows if runs.get(r.id))
        for row, name in session.execute(single):
            record = shard_record(row)
            out.append(PackCandidate(record, name, {int(row.run_id or 0): int(row.rows)}))
    return out


def packed_datasets(session: Session, run_id: int) -> set[str]:
    """The datasets with a live packed file holding rows of ``run_id``."""
    stmt = (
        select(Shard.dataset)
        .join(ShardRun, ShardRun.shard_id == Shard.id)
        .where(ShardRun.run_id == run_id, Shard.removed_version_id.is_(None))
        .distinct()
    )
    return set(session.scalars(stmt))


def retract_run(session: Session, dataset: str, run_id: int, attempt: int, version_id: int) -> None:
    """Retract every row of ``run_id`` in ``dataset`` written by an attempt before
    ``attempt`` from version ``version_id`` on (:data:`ALL_ATTEMPTS`: all of them)."""
    session.add(
        Retraction(
            dataset=dataset,
            run_id=run_id,
            example_id=None,
            attempt=attempt,
            added_version_id=version_id,
        )
    )


def prunable_packed(session: Session, dataset: str, doomed: Sequence[int]) -> list[int]:
    """Live packed shards of ``dataset`` whose every run is in ``doomed`` or gone already."""
    doomed_set = set(doomed)
    candidates: set[int] = set()
    for chunk in _chunks(sorted(doomed_set)):
        stmt = (
            select(ShardRun.shard_id)
            .join(Shard, Shard.id == ShardRun.shard_id)
            .where(
                ShardRun.run_id.in_(chunk),
                Shard.dataset == dataset,
                Shard.removed_version_id.is_(None),
            )
        )
        candidates.update(session.scalars(stmt))
    runs = runs_of_shards(session, sorted(candidates))
    all_runs = sorted({r for found in runs.values() for r in found} - doomed_set)
    existing: set[int] = set()
    for chunk in _chunks(all_runs):
        existing.update(session.scalars(select(Run.id).where(Run.id.in_(chunk))))
    return sorted(s for s, found in runs.items() if not (set(found) - doomed_set) & existing)


def acquire_lease(db: Database, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Take (or extend) the lease ``name`` for ``owner`` until ``now + ttl``.

    False when another owner holds it and it has not expired. Safe between processes: the
    row is locked while it is read and written, and two first inserts race on the key.
    """
    try:
        with db.session() as session:
            stmt = db.dialect.for_update(
                select(MaintenanceLease).where(MaintenanceLease.name == name)
            )
            row = session.scalar(stmt)
            if row is None:
                session.add(MaintenanceLease(name=name, owner=owner, expires_at=now + ttl))
                session.flush()
                return True
            if row.owner != owner and row.expires_at > now:
                return False
            row.owner, row.expires_at = owner, now + ttl
            return True
    except IntegrityError:  # another process inserted the lease first
        return False


def release_lease(db: Database, name: str, owner: str) -> None:
    """Give the lease ``name`` up if ``owner`` holds it."""
    with db.session() as session:
        row = session.scalar(
            db.dialect.for_update(select(MaintenanceLease).where(MaintenanceLease.name == name))
        )
        if row is not None and row.owner == owner:
            session.delete(row)


def lease_holder(db: Database, name: str, now: datetime) -> str | None:
    """Who holds the lease ``name`` now (None: nobody)."""
    with db.session() as session:
        row = session.get(MaintenanceLease, name)
        return row.owner if row is not None and row.expires_at > now else None


def packed_rows(db: Database, run_id: int) -> int:
    """Rows of ``run_id`` in live packed files, over both datasets."""
    stmt = (
        select(func.coalesce(func.sum(ShardRun.rows), 0))
        .join(Shard, Shard.id == ShardRun.shard_id)
        .where(ShardRun.run_id == run_id, Shard.removed_version_id.is_(None))
    )
    with db.session() as session:
        return int(session.scalar(stmt) or 0)
