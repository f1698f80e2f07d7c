"""The data of ``bench.py query``: runs committed as the engine commits them, their floors,
and a history grown to 10,000 runs by simulation.

Real runs go through the catalog: created, started, each shard written and committed on its
own (one dataset version a flush, as the engine's evaluators do), finished. The floor of
each figure is the same rows in one Parquet file, written as they are generated.

The simulated runs are rows in the metadata DB (runs, one version and one shard a flush)
whose shard files are hard links to the real runs' shards, so every registered path is a
real Parquet file of 1,000 rows a shard. Their packing is simulated too, in bulk: the pass
would write the same files as it wrote for the real runs, so the packed files registered for
them are hard links to those (the rows inside carry the real runs' ids; only timing is read
from them).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, insert, select, update

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.models import DatasetVersion, Run, Shard, ShardRun
from hypermetric.catalog.records import ShardRecord, UnitSummary
from hypermetric.catalog.runs import create_run, finish_run, start_run
from hypermetric.catalog.shards import commit_units, live_shards
from hypermetric.storage.files import ShardStore
from hypermetric.storage.schemas import SCORES_SCHEMA

__all__ = ["EVALUATIONS", "Floor", "commit_run", "scores", "simulate_packing", "simulate_runs"]

METRICS = ("exact_match", "token_f1", "rouge_l", "judge.score")
EVALUATIONS = tuple(f"eval-{i}" for i in range(5))
NOW = np.datetime64("2026-11-01T02:00:00", "us")


def scores(run_id: int, evaluation: str, n: int, rng: np.random.Generator) -> pa.Table:
    """``n`` score rows of one run: examples x metrics, values around 0.6."""
    examples = n // len(METRICS)
    metric = np.tile(np.array(METRICS, dtype=object), examples)
    example_ids = np.char.add("ex", np.repeat(np.arange(examples), len(METRICS)).astype(str))
    values = np.clip(rng.normal(0.6, 0.2, examples * len(METRICS)), 0.0, 1.0)
    total = examples * len(METRICS)
    columns: dict[str, Any] = {
        "run_id": np.full(total, run_id, dtype=np.int64),
        "evaluation": pa.array([evaluation] * total, pa.string()),
        "version": pa.array([f"v{run_id % 7}"] * total, pa.string()),
        "example_id": pa.array(example_ids.astype(object), pa.string()),
        "component": pa.array(["generate"] * total, pa.string()),
        "call_index": np.zeros(total, dtype=np.int32),
        "metric": pa.array(metric, pa.string()),
        "value": values,
        "error": pa.nulls(total, pa.string()),
        "run_attempt": np.ones(total, dtype=np.int32),
        "created_at": pa.array(np.full(total, NOW), pa.timestamp("us", tz="UTC")),
    }
    return pa.Table.from_pydict(columns, schema=SCORES_SCHEMA)


def commit_run(
    db: Database, store: ShardStore, evaluation: str, table: pa.Table, shards: int
) -> tuple[int, pa.Table]:
    """One run through the catalog, a commit (and a version) a shard; returns its id and
    its rows with that id."""
    ev = upsert_evaluation(db, evaluation)
    run = create_run(db, ev.id, run_type="manual", version_label="bench")
    start_run(db, run.id, owner="bench", pid=os.getpid(), host="bench")
    table = table.set_column(0, "run_id", pa.array([run.id] * table.num_rows, pa.int64()))
    bounds = np.linspace(0, table.num_rows, shards + 1).astype(int)
    for unit, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        file = store.write("scores", run.id, table.slice(lo, hi - lo), f"u{unit}")
        rows = int(hi - lo)
        commit_units(db, run.id, [file], [UnitSummary(unit, rows, rows, 0, 0)], attempt=1)
    finish_run(db, run.id, "success")
    return run.id, table


class Floor:
    """One Parquet file of the same rows, written as they are generated."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = pq.ParquetWriter(path, SCORES_SCHEMA, compression="zstd")
        self.pending: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= 1_000_000:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=256 * 1024)
        self.pending, self.rows = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _chunks(items: Sequence[Any], size: int = 5000) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _link(store: ShardStore, source: str, target: str) -> None:
    full = Path(store.full_path(target))
    full.parent.mkdir(parents=True, exist_ok=True)
    os.link(store.full_path(source), full)


def simulate_runs(
    db: Database, store: ShardStore, sources: Sequence[ShardRecord], count: int, shards: int
) -> list[int]:
    """``count`` finished runs more, in bulk: each with ``shards`` versions and shards whose
    files are hard links to ``sources`` (the real runs' small shards). Returns their ids."""
    with db.session() as session:
        evaluations = list(session.scalars(select(Run.evaluation_id).distinct()))
        first = int(session.scalar(select(func.max(Run.id))) or 0) + 1
    ids = list(range(first, first + count))
    start = datetime(2020, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    run_rows = [
        {
            "id": rid,
            "evaluation_id": evaluations[i % len(evaluations)],
            "run_key": f"sim-{rid}",
            "logical_date": start + timedelta(minutes=i),
            "run_type": "scheduled",
            "state": "success",
            "version_label": "bench",
            "attempt": 1,
            "queued_at": now,
            "started_at": now,
            "ended_at": now,
            "rows_count": sum(s.rows for s in sources[:shards]),
            "shard_count": shards,
            "params": {},
        }
        for i, rid in enumerate(ids)
    ]
    with db.session() as session:
        for chunk in _chunks(run_rows):
            session.execute(insert(Run), list(chunk))
        first_version = int(session.scalar(select(func.max(DatasetVersion.id))) or 0) + 1
    versions, shard_rows = [], []
    pool = itertools.cycle(sources)
    for n, (rid, k) in enumerate(itertools.product(ids, range(shards))):
        source = next(pool)
        path = f"scores/run_id={rid}/sim-{k}.parquet"
        _link(store, source.path, path)
        version_id = first_version + n
        versions.append(
            {
                "id": version_id,
                "dataset": "scores",
                "kind": "append",
                "run_id": rid,
                "created_at": now,
                "expired": False,
            }
        )
        shard_rows.append(
            {
                "run_id": rid,
                "dataset": "scores",
                "path": path,
                "rows": source.rows,
                "bytes": source.bytes,
                "schema_fingerprint": source.schema_fingerprint,
                "added_version_id": version_id,
                "created_at": now,
            }
        )
    with db.session() as session:
        for chunk in _chunks(versions):
            session.execute(insert(DatasetVersion), list(chunk))
        for chunk in _chunks(shard_rows):
            session.execute(insert(Shard), list(chunk))
    return ids


def simulate_packing(db: Database, store: ShardStore, run_ids: Sequence[int], per_file: int) -> int:
    """Register, in bulk, what the pass does to the simulated runs: their small shards
    removed and packed files of ``per_file`` runs each (hard links to the real packed
    files) with their runs listed, a version a file. Returns the packed files made."""
    models = [s for s in live_shards(db, "scores") if s.run_id is None]
    if not models:
        raise RuntimeError("simulate_packing needs the real runs packed first")
    now = datetime.now(UTC)
    files = 0
    started = time.perf_counter()
    with db.session() as session:
        for n, group in enumerate(_chunks(list(run_ids), per_file)):
            model: ShardRecord = models[n % len(models)]
            version = DatasetVersion(
                dataset="scores", kind="compact", created_at=now, message="simulated packing"
            )
            session.add(version)
            session.flush()
            session.execute(
                update(Shard)
                .where(Shard.run_id.in_(list(group)), Shard.removed_version_id.is_(None))
                .values(removed_version_id=version.id)
            )
            path = f"scores/compacted/sim-{n}.parquet"
            _link(store, model.path, path)
            shard = Shard(
                run_id=None,
                dataset="scores",
                path=path,
                rows=model.rows,
                bytes=model.bytes,
                schema_fingerprint=model.schema_fingerprint,
                added_version_id=version.id,
                created_at=now,
            )
            session.add(shard)
            session.flush()
            rows = model.rows // len(group)
            session.execute(
                insert(ShardRun), [{"shard_id": shard.id, "run_id": r, "rows": rows} for r in group]
            )
            files += 1
    print(f"  simulated packing: {files} files in {time.perf_counter() - started:.1f}s", flush=True)
    return files
