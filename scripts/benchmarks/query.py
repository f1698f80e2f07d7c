"""SQL over all history with and without the scheduler's automatic compaction, beside floors.

The data (see :mod:`benchmarks.query_data`): ``--runs`` runs x ``--scores`` scores committed
as the engine commits them (``--shards`` small shards a run, a version each), two runs of
``--compare-scores`` scores in 100k-row flushes, then a history grown by simulation to
``--simulate-runs`` runs (a version and a shard a flush: 10,000 runs make 100,000 versions),
in a temporary HYPERMETRIC_HOME on SQLite. "The pass" is the scheduler's maintenance pass
(``Scheduler.run_maintenance``, default options), called until it has nothing left: nobody
calls ``hypermetric compact``.

The floor of each figure is the same query run by DuckDB on one Parquet file holding the
same rows (at the simulated scale: hard links to that file, as many as make the same number
of rows). Every
timing is the best of ``--repeat``, run alternately with its floor, and includes opening
the connection (reading the registry) unless it says "query only". "Files read" is DuckDB's
own count of the files its scan opened (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import maintain, temporary_home
from benchmarks.query_data import (
    EVALUATIONS,
    Floor,
    commit_run,
    scores,
    simulate_packing,
    simulate_runs,
)
from hypermetric.catalog.db import database
from hypermetric.catalog.shards import latest_version_id, live_shards
from hypermetric.config import Settings, load_settings, reset_settings
from hypermetric.storage.files import store_for

GROUP_BY = "SELECT evaluation, metric, avg(value) FROM {} GROUP BY ALL"
ONE_RUN = "SELECT metric, avg(value), count(*) FROM {} WHERE run_id = {} GROUP BY ALL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench.py query``."""
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--scores", type=int, default=10_000, help="scores per run")
    parser.add_argument("--shards", type=int, default=10, help="shards (flushes) per run")
    parser.add_argument("--compare-scores", type=int, default=1_000_000)
    parser.add_argument("--simulate-runs", type=int, default=10_000, help="0: no simulation")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")


@dataclass(frozen=True)
class Figure:
    """One line of the closing table."""

    scale: str
    phase: str
    what: str
    ours: float
    floor: float | None = None
    target: str = ""
    note: str = ""

    def ratio(self) -> str:
        return f"{self.ours / self.floor:5.2f}x" if self.floor else "     -"


@dataclass
class Bench:
    args: argparse.Namespace
    settings: Settings
    work: Path
    figures: list[Figure]
    pair: tuple[int, int] = (0, 0)
    one_run: int = 0

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        floor = f"floor {figure.floor:7.3f}s" if figure.floor else " " * 14
        print(
            f"  {figure.what:<44} {figure.ours:8.3f}s  {floor}  {figure.ratio()}  {figure.note}",
            flush=True,
        )


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best(repeat: int, *fns: Callable[[], object]) -> list[float]:
    """Best of ``repeat`` for each, run alternately so load on the machine hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for slot, fn in zip(times, fns, strict=True):
            slot.append(_timed(fn))
    return [min(t) for t in times]


def _generate(bench: Bench) -> None:
    args, settings = bench.args, bench.settings
    db, store = database(settings), store_for(settings)
    rng = np.random.default_rng(0)
    floor = Floor(bench.work / "floor-all.parquet")
    started = time.perf_counter()
    for i in range(args.runs):
        evaluation = EVALUATIONS[i % len(EVALUATIONS)]
        run_id, table = commit_run(
            db, store, evaluation, scores(0, evaluation, args.scores, rng), args.shards
        )
        floor.add(table)
        if i == args.runs // 2:
            bench.one_run = run_id
        if (i + 1) % 200 == 0:
            print(f"  {i + 1} runs committed ({time.perf_counter() - started:.0f}s)", flush=True)
    base = scores(0, "eval-compare", args.compare_scores, rng)
    shifted = base["value"].to_numpy() + rng.normal(0.01, 0.1, base.num_rows)
    better = base.set_column(7, "value", pa.array(np.clip(shifted, 0.0, 1.0)))
    ids, tables = [], []
    for table in (base, better):
        flushes = max(1, table.num_rows // 100_000)  # the engine's flushes: 100k rows each
        run_id, committed = commit_run(db, store, "eval-compare", table, flushes)
        ids.append(run_id)
        tables.append(committed)
        floor.add(committed)  # all history: the compared runs are part of it
    floor.close()
    pq.write_table(
        pa.concat_tables(tables),
        bench.work / "floor-pair.parquet",
        compression="zstd",
        row_group_size=256 * 1024,
    )
    bench.pair = (ids[0], ids[1])
    print(f"  generated in {time.perf_counter() - started:.0f}s", flush=True)


_PAIR_FLOOR = """
WITH a AS (SELECT * FROM read_parquet('{f}') WHERE run_id = {a}),
     b AS (SELECT * FROM read_parquet('{f}') WHERE run_id = {b})
SELECT a.component, a.metric, count(*), avg(b.value - a.value), stddev_samp(b.value - a.value)
FROM a FULL OUTER JOIN b ON a.component = b.component AND a.metric = b.metric
 AND a.example_id = b.example_id AND a.call_index = b.call_index GROUP BY ALL
"""


def _files_read(con: duckdb.DuckDBPyConnection, query: str) -> int:
    plan = "\n".join(str(row[-1]) for row in con.sql(f"EXPLAIN ANALYZE {query}").fetchall())
    return sum(int(n) for n in re.findall(r"Total Files Read:\s*(\d+)", plan))


def _group_by(bench: Bench, scale: str, phase: str, floor_files: list[Path]) -> None:
    from hypermetric.query.connection import connect, sql

    listed = ", ".join(f"'{f}'" for f in floor_files)
    direct = GROUP_BY.format(f"read_parquet([{listed}])")
    query = GROUP_BY.format("scores")
    repeat = bench.args.repeat
    floor, ours, connecting = _best(
        repeat,
        lambda: duckdb.connect().sql(direct).fetchall(),
        lambda: sql(query).fetchall(),
        lambda: sql(query),
    )
    bench.add(
        Figure(
            scale,
            phase,
            "GROUP BY all history, hm.sql (connect+query)",
            ours,
            floor,
            "<= 1.5x after the pass",
        )
    )
    con, floor_con = connect(), duckdb.connect()
    floor, ours = _best(
        repeat, lambda: floor_con.sql(direct).fetchall(), lambda: con.sql(query).fetchall()
    )
    bench.add(Figure(scale, phase, "GROUP BY all history, query only", ours, floor))
    bench.add(
        Figure(
            scale, phase, "hm.sql connect (views ready, query bound)", connecting, target="<= 0.2 s"
        )
    )


def _connect_only(bench: Bench, scale: str, phase: str) -> None:
    from hypermetric.query.connection import sql

    (connecting,) = _best(bench.args.repeat, lambda: sql(GROUP_BY.format("scores")))
    bench.add(
        Figure(
            scale, phase, "hm.sql connect (views ready, query bound)", connecting, target="<= 0.2 s"
        )
    )


def _one_run(bench: Bench, scale: str, phase: str, floor_file: Path) -> None:
    from hypermetric.query.connection import open_connection, sql
    from hypermetric.query.pruning import runs_named_by

    run_id = bench.one_run
    query = ONE_RUN.format("scores", run_id)
    direct = ONE_RUN.format(f"read_parquet('{floor_file}')", run_id)
    named = runs_named_by(query)
    assert named == {run_id}, named
    db = database(bench.settings)
    holding = len(live_shards(db, "scores", run_ids=[run_id]))
    total = len(live_shards(db, "scores"))
    con = open_connection(bench.settings, views=["scores"], run_ids=sorted(named))
    read = _files_read(con, query)
    floor, ours = _best(
        bench.args.repeat,
        lambda: duckdb.connect().sql(direct).fetchall(),
        lambda: sql(query).fetchall(),
    )
    note = f"files read {read} of {total} live ({holding} hold run {run_id})"
    bench.add(Figure(scale, phase, "one run's scores, hm.sql", ours, floor, "only its files", note))


def _compare(bench: Bench, scale: str, phase: str) -> None:
    from hypermetric.query.compare import compare, compare_on, resolve_run

    a, b = bench.pair
    direct = _PAIR_FLOOR.format(f=bench.work / "floor-pair.parquet", a=a, b=b)
    floor, ours = _best(
        bench.args.repeat, lambda: duckdb.connect().sql(direct).fetchall(), lambda: compare(a, b)
    )
    rows = bench.args.compare_scores
    bench.add(Figure(scale, phase, f"compare of two {rows:,}-score runs", ours, floor, "<= 2x"))
    # the floor of the same statistics (bootstrap CIs, counts, example lists) on one file:
    # what the catalog and the files cost a compare, its statistics counted on both sides
    run_a, run_b = resolve_run(a), resolve_run(b)

    def same_on_one_file() -> None:
        con = duckdb.connect()
        con.execute(f"CREATE VIEW scores AS SELECT * FROM read_parquet('{pair_file}')")
        compare_on(con, run_a, run_b)
        con.close()

    pair_file = bench.work / "floor-pair.parquet"
    floor, ours = _best(bench.args.repeat, same_on_one_file, lambda: compare(a, b))
    bench.add(
        Figure(scale, phase, f"compare of two {rows:,}-score runs, same statistics", ours, floor)
    )


def _automatic_pass(bench: Bench) -> None:
    done = maintain(bench.settings)
    print(
        f"the scheduler's maintenance pass: {done.merged} shards into {done.written} files, "
        f"{done.passes} pass(es), {done.seconds:.1f}s",
        flush=True,
    )


def _real_scale(bench: Bench) -> None:
    scale = f"{bench.args.runs:,} runs"
    floor = bench.work / "floor-all.parquet"
    versions = latest_version_id(database(bench.settings))
    for phase in ("no pass", "after pass"):
        if phase == "after pass":
            _automatic_pass(bench)
        print(f"{scale}, {versions:,} versions, {phase}:", flush=True)
        _group_by(bench, scale, phase, [floor])
        _one_run(bench, scale, phase, floor)
        _compare(bench, scale, phase)


def _simulated_scale(bench: Bench, sources: list) -> None:
    count = bench.args.simulate_runs - bench.args.runs - 2
    if count <= 0:
        return
    db, store = database(bench.settings), store_for(bench.settings)
    started = time.perf_counter()
    simulated = simulate_runs(db, store, sources, count, bench.args.shards)
    total = bench.args.runs + 2 + count
    versions = latest_version_id(db)
    print(f"  simulated {count:,} runs more in {time.perf_counter() - started:.0f}s", flush=True)
    scale = f"{total:,} runs (simulated)"
    print(f"{scale}, {versions:,} versions, no pass on the simulated runs:", flush=True)
    _connect_only(bench, scale, "no pass")
    per_file = max(
        1,
        bench.args.runs // max(1, len([s for s in live_shards(db, "scores") if s.run_id is None])),
    )
    simulate_packing(db, store, simulated, per_file)
    rows = sum(s.rows for s in live_shards(db, "scores"))
    copies = max(1, round(rows / pq.read_metadata(bench.work / "floor-all.parquet").num_rows))
    floors = []
    for n in range(copies):
        link = bench.work / f"floor-all-{n}.parquet"
        os.link(bench.work / "floor-all.parquet", link)
        floors.append(link)
    print(f"{scale}, {latest_version_id(db):,} versions, after the (simulated) pass:", flush=True)
    _group_by(bench, scale, "after pass", floors)
    _one_run(bench, scale, "after pass", bench.work / "floor-all.parquet")


def _table(figures: list[Figure]) -> None:
    print("\n| scale | phase | figure | ours (s) | floor (s) | ratio | target | note |")
    print("|---|---|---|---:|---:|---:|---|---|")
    for f in figures:
        floor = f"{f.floor:.3f}" if f.floor else ""
        print(
            f"| {f.scale} | {f.phase} | {f.what} | {f.ours:.3f} | {floor} | "
            f"{f.ratio().strip()} | {f.target} | {f.note} |"
        )


def run(args: argparse.Namespace) -> int:
    """Generate, then time the figures; prints each with its ratio to the floor."""
    with temporary_home("hm-bench-query-", args.keep) as work:
        settings = reset_settings(load_settings(environ={}, home=str(work / "home")))
        load = os.getloadavg()[0]
        print(f"home {settings.home} (SQLite); {os.cpu_count()} CPUs; load average {load:.1f}")
        total = args.runs * args.scores
        print(
            f"generating {args.runs} runs x {args.scores} scores ({total:,} rows) in "
            f"{args.shards} shards each, and two runs of {args.compare_scores:,}",
            flush=True,
        )
        bench = Bench(args, settings, work, [])
        started = time.perf_counter()
        _generate(bench)
        sources = [s for s in live_shards(database(settings), "scores") if s.rows <= args.scores]
        _real_scale(bench)
        _simulated_scale(bench, sources)
        _table(bench.figures)
        print(f"\nbench.py query took {time.perf_counter() - started:.0f}s")
    return 0
