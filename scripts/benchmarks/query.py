"""SQL over history before/after compaction, and compare of two 1M-score runs, beside a floor.

The data: ``--runs`` runs x ``--scores`` scores committed as the engine flushes them
(``--shards`` small shards per run), plus two runs of ``--compare-scores`` scores each, in
a temporary HYPERMETRIC_HOME on SQLite. The floor of each figure is the same query run by
DuckDB directly on one Parquet file holding the same rows. Every timing is the best of
``--repeat``, and includes opening the connection (reading the registry) unless it says
"query only".
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hypermetric.catalog.db import Database, database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.records import UnitSummary
from hypermetric.catalog.runs import create_run, finish_run, start_run
from hypermetric.catalog.shards import commit_units
from hypermetric.config import Settings, load_settings, reset_settings
from hypermetric.storage.files import ShardStore, store_for
from hypermetric.storage.schemas import SCORES_SCHEMA

GROUP_BY = "SELECT evaluation, metric, avg(value) FROM {} GROUP BY ALL"
METRICS = ("exact_match", "token_f1", "rouge_l", "judge.score")
EVALUATIONS = tuple(f"eval-{i}" for i in range(5))
NOW = np.datetime64("2026-11-01T02:00:00", "us")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench.py query``."""
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--scores", type=int, default=10_000, help="scores per run")
    parser.add_argument("--shards", type=int, default=10, help="shards per run")
    parser.add_argument("--compare-scores", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")


def _scores(run_id: int, evaluation: str, n: int, rng: np.random.Generator) -> pa.Table:
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


def _commit_run(
    db: Database, store: ShardStore, evaluation: str, table: pa.Table, shards: int
) -> int:
    """One run through the catalog: created, started, its shards committed, finished."""
    ev = upsert_evaluation(db, evaluation)
    run = create_run(db, ev.id, run_type="manual", version_label="bench")
    start_run(db, run.id, owner="bench", pid=os.getpid(), host="bench")
    table = table.set_column(0, "run_id", pa.array([run.id] * table.num_rows, pa.int64()))
    bounds = np.linspace(0, table.num_rows, shards + 1).astype(int)
    files, units = [], []
    for unit, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        files.append(store.write("scores", run.id, table.slice(lo, hi - lo), f"u{unit}"))
        units.append(UnitSummary(unit, int(hi - lo), int(hi - lo), 0, 0))
    commit_units(
        db, run.id, files, units, attempt=1
    )  # one transaction per run, one version per shard
    finish_run(db, run.id, "success")
    return run.id


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best_pair(
    repeat: int, floor_fn: Callable[[], object], ours_fn: Callable[[], object]
) -> tuple[float, float]:
    """Best of ``repeat`` for each, run alternately so load on the machine hits both alike."""
    floors, ours = [], []
    for _ in range(repeat):
        floors.append(_timed(floor_fn))
        ours.append(_timed(ours_fn))
    return min(floors), min(ours)


class _Floor:
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


def _generate(args: argparse.Namespace, settings: Settings, work: Path) -> tuple[int, int]:
    db, store = database(settings), store_for(settings)
    rng = np.random.default_rng(0)
    floor = _Floor(work / "floor-all.parquet")
    started = time.perf_counter()
    for i in range(args.runs):
        evaluation = EVALUATIONS[i % len(EVALUATIONS)]
        table = _scores(0, evaluation, args.scores, rng)
        run_id = _commit_run(db, store, evaluation, table, args.shards)
        floor.add(table.set_column(0, "run_id", pa.array([run_id] * table.num_rows, pa.int64())))
        if (i + 1) % 100 == 0:
            print(f"  {i + 1} runs committed ({time.perf_counter() - started:.0f}s)", flush=True)
    floor.close()
    pair = work / "floor-pair.parquet"
    base = _scores(0, "eval-compare", args.compare_scores, rng)
    shifted = base["value"].to_numpy() + rng.normal(0.01, 0.1, base.num_rows)
    better = base.set_column(7, "value", pa.array(np.clip(shifted, 0.0, 1.0)))
    ids = []
    pair_tables = []
    for table in (base, better):
        shards = max(1, table.num_rows // 100_000)  # the engine's flushes: 100k rows each
        ids.append(_commit_run(db, store, "eval-compare", table, shards))
        pair_tables.append(
            table.set_column(0, "run_id", pa.array([ids[-1]] * table.num_rows, pa.int64()))
        )
    both = pa.concat_tables(pair_tables)
    pq.write_table(both, pair, compression="zstd", row_group_size=256 * 1024)
    print(f"  generated in {time.perf_counter() - started:.0f}s", flush=True)
    return ids[0], ids[1]


_PAIR_FLOOR = """
WITH a AS (SELECT * FROM read_parquet('{f}') WHERE run_id = {a}),
     b AS (SELECT * FROM read_parquet('{f}') WHERE run_id = {b})
SELECT a.component, a.metric, count(*), avg(b.value - a.value), stddev_samp(b.value - a.value)
FROM a FULL OUTER JOIN b ON a.component = b.component AND a.metric = b.metric
 AND a.example_id = b.example_id AND a.call_index = b.call_index GROUP BY ALL
"""


def _report(label: str, ours: float, floor: float) -> None:
    print(f"{label:<46} {ours:7.3f}s  floor {floor:6.3f}s  {ours / floor:5.2f}x", flush=True)


def _group_by(repeat: int, floor_file: Path) -> None:
    from hypermetric.query.connection import connect, sql

    direct = GROUP_BY.format(f"read_parquet('{floor_file}')")
    query = GROUP_BY.format("scores")

    def floor() -> object:
        return duckdb.connect().sql(direct).fetchall()

    floor_time, ours = _best_pair(repeat, floor, lambda: sql(query).fetchall())
    _report("GROUP BY, hm.sql (connect + query)", ours, floor_time)
    con = connect()
    floor_time, ours = _best_pair(repeat, floor, lambda: con.sql(query).fetchall())
    _report("GROUP BY, query only on an open connection", ours, floor_time)


def _compare(repeat: int, pair: tuple[int, int], floor_file: Path, rows: int) -> None:
    from hypermetric.query.compare import compare

    sql = _PAIR_FLOOR.format(f=floor_file, a=pair[0], b=pair[1])
    floor, ours = _best_pair(
        repeat, lambda: duckdb.connect().sql(sql).fetchall(), lambda: compare(*pair)
    )
    _report(f"compare of two {rows:,}-score runs", ours, floor)


def _phases(args: argparse.Namespace, work: Path, pair: tuple[int, int]) -> None:
    from hypermetric.query.compaction import compact

    print("before compaction:", flush=True)
    _group_by(args.repeat, work / "floor-all.parquet")
    _compare(args.repeat, pair, work / "floor-pair.parquet", args.compare_scores)
    started = time.perf_counter()
    reports = compact()
    took = time.perf_counter() - started
    merged = sum(r.shards_merged for r in reports)
    written = sum(r.files_written for r in reports)
    print(f"hypermetric compact: {merged} shards into {written} files in {took:.1f}s", flush=True)
    print("after compaction:", flush=True)
    _group_by(args.repeat, work / "floor-all.parquet")
    _compare(args.repeat, pair, work / "floor-pair.parquet", args.compare_scores)


@contextlib.contextmanager
def _home(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="hm-bench-query-"))
    try:
        yield work
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    """Generate, then time the figures; prints each with its ratio to the floor."""
    with _home(args.keep) as work:
        settings = reset_settings(load_settings(environ={}, home=str(work / "home")))
        load = os.getloadavg()[0]
        print(f"home {settings.home} (SQLite); {os.cpu_count()} CPUs; load average {load:.1f}")
        total = args.runs * args.scores
        print(
            f"generating {args.runs} runs x {args.scores} scores ({total:,} rows) in "
            f"{args.shards} shards each, and two runs of {args.compare_scores:,}",
            flush=True,
        )
        pair = _generate(args, settings, work)
        _phases(args, work, pair)
    return 0
