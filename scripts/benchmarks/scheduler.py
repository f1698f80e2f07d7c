"""The scheduler: trigger latency (due → run created → process started) and pass time with
500 definitions as history grows from 1,000 to 100,000 runs.

Latency runs the real service (APScheduler, the system clock) on definitions firing every
second; each launch starts a real process (``true``) and ends the run. Pass time runs
``Scheduler.run_pass`` on a hand-moved clock, each simulated second making about eight of
the 500 definitions due, with runs ended in-process; the two history sizes are measured
pass by pass in turn. SQLite by default; ``--pg URL``
(a server URL we may create databases from) measures PostgreSQL too.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from hypermetric.catalog.db import Database, database, dispose
from hypermetric.catalog.migrate import upgrade
from hypermetric.catalog.models import Evaluation, Run
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import finish_run, start_run
from hypermetric.config import Settings, load_settings, reset_settings
from hypermetric.scheduler.clock import ManualClock
from hypermetric.scheduler.definitions import store_definition
from hypermetric.scheduler.launcher import Launcher, RunHandle
from hypermetric.scheduler.options import SchedulerOptions
from hypermetric.scheduler.service import Scheduler


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scheduler benchmark's options."""
    parser.add_argument("--intervals", type=int, default=200, help="intervals for latency")
    parser.add_argument("--definitions", type=int, default=500)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--baseline-history", type=int, default=1_000)
    parser.add_argument("--passes", type=int, default=60, help="passes timed per history size")
    parser.add_argument("--pg", help="also on PostgreSQL: a server URL to create a DB from")
    parser.add_argument("--only", choices=["latency", "loop"], action="append")


class _Handle(RunHandle):
    def __init__(self, run_id: int, poll: Any) -> None:
        super().__init__(run_id, None)
        self._poll = poll

    def poll(self) -> int | None:
        return self._poll()

    def kill(self) -> None:
        return None


class _ProcessLauncher(Launcher):
    """Starts a real (empty) process per run, notes when it started, and ends the run."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.started: dict[int, datetime] = {}

    def launch(self, run: RunRecord, ray_address: str | None) -> RunHandle:
        proc = subprocess.Popen(["true"])
        self.started[run.id] = datetime.now(UTC)
        start_run(self.db, run.id, owner="bench", pid=proc.pid, host="bench")
        finish_run(self.db, run.id, "success")
        return _Handle(run.id, proc.poll)


class _InlineLauncher(Launcher):
    """Runs end the moment they start: the pass itself is what is measured."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def launch(self, run: RunRecord, ray_address: str | None) -> RunHandle:
        start_run(self.db, run.id, owner="bench", pid=1, host="bench")
        finish_run(self.db, run.id, "success")
        return _Handle(run.id, lambda: 0)


@contextmanager
def _fresh_db(pg: str | None) -> Iterator[Settings]:
    home = Path(tempfile.mkdtemp(prefix="hm-bench-"))
    admin, name = None, None
    if pg:
        admin = create_engine(pg, isolation_level="AUTOCOMMIT")
        name = f"hm_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(pg).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{home / 'hypermetric.db'}"
    settings = reset_settings(load_settings(environ={}, home=str(home), db_url=url))
    upgrade(database(settings, migrate=False))
    try:
        yield settings
    finally:
        dispose(url)
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(home, ignore_errors=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency(args: argparse.Namespace, pg: str | None) -> None:
    with _fresh_db(pg) as settings:
        db = database(settings)
        for i in range(4):
            fields = {"import_path": "bench:none", "schedule": "* * * * * *", "max_active_runs": 4}
            store_definition(db, f"every-second-{i}", fields)
        launcher = _ProcessLauncher(db)
        service = Scheduler(settings, launcher=launcher, options=SchedulerOptions(stale_after=60))
        stop = threading.Event()
        thread = threading.Thread(target=service.serve, args=(stop,))
        thread.start()
        while len(launcher.started) < args.intervals + 8:
            time.sleep(0.5)
        stop.set()
        thread.join()
        with db.session() as session:
            rows = session.execute(
                select(Run.id, Run.data_interval_end, Run.queued_at).order_by(Run.id)
            ).all()
        # skip the first few: created in the first pass, before the tick was steady
        timed = [(r, d, q) for r, d, q in rows if r in launcher.started and d is not None]
        timed = timed[4 : 4 + args.intervals]
        created = [(queued - due).total_seconds() for _, due, queued in timed]
        started = [(launcher.started[rid] - due).total_seconds() for rid, due, _ in timed]
        print(f"  trigger latency over {len(timed)} intervals (seconds after the due time):")
        print(f"    created: p50 {_pct(created, 0.5):.3f}  p99 {_pct(created, 0.99):.3f}")
        print(f"    started: p50 {_pct(started, 0.5):.3f}  p99 {_pct(started, 0.99):.3f}")


def _fill(db: Database, definitions: int, history: int, start: datetime) -> None:
    with db.session() as session:
        ids = list(session.scalars(select(Evaluation.id).order_by(Evaluation.id)))
    rng = random.Random(7)
    batch: list[dict[str, Any]] = []
    for n in range(history):
        logical = start - timedelta(minutes=n // definitions + 1)
        state = "failed" if rng.random() < 0.05 else "success"
        batch.append(
            {
                "evaluation_id": ids[n % definitions],
                "run_key": f"scheduled__{logical.isoformat()}",
                "logical_date": logical,
                "run_type": "scheduled",
                "state": state,
                "attempt": 1,
                "params": {},
                "queued_at": logical,
                "started_at": logical,
                "ended_at": logical + timedelta(seconds=30),
                "heartbeat_at": logical + timedelta(seconds=30),
            }
        )
        if len(batch) == 5000:
            with db.session() as session:
                session.execute(insert(Run), batch)
            batch = []
    if batch:
        with db.session() as session:
            session.execute(insert(Run), batch)


def _prepared(
    args: argparse.Namespace, stack: ExitStack, pg: str | None, history: int
) -> tuple[Scheduler, ManualClock]:
    """A started scheduler on a fresh DB with the definitions and ``history`` old runs."""
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    settings = stack.enter_context(_fresh_db(pg))
    db = database(settings)
    clock = ManualClock(start)
    for i in range(args.definitions):
        fields = {"import_path": "bench:none", "schedule": f"{i % 60} * * * * *"}
        store_definition(db, f"def-{i:03d}", fields, clock=clock)
    _fill(db, args.definitions, history, start)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    service = Scheduler(
        settings,
        db=db,
        launcher=_InlineLauncher(db),
        clock=clock,
        options=SchedulerOptions(stale_after=60, parallelism=16),
    )
    service.start()
    stack.callback(service.stop)
    return service, clock


def _loop(args: argparse.Namespace, pg: str | None) -> None:
    sizes = (args.baseline_history, args.history)
    times: dict[int, list[float]] = {size: [] for size in sizes}
    with ExitStack() as stack:
        prepared = {size: _prepared(args, stack, pg, size) for size in sizes}
        # alternate the two, so that machine noise falls on both alike
        for _ in range(args.passes):
            for size, (service, clock) in prepared.items():
                clock.advance(1.0)
                began = time.perf_counter()
                service.run_pass()
                times[size].append(time.perf_counter() - began)
    medians = {size: statistics.median(times[size]) for size in sizes}
    for size in sizes:
        print(
            f"  pass time, {args.definitions} definitions, {size:>7,} runs of history: "
            f"median {medians[size] * 1000:.1f} ms, p90 {_pct(times[size], 0.9) * 1000:.1f} ms"
        )
    ratio = medians[sizes[1]] / medians[sizes[0]]
    print(f"  ratio {sizes[1]:,} / {sizes[0]:,} runs: {ratio:.2f}x (target ≤ 1.5x)")


def run(args: argparse.Namespace) -> int:
    """Run the scheduler benchmarks and print their figures."""
    only = set(args.only or ["latency", "loop"])
    for label, pg in [("SQLite", None), ("PostgreSQL", args.pg)]:
        if label == "PostgreSQL" and not pg:
            continue
        print(f"{label}:")
        if "latency" in only:
            _latency(args, pg)
        if "loop" in only:
            _loop(args, pg)
    return 0
