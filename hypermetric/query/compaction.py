"""Compaction: pack the small shards of finished runs into few large files, sorted so that
scans prune.

The engine flushes many small shards; a scan over thousands of files is dominated by
opening them, and a query connection's cost grows with the files it lists. Compaction
rewrites the live shards smaller than half of ``target_rows`` — of runs that ended
(``success``, ``failed`` or ``canceled``), and earlier packed files still that small — into
files of about ``target_rows`` rows. A file may hold the rows of many runs: rows are
packed in the order evaluation, run, shard and each file is sorted by evaluation, run_id,
metric (or component), example and call, so DuckDB's row-group statistics skip what a
filter on them excludes.

Everything the catalog does by run keeps working on packed data (see
:mod:`hypermetric.catalog.packing`): a packed file lists its runs and their row counts,
reading one run reads only the files that hold its rows, a reprocess or a prune of a run
retracts its packed rows (row-level, like a retry's), and a retry's retractions apply to
packed rows as to any other.

Each batch of files is registered in one new version of kind ``compact`` per dataset, which
removes the shards merged into them; the files are written first and registered in one
transaction (a failure deletes them, a crash leaves unregistered orphans for ``clean``).
Older versions keep reading the old files (they stay until ``clean`` expires every version
that references them), so reading ``--as-of`` a version gives the same rows before and
after. Runs still committing are never touched; a run reprocessed or pruned meanwhile
makes the batch's commit fail cleanly (its written files are deleted), as does a
concurrent compaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from hypermetric.catalog.db import database
from hypermetric.catalog.maintenance import Rewrite, commit_rewrite
from hypermetric.catalog.packing import PackCandidate, packing_candidates
from hypermetric.catalog.records import ShardFile, ShardRecord
from hypermetric.catalog.shards import DATASETS
from hypermetric.config import Settings, get_settings
from hypermetric.errors import StorageError
from hypermetric.storage.files import ShardStore, store_for
from hypermetric.storage.schemas import DEFAULTS

__all__ = [
    "DEFAULT_TARGET_BYTES",
    "DEFAULT_TARGET_ROWS",
    "CompactionReport",
    "compact",
    "merge_shards",
    "plan_groups",
]

DEFAULT_TARGET_ROWS = 1_000_000
#: stored bytes a packed file holds at most (about): its rows are merged in memory
DEFAULT_TARGET_BYTES = 128 * 1024 * 1024

_SORT_KEYS = {
    "scores": ("evaluation", "run_id", "metric", "component", "example_id", "epoch", "call_index"),
    "calls": ("evaluation", "run_id", "component", "example_id", "epoch", "call_index"),
    "examples": ("evaluation", "run_id", "example_id"),
}

#: called with (groups done, groups in all) as compaction proceeds
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CompactionReport:
    """What compacting one dataset did (``version_id`` None: nothing to merge; with
    several batches, the last version made)."""

    dataset: str
    version_id: int | None
    shards_merged: int
    files_written: int
    rows: int
    bytes_before: int
    bytes_after: int
    #: every version made, one a batch
    version_ids: tuple[int, ...] = ()
    #: False when a deadline or a stop request left groups for a later pass
    complete: bool = True


def _owner(candidate: PackCandidate) -> tuple[int, int]:
    """What a candidate's rows belong to: its run, or (a packed file) the file itself."""
    shard = candidate.shard
    return (0, shard.run_id) if shard.run_id is not None else (1, shard.id)


def plan_groups(
    candidates: Sequence[PackCandidate],
    target_rows: int,
    target_bytes: int = DEFAULT_TARGET_BYTES,
) -> list[list[PackCandidate]]:
    """The candidates, in order, in groups of about ``target_rows`` rows and at most about
    ``target_bytes`` stored bytes (a group is merged in memory: calls with long prompts
    are large), cut between runs where a run fits whole (so one run's rows sit in one
    file: reading it opens one) and inside a run larger than that. Groups of one are
    dropped (nothing to gain)."""
    totals: dict[tuple[int, int], tuple[int, int]] = {}
    for candidate in candidates:
        rows, size = totals.get(_owner(candidate), (0, 0))
        totals[_owner(candidate)] = (rows + candidate.shard.rows, size + candidate.shard.bytes)
    groups: list[list[PackCandidate]] = []
    current: list[PackCandidate] = []
    rows = size = 0
    for candidate in candidates:
        owner = _owner(candidate)
        starts_run = not current or _owner(current[-1]) != owner
        more_rows, more_bytes = (
            totals[owner] if starts_run else (candidate.shard.rows, candidate.shard.bytes)
        )
        if current and (rows + more_rows > target_rows or size + more_bytes > target_bytes):
            groups.append(current)
            current, rows, size = [], 0, 0
        current.append(candidate)
        rows += candidate.shard.rows
        size += candidate.shard.bytes
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
    # a column older shards lack is NULL in their rows: the file holds its default, as
    # the views show it (a packed file with the canonical schema is read as it is)
    for name, value in DEFAULTS.get(dataset, {}).items():
        if name in table.column_names:
            index = table.schema.get_field_index(name)
            filled = pc.fill_null(table[name], pa.scalar(value, table.schema.field(name).type))
            table = table.set_column(index, table.schema.field(name), filled)
    keys = [(k, "ascending") for k in _SORT_KEYS[dataset] if k in table.column_names]
    return table.sort_by(keys) if keys else table


@dataclass(frozen=True)
class _Packed:
    file: ShardFile
    run_id: int | None
    runs: dict[int, int]


def _write_group(store: ShardStore, dataset: str, group: Sequence[PackCandidate]) -> _Packed:
    runs: dict[int, int] = {}
    for candidate in group:
        for run_id, rows in candidate.runs.items():
            runs[run_id] = runs.get(run_id, 0) + rows
    table = merge_shards(store, dataset, [c.shard for c in group])
    only = next(iter(runs)) if len(runs) == 1 else None
    file = store.write(dataset, only, table, "compact")
    return _Packed(file, only, {} if only is not None else runs)


def _commit_batch(
    settings: Settings,
    dataset: str,
    groups: Sequence[Sequence[PackCandidate]],
    tick: Iterator[None],
) -> tuple[int, list[ShardRecord], list[_Packed]]:
    """Write the files of ``groups`` and register them in one version; returns its id."""
    store = store_for(settings)
    written: list[_Packed] = []
    try:
        for group in groups:
            written.append(_write_group(store, dataset, group))
            next(tick)
        merged = [c.shard for g in groups for c in g]
        change = Rewrite(
            removed=tuple(s.id for s in merged),
            files=tuple(p.file for p in written),
            run_ids=tuple(p.run_id for p in written),
            runs=tuple(p.runs for p in written),
        )
        plural = "" if len(written) == 1 else "s"
        message = f"compacted {len(merged)} shards into {len(written)} file{plural}"
        db = database(settings)
        versions = commit_rewrite(db, {dataset: change}, kind="compact", message=message)
    except BaseException:
        for packed in written:  # never registered: nothing reads them
            store.delete(packed.file.path)
        raise
    return versions[dataset], merged, written


def _compact_dataset(
    settings: Settings,
    dataset: str,
    groups: list[list[PackCandidate]],
    tick: Iterator[None],
    batch_files: int,
    stop: Callable[[], bool],
) -> CompactionReport:
    versions: list[int] = []
    merged: list[ShardRecord] = []
    written: list[_Packed] = []
    complete = True
    for start in range(0, len(groups), batch_files):
        if start and stop():
            complete = False
            break
        version, shards, files = _commit_batch(
            settings, dataset, groups[start : start + batch_files], tick
        )
        versions.append(version)
        merged.extend(shards)
        written.extend(files)
    return CompactionReport(
        dataset=dataset,
        version_id=versions[-1] if versions else None,
        shards_merged=len(merged),
        files_written=len(written),
        rows=sum(p.file.rows for p in written),
        bytes_before=sum(s.bytes for s in merged),
        bytes_after=sum(p.file.bytes for p in written),
        version_ids=tuple(versions),
        complete=complete,
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
    batch_files: int | None = None,
    deadline: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[CompactionReport]:
    """Pack the small shards of finished runs (of ``evaluation``, or all) into large files.

    One new version of kind ``compact`` per dataset and batch of ``batch_files`` files (all
    in one batch by default). Past ``deadline`` (a ``time.monotonic()`` value) or once
    ``stop()`` is true, no new batch begins: the reports say ``complete=False`` and a later
    call goes on. Safe while runs commit.
    """
    if target_rows < 2:
        raise ValueError(f"target_rows must be at least 2, not {target_rows}")
    if batch_files is not None and batch_files < 1:
        raise ValueError(f"batch_files must be at least 1, not {batch_files}")
    settings = settings or get_settings()
    db = database(settings)

    def should_stop() -> bool:
        late = deadline is not None and time.monotonic() >= deadline
        return late or (stop is not None and stop())

    plans: dict[str, list[list[PackCandidate]]] = {}
    for dataset in datasets:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        candidates = packing_candidates(
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
        if reports and should_stop():
            reports.append(CompactionReport(dataset, None, 0, 0, 0, 0, 0, complete=False))
            continue
        size = batch_files or len(groups)
        reports.append(_compact_dataset(settings, dataset, groups, tick, size, should_stop))
    return reports
