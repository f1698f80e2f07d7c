"""The scheduler's maintenance pass: it compacts by itself, one version a batch, every older
version reads the same rows, it runs beside a live run and a backfill without changing their
results, and of two schedulers sharing a DB only one compacts a given set of shards.

Every test runs on SQLite and on PostgreSQL (two schedulers on SQLite cannot run at once in
production; their lease is checked there too since it is plain SQL).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from hypermetric.catalog.backfills import reprocess_run
from hypermetric.catalog.db import Database
from hypermetric.catalog.models import DatasetVersion, Shard
from hypermetric.catalog.runs import get_run, start_run
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings
from hypermetric.query.connection import connect
from hypermetric.query.result import RunResult
from hypermetric.scheduler.clock import ManualClock
from hypermetric.scheduler.options import SchedulerOptions
from hypermetric.scheduler.service import Scheduler
from tests.query.conftest import Runs, ids, scores_table
from tests.scheduler.conftest import Maker
from tests.scheduler.fakes import Behaviour, FakeLauncher

Rows = list[tuple[Any, ...]]


def _rows(as_of: int | None = None) -> Rows:
    query = "SELECT run_id, example_id, metric, value, run_attempt FROM scores ORDER BY ALL"
    return connect(as_of=as_of).sql(query).fetchall()


def _versions(db: Database) -> list[tuple[int, str]]:
    with db.session() as session:
        stmt = select(DatasetVersion.id, DatasetVersion.kind).order_by(DatasetVersion.id)
        return [(v, k) for v, k in session.execute(stmt)]


def _live(db: Database) -> list[tuple[int | None, int]]:
    """(run id, rows) of the live scores shards."""
    with db.session() as session:
        stmt = select(Shard.run_id, Shard.rows).where(
            Shard.dataset == "scores", Shard.removed_version_id.is_(None)
        )
        return sorted(((r, n) for r, n in session.execute(stmt)), key=lambda x: (x[0] or 0, x[1]))


def _finished(runs: Runs, n: int, shards: int = 4, value: float = 0.5) -> int:
    return runs.run(
        build=lambda rid: scores_table(rid, ids(n), [value] * n, metric="exact_match"),
        shards=shards,
    )


@pytest.fixture
def runs(db: Database, settings: Settings) -> Runs:
    """Runs committed as the engine commits them (no Ray)."""
    return Runs(db, settings)


@pytest.fixture
def history(runs: Runs) -> list[int]:
    """Six finished runs of 40 rows in 4 shards each."""
    return [_finished(runs, 40, value=i / 10) for i in range(6)]


def test_the_pass_compacts_a_batch_a_version_and_every_version_reads_the_same(
    db: Database, runs: Runs, history: list[int], make_scheduler: Maker
) -> None:
    before = {v: _rows(v) for v, _ in _versions(db)}
    current = _rows()
    service, _ = make_scheduler(compact_target_rows=80, compact_batch_files=1)
    report = service.run_maintenance()
    # 24 shards of 10 rows, two runs (80 rows) a file: 3 files, one version each
    assert report.ran and report.complete
    assert (report.shards_merged, report.files_written) == (24, 3)
    assert [k for v, k in _versions(db) if v in report.version_ids] == ["compact"] * 3
    assert _live(db) == [(None, 80)] * 3
    assert _rows() == current
    for version, rows in before.items():
        assert _rows(version) == rows, version
    for version in report.version_ids:  # each batch's version reads every row once
        assert _rows(version) == current
    again = service.run_maintenance()
    assert again.ran and again.shards_merged == 0 and again.version_ids == ()


def test_a_pass_past_its_budget_leaves_the_rest_for_the_next(
    db: Database, history: list[int], make_scheduler: Maker
) -> None:
    service, _ = make_scheduler(compact_target_rows=80, compact_batch_files=1, compact_budget=1e-9)
    first = service.run_maintenance()
    assert not first.complete and first.files_written == 1  # one batch always goes
    rest = service.run_maintenance(stop=lambda: False)
    assert rest.files_written == 1
    assert service.run_maintenance(stop=lambda: True).files_written == 1  # a batch, then stop


def test_the_pass_runs_beside_a_live_run_and_a_backfill(
    db: Database, runs: Runs, history: list[int], make_scheduler: Maker
) -> None:
    live = runs.start()
    runs.commit(live, 0, {"scores": scores_table(live, ids(10, "live0-"), [1.0] * 10)})
    redone = history[2]
    reprocess_run(db, redone, utcnow(), version_label="v2", code_version=None, params={})
    start_run(db, redone, owner="backfill", pid=1, host="h")
    service, _ = make_scheduler(compact_target_rows=80, compact_batch_files=1)
    stop = threading.Event()
    reports = []

    def maintain() -> None:
        while not stop.is_set():
            reports.append(service.run_maintenance())

    thread = threading.Thread(target=maintain)
    thread.start()
    try:
        for unit in range(1, 13):  # both keep committing while the passes run
            time.sleep(0.02)
            rows = scores_table(live, ids(10, f"live{unit}-"), [1.0] * 10)
            runs.commit(live, unit, {"scores": rows})
            if unit <= 4:
                part = scores_table(redone, ids(40)[(unit - 1) * 10 : unit * 10], [0.9] * 10)
                runs.commit(redone, unit - 1, {"scores": part})
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    runs.finish(live)
    runs.finish(redone)
    assert sum(r.shards_merged for r in reports) >= 20  # the five untouched runs were packed
    for run_id, count, mean in ((live, 130, 1.0), (redone, 40, 0.9)):
        (row,) = RunResult(run_id).summary()
        assert (row.n, row.mean) == (count, pytest.approx(mean)), run_id
    attempt = get_run(db, redone).attempt
    got = connect().sql(
        f"SELECT run_attempt, count(*) FROM scores WHERE run_id = {redone} GROUP BY 1"
    )
    assert got.fetchall() == [(attempt, 40)]
    expected = {r: 40 for r in history} | {live: 130}
    counts = connect().sql("SELECT run_id, count(*) FROM scores GROUP BY 1").fetchall()
    assert dict(counts) == expected
    final, shards = _rows(), len(_live(db))
    assert service.run_maintenance().shards_merged > 0  # the two finished: packed too
    assert _rows() == final and len(_live(db)) < shards


def _scheduler(settings: Settings, db: Database, clock: ManualClock, **options: Any) -> Scheduler:
    service = Scheduler(
        settings,
        options=SchedulerOptions(stale_after=30.0, **options),
        launcher=FakeLauncher(db, clock, lambda run: Behaviour()),
        clock=clock,
        db=db,
    )
    service.start()
    return service


def test_of_two_schedulers_one_compacts_the_other_skips(
    db: Database, settings: Settings, clock: ManualClock, history: list[int]
) -> None:
    first = _scheduler(settings, db, clock, compact_target_rows=80, compact_batch_files=1)
    second = _scheduler(settings, db, clock, compact_target_rows=80, compact_batch_files=1)
    try:
        inside, go_on = threading.Event(), threading.Event()

        def hold() -> bool:  # between batches, with the lease held
            inside.set()
            assert go_on.wait(30)
            return False

        done: list[Any] = []
        thread = threading.Thread(target=lambda: done.append(first.run_maintenance(stop=hold)))
        thread.start()
        assert inside.wait(30)
        skipped = second.run_maintenance()
        assert not skipped.ran and skipped.version_ids == ()
        go_on.set()
        thread.join(timeout=60)
        (report,) = done
        assert report.ran and (report.shards_merged, report.files_written) == (24, 3)
        # the lease was given back: the second may compact now (nothing left to do)
        assert second.run_maintenance().ran
    finally:
        first.stop()
        second.stop()


def test_two_schedulers_at_once_pack_each_shard_once(
    db: Database, settings: Settings, clock: ManualClock, history: list[int]
) -> None:
    current = _rows()
    services = [
        _scheduler(settings, db, clock, compact_target_rows=80, compact_batch_files=1)
        for _ in range(2)
    ]
    try:
        reports: list[Any] = []
        barrier = threading.Barrier(2)

        def go(service: Scheduler) -> None:
            barrier.wait()
            reports.append(service.run_maintenance())

        threads = [threading.Thread(target=go, args=(s,)) for s in services]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sum(r.shards_merged for r in reports) == 24
        assert sorted(r.ran for r in reports) in ([False, True], [True, True])
        assert _rows() == current and _live(db) == [(None, 80)] * 3
    finally:
        for service in services:
            service.stop()


def test_a_serving_scheduler_compacts_by_itself(
    db: Database, settings: Settings, clock: ManualClock, history: list[int]
) -> None:
    current = _rows()
    service = Scheduler(
        settings,
        options=SchedulerOptions(
            stale_after=30.0, tick_seconds=0.1, compact_every=0.2, compact_target_rows=80
        ),
        launcher=FakeLauncher(db, clock, lambda run: Behaviour()),
        clock=clock,
        db=db,
    )
    stop = threading.Event()
    thread = threading.Thread(target=service.serve, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(r is not None for r, _ in _live(db)):
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert _live(db) == [(None, 80)] * 3 and _rows() == current


def test_maintenance_options_are_checked() -> None:
    from hypermetric.errors import SchedulerError

    assert SchedulerOptions().compacts  # on by default
    assert not SchedulerOptions(compact_every=0).compacts
    for bad in ({"compact_every": -1}, {"compact_target_rows": 1}, {"compact_budget": 0}):
        with pytest.raises(SchedulerError):
            SchedulerOptions(**bad)


@pytest.mark.parametrize(
    ("every", "live", "said"),
    [
        ("300", [(None, 240)], "compaction: packed 24 shards into 1 file\n"),
        ("0", [(rid, 10) for rid in range(1, 7) for _ in range(4)], ""),
    ],
)
def test_a_scheduler_run_from_cron_compacts_after_its_pass(
    db: Database, history: list[int], every: str, live: list[Any], said: str
) -> None:
    from click.testing import CliRunner

    from hypermetric.cli import cli

    assert history == list(range(1, 7))
    before = _rows()
    result = CliRunner().invoke(
        cli,
        [
            "scheduler",
            "--once",
            "--compact-every",
            every,
            "--launcher",
            "tests.scheduler.fakes:instant",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        "one pass: 0 created, 0 launched, 0 resumed, 0 retried, 0 failed\n" + said
    )
    assert _live(db) == live
    assert _rows() == before  # every row still reads once
