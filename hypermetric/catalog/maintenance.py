"""Storage hygiene, the catalog side: compaction and prune commits, version expiry, and
which shards no readable version needs any more.

A shard is *referenced* by every dataset version ``V`` with
``added_version_id <= V < removed_version_id`` (a shard never removed is referenced by
every version from the one that added it on, and by "now"). Reading ``--as-of V`` needs
exactly the shards referenced by ``V``, so a shard may go only once every version that
references it has expired. The newest version never expires.

Every commit here creates its versions under ``dialect.lock_snapshots`` so version ids
follow commit order, and checks inside that transaction that the shards it removes are
still live (a concurrent compaction or prune makes it fail with ConflictError, nothing
half-done).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import (
    DatasetVersion,
    Evaluation,
    Retraction,
    Run,
    Shard,
    ShardRun,
)
from hypermetric.catalog.packing import (
    ALL_ATTEMPTS,
    COMPACTABLE_STATES,
    packed_datasets,
    prunable_packed,
    retract_run,
)
from hypermetric.catalog.records import RunRecord, ShardFile, ShardRecord
from hypermetric.catalog.runs import run_record
from hypermetric.catalog.shards import DATASETS, shard_record
from hypermetric.catalog.types import utcnow
from hypermetric.errors import ConflictError

__all__ = [
    "COMPACTABLE_STATES",
    "Rewrite",
    "commit_rewrite",
    "deletable_shards",
    "expirable_versions",
    "expire_versions",
    "forget_retractions",
    "forget_shards",
    "prunable_runs",
    "prune_rewrites",
]


@dataclass(frozen=True)
class Rewrite:
    """One dataset's change in a rewrite commit: shards to remove and files to add.

    ``run_ids[i]`` is the run whose rows ``files[i]`` holds, or None for a file that packs
    several runs; ``runs[i]`` then gives its rows per run (``shard_runs``), so everything
    the catalog does by run id (reading a run, retracting it for a reprocess, pruning it)
    stays exact after a rewrite (see :mod:`hypermetric.catalog.packing`).
    """

    removed: tuple[int, ...]
    files: tuple[ShardFile, ...] = ()
    run_ids: tuple[int | None, ...] = field(default=())
    runs: tuple[dict[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.run_ids) != len(self.files):
            raise ValueError("a Rewrite needs one run id per file")
        if self.runs and len(self.runs) != len(self.files):
            raise ValueError("a Rewrite needs the runs of every file, or of none")
        for i, run_id in enumerate(self.run_ids):
            packed = self.runs[i] if self.runs else {}
            if run_id is None and sum(packed.values()) != self.files[i].rows:
                raise ValueError(f"packed file {self.files[i].path} needs its rows per run")


def _check_live(session: Session, db: Database, shard_ids: Sequence[int]) -> list[Shard]:
    rows: list[Shard] = []
    for start in range(0, len(shard_ids), 500):
        chunk = list(shard_ids[start : start + 500])
        stmt = db.dialect.for_update(select(Shard).where(Shard.id.in_(chunk)))
        rows.extend(session.scalars(stmt))
    gone = set(shard_ids) - {r.id for r in rows if r.removed_version_id is None}
    if gone:
        raise ConflictError(
            f"shards {sorted(gone)[:10]} changed while this was prepared "
            "(another compact or clean ran); run the command again"
        )
    return rows


def _add_files(
    session: Session, dataset: str, version_id: int, change: Rewrite, now: datetime
) -> None:
    for i, (file, run_id) in enumerate(zip(change.files, change.run_ids, strict=True)):
        if file.dataset != dataset:
            raise ValueError(f"file {file.path} is of {file.dataset}, not {dataset}")
        shard = Shard(
            run_id=run_id,
            dataset=dataset,
            path=file.path,
            rows=file.rows,
            bytes=file.bytes,
            stats=file.stats or None,
            schema_fingerprint=file.schema_fingerprint,
            added_version_id=version_id,
            created_at=now,
        )
        session.add(shard)
        if run_id is None:
            session.flush()
            session.add_all(
                ShardRun(shard_id=shard.id, run_id=r, rows=n) for r, n in change.runs[i].items()
            )


def commit_rewrite(
    db: Database,
    changes: Mapping[str, Rewrite],
    *,
    kind: str,
    message: str | None = None,
    delete_runs: Iterable[int] = (),
) -> dict[str, int]:
    """Replace shards in one transaction: one new version per dataset that changes.

    Removes ``changes[d].removed`` (they must still be live) and registers
    ``changes[d].files`` in a version of ``kind`` (``compact``, ``prune``), then deletes the
    runs ``delete_runs`` (their ledger goes with them; removed shards and versions that
    still mention them keep their rows, with ``run_id`` NULL). Returns the version id per
    dataset.
    """
    now = utcnow()
    versions: dict[str, int] = {}
    with db.session() as session:
        db.dialect.lock_snapshots(session)
        for dataset, change in changes.items():
            if dataset not in DATASETS:
                raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
            if not change.removed and not change.files:
                continue
            rows = _check_live(session, db, change.removed)
            version = DatasetVersion(dataset=dataset, kind=kind, created_at=now, message=message)
            session.add(version)
            session.flush()
            for row in rows:
                if row.dataset != dataset:
                    raise ValueError(f"shard {row.id} is of {row.dataset}, not {dataset}")
                row.removed_version_id = version.id
            _add_files(session, dataset, version.id, change, now)
            versions[dataset] = version.id
        doomed = sorted(set(delete_runs))
        _retire_retractions(session, doomed, versions, kind, message, now)
        for start in range(0, len(doomed), 500):
            session.execute(delete(Run).where(Run.id.in_(doomed[start : start + 500])))
        session.flush()
    return versions


def _retire_retractions(
    session: Session,
    run_ids: Sequence[int],
    versions: dict[str, int],
    kind: str,
    message: str | None,
    now: datetime,
) -> None:
    """Deleted runs' retractions leave the datasets with their shards (in the same version);
    their rows in packed files that stay live are retracted whole instead."""

    def version_of(dataset: str) -> int:
        if dataset not in versions:
            version = DatasetVersion(dataset=dataset, kind=kind, created_at=now, message=message)
            session.add(version)
            session.flush()
            versions[dataset] = version.id
        return versions[dataset]

    session.flush()
    for start in range(0, len(run_ids), 500):
        stmt = select(Retraction).where(
            Retraction.run_id.in_(run_ids[start : start + 500]),
            Retraction.removed_version_id.is_(None),
        )
        for retraction in session.scalars(stmt):
            retraction.removed_version_id = version_of(retraction.dataset)
    for run_id in run_ids:
        for dataset in sorted(packed_datasets(session, run_id)):
            retract_run(session, dataset, run_id, ALL_ATTEMPTS, version_of(dataset))


def _newest_version_id(session: Session) -> int:
    return int(session.scalar(select(func.max(DatasetVersion.id))) or 0)


def expirable_versions(db: Database, before: datetime) -> list[int]:
    """Live versions created before ``before``, except the newest version of all."""
    with db.session() as session:
        newest = _newest_version_id(session)
        stmt = select(DatasetVersion.id).where(
            DatasetVersion.expired.is_(False),
            DatasetVersion.created_at < before,
            DatasetVersion.id < newest,
        )
        return sorted(session.scalars(stmt))


def expire_versions(db: Database, before: datetime) -> list[int]:
    """Mark versions created before ``before`` expired (never the newest); returns their ids."""
    with db.session() as session:
        db.dialect.lock_snapshots(session)
        newest = _newest_version_id(session)
        where = (
            DatasetVersion.expired.is_(False),
            DatasetVersion.created_at < before,
            DatasetVersion.id < newest,
        )
        ids = sorted(session.scalars(select(DatasetVersion.id).where(*where)))
        if ids:
            session.execute(update(DatasetVersion).where(*where).values(expired=True))
        return ids


def _unreferenced(
    expire_before: datetime | None = None, newest: int = 0, model: Any = Shard
) -> Select[Any]:
    """Removed shards (or retractions) that no readable version references."""
    readable = select(DatasetVersion.id).where(
        DatasetVersion.expired.is_(False),
        DatasetVersion.id >= model.added_version_id,
        DatasetVersion.id < model.removed_version_id,
    )
    if expire_before is not None:  # as if expire_versions(expire_before) had run
        readable = readable.where(
            or_(DatasetVersion.created_at >= expire_before, DatasetVersion.id >= newest)
        )
    return select(model).where(model.removed_version_id.is_not(None), ~exists(readable))


def deletable_shards(db: Database, *, expire_before: datetime | None = None) -> list[ShardRecord]:
    """Removed shards no readable version references.

    With ``expire_before``: as if the versions :func:`expire_versions` would expire were
    expired already (for a dry run).
    """
    with db.session() as session:
        stmt = _unreferenced(expire_before, _newest_version_id(session)).order_by(Shard.id)
        return [shard_record(r) for r in session.scalars(stmt)]


def forget_shards(db: Database, shard_ids: Sequence[int]) -> list[ShardRecord]:
    """Delete the registry rows of these shards if still unreferenced; returns those deleted.

    Delete the files after this commits: a crash in between leaves orphan files, which
    ``clean`` sweeps, never a registered shard without its file.
    """
    forgotten: list[ShardRecord] = []
    with db.session() as session:
        db.dialect.lock_snapshots(session)
        for start in range(0, len(shard_ids), 500):
            chunk = list(shard_ids[start : start + 500])
            stmt = _unreferenced().where(Shard.id.in_(chunk)).order_by(Shard.id)
            rows = list(session.scalars(stmt))
            forgotten.extend(shard_record(r) for r in rows)
            if rows:
                session.execute(delete(Shard).where(Shard.id.in_([r.id for r in rows])))
    return forgotten


def forget_retractions(db: Database) -> int:
    """Delete the retractions no readable version needs any more; returns how many."""
    with db.session() as session:
        db.dialect.lock_snapshots(session)
        ids = list(
            session.scalars(_unreferenced(model=Retraction).with_only_columns(Retraction.id))
        )
        for start in range(0, len(ids), 500):
            session.execute(delete(Retraction).where(Retraction.id.in_(ids[start : start + 500])))
        return len(ids)


def prunable_runs(db: Database, before: datetime) -> list[RunRecord]:
    """Finished runs that ended before ``before``, oldest first."""
    stmt = (
        select(Run, Evaluation.name)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(Run.state.in_(("success", "failed", "canceled")), Run.ended_at < before)
        .order_by(Run.ended_at, Run.id)
    )
    with db.session() as session:
        return [run_record(row, name) for row, name in session.execute(stmt)]


def prune_rewrites(db: Database, run_ids: Sequence[int]) -> dict[str, Rewrite]:
    """What pruning ``run_ids`` removes from each dataset: their own live shards, and the
    packed files that hold rows of pruned runs only (the rows they leave in other packed
    files are retracted by :func:`commit_rewrite`)."""
    doomed = sorted(set(run_ids))
    out: dict[str, Rewrite] = {}
    with db.session() as session:
        for dataset in DATASETS:
            removed: list[int] = []
            for start in range(0, len(doomed), 500):
                stmt = select(Shard.id).where(
                    Shard.dataset == dataset,
                    Shard.removed_version_id.is_(None),
                    Shard.run_id.in_(doomed[start : start + 500]),
                )
                removed.extend(session.scalars(stmt))
            removed.extend(prunable_packed(session, dataset, doomed))
            out[dataset] = Rewrite(tuple(sorted(removed)))
    return out
