"""Compaction: merge the small shards of each finished run into fewer, larger, sorted files.

The engine flushes many small shards; a scan over thousands of files is dominated by
opening them. Compaction rewrites the live shards smaller than half of ``target_rows`` of
runs that ended (``success``, ``failed`` or ``canceled``) into files of up to about
``target_rows`` rows, sorted by component, metric and example so scans that filter on them
skip row groups.

A file never mixes runs. Everything the catalog does by run id keeps working on compacted
data: reading one run, retracting a run's shards when a backfill reprocesses it, pruning
it. (Files per run rather than across runs cost nothing measurable here: DuckDB scans a
thousand 10k-row files as fast as ten 1M-row ones.)

All files of one dataset are registered in one new version of kind ``compact`` that
removes the merged shards. Older versions keep reading the old files (they stay until
``clean`` expires every version that references them), so reading ``--as-of`` a version
gives the same rows before and after. Runs still committing are never touched; a run
resumed or reprocessed meanwhile only adds shards or makes the commit fail cleanly (its
written files are deleted), as does a concurrent compaction.
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
    "scores": ("component", "metric", "example_id", "call_index"),
    "calls": ("component", "example_id", "call_index"),
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
    """Each run's shards in groups of about ``target_rows`` rows; groups of one are dropped."""
    groups: list[list[ShardRecord]] = []
    current: list[ShardRecord] = []
    rows = 0
    for shard in shards:
        if current and (shard.run_id != current[0].run_id or rows >= target_rows):
            groups.append(current)
            current, rows = [], 0
        current.append(shard)
        rows += shard.rows
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


def _write_group(store: ShardStore, dataset: str, group: Sequence[ShardRecord]) -> ShardFile:
    return store.write(dataset, group[0].run_id, merge_shards(store, dataset, group), "compact")


def _compact_dataset(
    settings: Settings,
    dataset: str,
    groups: list[list[ShardRecord]],
    tick: Iterator[None],
) -> CompactionReport:
    store = store_for(settings)
    files: list[ShardFile] = []
    try:
        for group in groups:
            files.append(_write_group(store, dataset, group))
            next(tick)
        merged = [s for g in groups for s in g]
        owners = tuple(g[0].run_id for g in groups if g[0].run_id is not None)
        change = Rewrite(tuple(s.id for s in merged), tuple(files), owners)
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
    """Merge the small shards of each finished run (of ``evaluation``, or all).

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
