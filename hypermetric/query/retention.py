"""``clean``: expire old versions, delete what no readable version needs, prune old runs.

In this order:

1. **Expire** every dataset version created before ``before`` except the newest one:
   reading ``--as-of`` it is an error from then on.
2. **Prune runs** (only when asked): finished runs that ended before ``before`` are
   deleted with their ledger, and one new version of kind ``prune`` per dataset removes
   their shards. Versions still readable keep showing the pruned rows until they expire
   too, so the pruned files are freed by a later ``clean`` whose date is past the prune.
3. **Delete unreferenced shards**: removed shards that no unexpired version references
   (see :mod:`hypermetric.catalog.maintenance`): their registry rows first, then their
   files, so a crash in between leaves orphans, never a registered shard without a file.
   Retractions no unexpired version references are deleted too.
4. **Delete orphans**: files under the store's dataset folders and ``_tmp/`` that the
   registry does not know and that are older than ``grace`` (default one hour, so a
   shard written but not yet committed is never taken).

Nothing a live version references is ever deleted. ``dry_run`` reports the same lists
without changing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypermetric.catalog.db import Database, database
from hypermetric.catalog.maintenance import (
    commit_rewrite,
    deletable_shards,
    expirable_versions,
    expire_versions,
    forget_retractions,
    forget_shards,
    prunable_runs,
    prune_rewrites,
)
from hypermetric.catalog.shards import DATASETS, registered_paths
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings, get_settings
from hypermetric.storage.files import TMP_DIR, ShardStore, store_for

__all__ = ["DEFAULT_GRACE", "CleanReport", "clean", "orphan_files"]

DEFAULT_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class CleanReport:
    """What ``clean`` did (or, with ``dry_run``, would do)."""

    dry_run: bool
    expired_versions: tuple[int, ...]
    pruned_runs: tuple[int, ...]
    deleted_shards: tuple[str, ...]
    orphans: tuple[str, ...]
    bytes_freed: int


def orphan_files(
    store: ShardStore, registered: set[str], cutoff: datetime
) -> list[tuple[str, int]]:
    """(path, size) of unregistered files last modified before ``cutoff``.

    Only the store's own files count: Parquet files under a dataset folder, and anything
    under ``_tmp/``.
    """
    found: list[tuple[str, int]] = []
    for file in store.files():
        top = file.path.split("/", 1)[0]
        ours = top == TMP_DIR or (top in DATASETS and file.path.endswith(".parquet"))
        if not ours or file.path in registered:
            continue
        if file.mtime is not None and file.mtime < cutoff:
            found.append((file.path, file.size))
    return sorted(found)


def _prune(db: Database, run_ids: Sequence[int]) -> None:
    message = f"pruned {len(run_ids)} runs"
    changes = prune_rewrites(db, run_ids)
    commit_rewrite(db, changes, kind="prune", message=message, delete_runs=run_ids)


def _dry_run(
    db: Database, store: ShardStore, before: datetime, cutoff: datetime, runs: list[int]
) -> CleanReport:
    doomed = deletable_shards(db, expire_before=before)
    orphans = orphan_files(store, registered_paths(db), cutoff)
    return CleanReport(
        dry_run=True,
        expired_versions=tuple(expirable_versions(db, before)),
        pruned_runs=tuple(runs),
        deleted_shards=tuple(s.path for s in doomed),
        orphans=tuple(p for p, _ in orphans),
        bytes_freed=sum(s.bytes for s in doomed) + sum(size for _, size in orphans),
    )


def clean(
    *,
    before: datetime,
    dry_run: bool = False,
    prune_runs: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> CleanReport:
    """Expire versions older than ``before``, delete what nothing readable needs.

    ``prune_runs`` also deletes finished runs that ended before ``before``; ``grace``
    protects young unregistered files; ``now`` is the clock (tests). See the module
    docstring for the order and the guarantees.
    """
    if before.tzinfo is None:
        raise ValueError("before must be a timezone-aware datetime")
    settings = settings or get_settings()
    db = database(settings)
    store = store_for(settings)
    cutoff = (now or utcnow()) - grace
    runs = [r.id for r in prunable_runs(db, before)] if prune_runs else []
    if dry_run:
        return _dry_run(db, store, before, cutoff, runs)
    expired = expire_versions(db, before)
    if runs:
        _prune(db, runs)
    forgotten = forget_shards(db, [s.id for s in deletable_shards(db)])
    forget_retractions(db)
    for shard in forgotten:
        store.delete(shard.path)
    orphans = orphan_files(store, registered_paths(db), cutoff)
    for path, _ in orphans:
        store.delete(path)
    freed = sum(s.bytes for s in forgotten) + sum(size for _, size in orphans)
    return CleanReport(
        dry_run=False,
        expired_versions=tuple(expired),
        pruned_runs=tuple(runs),
        deleted_shards=tuple(s.path for s in forgotten),
        orphans=tuple(p for p, _ in orphans),
        bytes_freed=freed,
    )
