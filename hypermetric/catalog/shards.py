"""Shards, the unit ledger and dataset versions: the commit protocol's catalog side.

A flush of an evaluator becomes visible in exactly one transaction, which registers its
files, records the units they hold in the ledger (a unit commits at most once: the primary
key says so) and creates one dataset version per dataset it adds to. Readers see a shard
only through this registry, so a file that was never registered is never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hypermetric.catalog.attempts import fence
from hypermetric.catalog.db import Database
from hypermetric.catalog.ledger import LedgerSplit, record_units, split_units
from hypermetric.catalog.models import DatasetVersion, Retraction, Run, Shard, ShardRun, UnitCommit
from hypermetric.catalog.records import ShardFile, ShardRecord, UnitSummary, VersionRecord
from hypermetric.catalog.types import utcnow
from hypermetric.errors import ConflictError

__all__ = [
    "DATASETS",
    "CommitResult",
    "UnitsAlreadyCommitted",
    "commit_units",
    "committed_unit_ids",
    "latest_version_id",
    "ledger_totals",
    "list_versions",
    "live_retractions",
    "live_shards",
    "registered_paths",
    "shard_record",
    "version_record",
]

DATASETS = ("scores", "calls", "examples")


class UnitsAlreadyCommitted(ConflictError):
    """Some units of a flush are in the ledger already; nothing of the flush was registered."""

    def __init__(self, run_id: int, unit_ids: Iterable[int]) -> None:
        self.unit_ids = frozenset(unit_ids)
        super().__init__(f"run {run_id}: units {sorted(self.unit_ids)[:10]} are committed already")


@dataclass(frozen=True)
class CommitResult:
    """What a commit registered."""

    version_ids: tuple[int, ...]
    shard_ids: dict[str, int]


def shard_record(row: Shard) -> ShardRecord:
    """The frozen record of a shard row."""
    return ShardRecord(
        id=row.id,
        run_id=row.run_id,
        dataset=row.dataset,
        path=row.path,
        rows=row.rows,
        bytes=row.bytes,
        schema_fingerprint=row.schema_fingerprint,
        added_version_id=row.added_version_id,
        removed_version_id=row.removed_version_id,
        stats=row.stats,
    )


def version_record(row: DatasetVersion) -> VersionRecord:
    """The frozen record of a dataset version row."""
    return VersionRecord(
        id=row.id,
        dataset=row.dataset,
        kind=row.kind,
        run_id=row.run_id,
        created_at=row.created_at,
        message=row.message,
        expired=row.expired,
    )


def _already(session: Session, run_id: int, unit_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(unit_ids), 500):
        chunk = unit_ids[start : start + 500]
        found.update(
            session.scalars(
                select(UnitCommit.unit_id).where(
                    UnitCommit.run_id == run_id, UnitCommit.unit_id.in_(chunk)
                )
            )
        )
    return found


def commit_units(
    db: Database,
    run_id: int,
    files: Sequence[ShardFile],
    units: Sequence[UnitSummary],
    *,
    attempt: int,
    message: str | None = None,
) -> CommitResult:
    """Register ``files`` holding ``units`` of a run's ``attempt``, in one transaction.

    Fenced: raises SupersededError or RunNotRunning (nothing registered) unless the run is
    running at ``attempt``, so a superseded attempt or a late evaluator of an ended run cannot
    add rows to it. Raises UnitsAlreadyCommitted (nothing registered) when any unit is
    committed already (see :mod:`hypermetric.catalog.ledger` for a retry's units).
    """
    unit_ids = [u.unit_id for u in units]
    if len(set(unit_ids)) != len(unit_ids):
        raise ValueError(f"run {run_id}: a flush lists a unit twice")
    inserted = unit_ids
    try:
        with db.session() as session:
            db.dialect.lock_snapshots(session)
            run = session.scalar(db.dialect.for_update(select(Run).where(Run.id == run_id)))
            run = fence(run, run_id, attempt)
            split = split_units(session, run, units)
            inserted = [u.unit_id for u in split.new]
            if split.done:
                raise UnitsAlreadyCommitted(run_id, split.done)
            result = _register(session, run, files, split, message)
            session.flush()
            return result
    except IntegrityError:
        # Another process committed one of these units between our check and our insert,
        # or (a bug, never a race) a file's path is registered already.
        with db.session() as session:
            done = _already(session, run_id, inserted)
        if done:
            raise UnitsAlreadyCommitted(run_id, done) from None
        paths = ", ".join(f.path for f in files)
        raise ConflictError(f"run {run_id}: a shard path is registered already ({paths})") from None


def _register(
    session: Session,
    run: Run,
    files: Sequence[ShardFile],
    split: LedgerSplit,
    message: str | None,
) -> CommitResult:
    now = utcnow()
    versions: dict[str, int] = {}
    shard_ids: dict[str, int] = {}
    # a retry's commit retracts rows from both datasets, also one it adds no file to
    changed = {f.dataset for f in files} | (set(DATASETS) if split.redo else set())
    for dataset in sorted(changed):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        version = DatasetVersion(
            dataset=dataset, kind="append", run_id=run.id, created_at=now, message=message
        )
        session.add(version)
        session.flush()
        versions[dataset] = version.id
    for file in files:
        shard = Shard(
            run_id=run.id,
            dataset=file.dataset,
            path=file.path,
            rows=file.rows,
            bytes=file.bytes,
            stats=file.stats or None,
            schema_fingerprint=file.schema_fingerprint,
            added_version_id=versions[file.dataset],
            created_at=now,
        )
        session.add(shard)
        session.flush()
        shard_ids[file.dataset] = shard.id
    record_units(session, run, split, shard_ids, versions, now)
    run.shard_count += len(files)
    run.heartbeat_at = now
    return CommitResult(version_ids=tuple(versions.values()), shard_ids=shard_ids)


def committed_unit_ids(db: Database, run_id: int) -> set[int]:
    """The units of a run that are in the ledger."""
    with db.session() as session:
        return set(session.scalars(select(UnitCommit.unit_id).where(UnitCommit.run_id == run_id)))


def ledger_totals(db: Database, run_id: int) -> UnitSummary:
    """A run's totals summed over its committed units (unit_id is their count)."""
    with db.session() as session:
        row = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(UnitCommit.examples), 0),
                func.coalesce(func.sum(UnitCommit.rows), 0),
                func.coalesce(func.sum(UnitCommit.calls), 0),
                func.coalesce(func.sum(UnitCommit.errors), 0),
                func.coalesce(func.sum(UnitCommit.failed_examples), 0),
            ).where(UnitCommit.run_id == run_id)
        ).one()
    units, examples, rows, calls, errors, failed = (int(v) for v in row)
    return UnitSummary(units, examples, rows, calls, errors, failed)


def latest_version_id(db: Database) -> int:
    """The newest dataset version id (0 when nothing was ever committed)."""
    with db.session() as session:
        return int(session.scalar(select(func.max(DatasetVersion.id))) or 0)


def live_shards(
    db: Database,
    dataset: str,
    *,
    as_of: int | None = None,
    run_ids: Sequence[int] | None = None,
) -> list[ShardRecord]:
    """The shards of ``dataset`` live at version ``as_of`` (default: now), oldest first.

    With ``run_ids``: the shards of those runs and the packed files holding rows of any of
    them (other runs' rows too: a reader filters on ``run_id``). Read as plain columns, not
    ORM objects: a query connection asks this for every dataset it shows.
    """
    table = Shard.__table__.c
    stmt = select(
        table.id,
        table.run_id,
        table.dataset,
        table.path,
        table.rows,
        table.bytes,
        table.schema_fingerprint,
        table.added_version_id,
        table.removed_version_id,
        table.stats,
    ).where(table.dataset == dataset)
    if as_of is None:
        stmt = stmt.where(table.removed_version_id.is_(None))
    else:
        stmt = stmt.where(
            table.added_version_id <= as_of,
            or_(table.removed_version_id.is_(None), table.removed_version_id > as_of),
        )
    with db.session() as session:
        if run_ids is None:
            rows = list(session.execute(stmt.order_by(table.id)))
        else:
            found: dict[int, Any] = {}
            wanted = sorted(set(run_ids))
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                packed = select(ShardRun.shard_id).where(ShardRun.run_id.in_(chunk))
                where = or_(table.run_id.in_(chunk), table.id.in_(packed))
                found.update((r.id, r) for r in session.execute(stmt.where(where)))
            rows = [found[k] for k in sorted(found)]
    return [ShardRecord(*tuple(r)) for r in rows]


def live_retractions(
    db: Database,
    dataset: str,
    *,
    as_of: int | None = None,
    run_ids: Sequence[int] | None = None,
) -> list[tuple[int, str | None, int]]:
    """``(run id, example id, attempt)`` of the retractions of ``dataset`` live at version
    ``as_of`` (default: now): rows of that run and example written by an attempt before
    ``attempt`` are not part of the dataset. One per example, the latest retraction's;
    example id None retracts the run's rows of every example (see
    :mod:`hypermetric.catalog.packing`)."""
    stmt = select(Retraction.run_id, Retraction.example_id, func.max(Retraction.attempt)).where(
        Retraction.dataset == dataset
    )
    if as_of is None:
        stmt = stmt.where(Retraction.removed_version_id.is_(None))
    else:
        stmt = stmt.where(
            Retraction.added_version_id <= as_of,
            or_(Retraction.removed_version_id.is_(None), Retraction.removed_version_id > as_of),
        )
    stmt = stmt.group_by(Retraction.run_id, Retraction.example_id)
    found: list[tuple[int, str | None, int]] = []
    with db.session() as session:
        if run_ids is None:
            return [(r, e, a) for r, e, a in session.execute(stmt)]
        wanted = sorted(set(run_ids))
        for start in range(0, len(wanted), 500):
            chunk = stmt.where(Retraction.run_id.in_(wanted[start : start + 500]))
            found.extend((r, e, a) for r, e, a in session.execute(chunk))
    return found


def list_versions(db: Database, *, limit: int | None = None) -> list[VersionRecord]:
    """Dataset versions, newest first."""
    stmt = select(DatasetVersion).order_by(DatasetVersion.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    with db.session() as session:
        return [version_record(r) for r in session.scalars(stmt)]


def registered_paths(db: Database) -> set[str]:
    """Every shard path the registry knows, live or removed."""
    with db.session() as session:
        return set(session.scalars(select(Shard.path)))
