"""Compaction: merge the small shards of finished runs into fewer, larger, sorted files.

The engine flushes many small shards; a scan over thousands of files is dominated by
opening them. Compaction rewrites the live shards smaller than half of ``target_rows`` of
runs that ended for good (``success`` or ``canceled``; a failed run may be resumed) into
files of about ``target_rows`` rows, sorted by run, component, metric and example, so a
run's rows sit together and scans filtered by run skip whole row groups.

All files of one dataset are registered in one new version of kind ``compact`` that
removes the merged shards. Older versions keep reading the old files (they stay until
``clean`` expires every version that references them), so reading ``--as-of`` a version
gives the same rows before and after. Runs still committing are never touched, and a
concurrent compaction makes the commit fail cleanly (its written files are deleted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from hypermetric.catalog.db import database
from hypermetric.catalog.maintenance import Rewrite, commit_rewrite, compaction_candidates
from hypermetric.catalog.records import ShardFile, ShardRecord
from hypermetric.catalog.shards import DATASETS
from hypermetric.config import Settings, get_settings
from hypermetric.errors import StorageError
from hypermetric.storage.files import ShardStore, store_for

__all__ = ["DEFAULT_TARGET_ROWS", "CompactionReport", "compact", "merge_shards", "plan_groups"]

DEFAULT_TARGET_ROWS = 1_000_000

_SORT_KEYS = {
    "scores": ("run_id", "component", "metric", "example_id", "call_index"),
    "calls": ("run_id", "component", "example_id", "call_index"),
}

#: called with (groups done, groups in all) as compaction proceeds
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CompactionReport:
    """What compacting one dataset did (``version_id`` None: nothing to merge)."""

    dataset: str
    version_id: int | None
    shards_merged: int
    files_written: int
    rows: int
    bytes_before: int
    bytes_after: int


def plan_groups(shards: Sequence[ShardRecord], target_rows: int) -> list[list[ShardRecord]]:
    """Consecutive shards grouped to about ``target_rows`` rows; groups of one are dropped."""
    groups: list[list[ShardRecord]] = []
    current: list[ShardRecord] = []
    rows = 0
    for shard in shards:
        current.append(shard)
        rows += shard.rows
        if rows >= target_rows:
            groups.append(current)
            current, rows = [], 0
    if current:
        groups.append(current)
    return [g for g in groups if len(g) > 1]


def merge_shards(store: ShardStore, dataset: str, group: Sequence[ShardRecord]) -> pa.Table:
    """The rows of ``group`` as one table, columns reconciled by name, sorted for scans."""
    try:
        table = pa.concat_tables([store.read(s.path) for s in group], promote_options="permissive")
    except pa.ArrowException as exc:
        raise StorageError(
            f"shards {[s.id for s in group][:5]}... have columns that cannot be merged "
            f"({str(exc).splitlines()[0]}); compact one evaluation at a time with --evaluation"
        ) from exc
    expected = sum(s.rows for s in group)
    if table.num_rows != expected:
        raise StorageError(
            f"shards {[s.id for s in group][:5]}... hold {table.num_rows} rows, the registry "
            f"says {expected}; leave them as they are and check the store"
        )
    keys = [(k, "ascending") for k in _SORT_KEYS[dataset] if k in table.column_names]
    return table.sort_by(keys) if keys else table


def _write_group(
    store: ShardStore, dataset: str, group: Sequence[ShardRecord]
) -> tuple[ShardFile, tuple[int, ...]]:
    run_ids = tuple(sorted({s.run_id for s in group if s.run_id is not None}))
    table = merge_shards(store, dataset, group)
    owner = run_ids[0] if len(run_ids) == 1 else None
    return store.write(dataset, owner, table, "compact"), run_ids


def _compact_dataset(
    settings: Settings,
    dataset: str,
    groups: list[list[ShardRecord]],
    tick: Iterator[None],
) -> CompactionReport:
    store = store_for(settings)
    files: list[ShardFile] = []
    owners: list[tuple[int, ...]] = []
    try:
        for group in groups:
            file, run_ids = _write_group(store, dataset, group)
            files.append(file)
            owners.append(run_ids)
            next(tick)
        merged = [s for g in groups for s in g]
        change = Rewrite(tuple(s.id for s in merged), tuple(files), tuple(owners))
        message = f"compacted {len(merged)} shards into {len(files)} files"
        db = database(settings)
        versions = commit_rewrite(db, {dataset: change}, kind="compact", message=message)
    except BaseException:
        for file in files:  # never registered: nothing reads them
            store.delete(file.path)
        raise
    return CompactionReport(
        dataset=dataset,
        version_id=versions.get(dataset),
        shards_merged=len(merged),
        files_written=len(files),
        rows=sum(f.rows for f in files),
        bytes_before=sum(s.bytes for s in merged),
        bytes_after=sum(f.bytes for f in files),
    )


def _ticker(total: int, progress: Progress | None) -> Iterator[None]:
    done = 0
    while True:
        if progress is not None:
            progress(done, total)
        yield
        done += 1


def compact(
    settings: Settings | None = None,
    *,
    evaluation: str | None = None,
    datasets: Sequence[str] = DATASETS,
    target_rows: int = DEFAULT_TARGET_ROWS,
    progress: Progress | None = None,
) -> list[CompactionReport]:
    """Merge small shards of finished runs (of ``evaluation``, or all) into larger files.

    One new version of kind ``compact`` per dataset that changed. Safe while runs commit.
    """
    if target_rows < 2:
        raise ValueError(f"target_rows must be at least 2, not {target_rows}")
    settings = settings or get_settings()
    db = database(settings)
    plans: dict[str, list[list[ShardRecord]]] = {}
    for dataset in datasets:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        candidates = compaction_candidates(
            db, dataset, max_rows=max(2, target_rows // 2), evaluation=evaluation
        )
        plans[dataset] = plan_groups(candidates, target_rows)
    tick = _ticker(sum(len(g) for g in plans.values()), progress)
    next(tick)
    reports: list[CompactionReport] = []
    for dataset, groups in plans.items():
        if not groups:
            reports.append(CompactionReport(dataset, None, 0, 0, 0, 0, 0))
            continue
        reports.append(_compact_dataset(settings, dataset, groups, tick))
    return reports
