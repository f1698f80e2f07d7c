"""Writing an import: all or nothing, and one run per log however many processes import it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hypermetric.catalog import imports as catalog_imports
from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import count_runs, list_runs
from hypermetric.catalog.shards import live_shards
from hypermetric.cli import cli
from hypermetric.config import Settings
from hypermetric.errors import StorageError
from hypermetric.importing import writer
from hypermetric.importing.lmeval import read_lmeval_dir
from hypermetric.storage.files import store_for
from tests.importing.conftest import write_lmeval

DATE = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    write_lmeval(
        folder,
        model="org/m",
        stamp="2026-11-01T02-00-00.000000",
        values={"arc_easy": [1.0, 0.0]},
        date=DATE.timestamp(),
    )
    return folder


def test_a_write_that_fails_midway_leaves_nothing_and_can_be_done_again(
    settings: Settings, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise StorageError("the disk is full")

    # the shards are written, then registering them fails
    monkeypatch.setattr(writer, "commit_units", refuse)
    result = CliRunner().invoke(cli, ["import", "lm-eval", str(folder)])
    assert result.exit_code == 1
    assert result.output.strip() == "error: the disk is full"
    (run,) = list_runs(db)
    assert run.state == "failed" and "the disk is full" in (run.error or "")
    assert run.import_key is None  # released: the log may be imported again
    assert live_shards(db, "scores") == [] and live_shards(db, "calls") == []
    assert list(store_for(settings).files()) == []  # written, never registered, deleted

    monkeypatch.undo()
    again = CliRunner().invoke(cli, ["import", "lm-eval", str(folder)])
    assert again.exit_code == 0 and again.output.startswith("imported"), again.output
    states = sorted(r.state for r in list_runs(db))
    assert states == ["failed", "success"]
    assert len(live_shards(db, "scores")) == 1


def test_the_db_refuses_a_second_run_of_one_log(
    settings: Settings, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (log,) = read_lmeval_dir(_folder(tmp_path))
    (first,) = writer.store_logs([log], settings=settings)
    assert first.created
    # another process that looked before this one's run existed: its insert hits the key
    real = catalog_imports.find_import
    looks = iter([None])
    monkeypatch.setattr(catalog_imports, "find_import", lambda db, key: next(looks, real(db, key)))
    (second,) = writer.store_logs([log], settings=settings)
    assert not second.created and second.run.id == first.run.id
    assert count_runs(db) == 1


def test_concurrent_imports_of_one_log_make_one_run(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    (log,) = read_lmeval_dir(_folder(tmp_path))
    start = threading.Barrier(4)

    def one(_: int) -> Any:
        start.wait()
        (outcome,) = writer.store_logs([log], settings=settings)
        return outcome

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(one, range(4)))
    assert sum(o.created for o in outcomes) == 1
    assert len({o.run.id for o in outcomes}) == 1
    assert count_runs(db) == 1 and len(live_shards(db, "scores")) == 1


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_abandoned_import_is_imported_again(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    from hypermetric.catalog.runs import update_run

    (log,) = read_lmeval_dir(_folder(tmp_path))
    (first,) = writer.store_logs([log], settings=settings)
    # its process was killed mid-write: the run is running, its key held, its pid gone
    update_run(db, first.run.id, state="running", pid=_dead_pid())
    (second,) = writer.store_logs([log], settings=settings)
    assert second.created and second.run.id != first.run.id
    states = {r.id: (r.state, r.import_key) for r in list_runs(db)}
    assert states[first.run.id] == ("failed", None)
    assert states[second.run.id] == ("success", log.key)
    # a run a scheduler failed (found lost), or canceled, keeps its key until an import
    # finds it
    update_run(db, second.run.id, state="failed")
    (third,) = writer.store_logs([log], settings=settings)
    assert third.created and count_runs(db) == 3
    update_run(db, third.run.id, state="canceled")
    (fourth,) = writer.store_logs([log], settings=settings)
    assert fourth.created and count_runs(db) == 4
    # queued again by a scheduler that found it lost: an import cannot be resumed
    update_run(db, fourth.run.id, state="queued")
    (fifth,) = writer.store_logs([log], settings=settings)
    assert fifth.created and count_runs(db) == 5
    assert {r.id: r.state for r in list_runs(db)}[fourth.run.id] == "failed"


def test_an_import_whose_pid_now_names_a_newer_process_is_abandoned(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    from datetime import timedelta

    from hypermetric.catalog.runs import update_run
    from hypermetric.catalog.types import utcnow

    (log,) = read_lmeval_dir(_folder(tmp_path))
    (first,) = writer.store_logs([log], settings=settings)
    # a live import (this process, started before the run): left to finish
    update_run(db, first.run.id, state="running", pid=os.getpid(), started_at=utcnow())
    (again,) = writer.store_logs([log], settings=settings)
    assert not again.created and again.run.id == first.run.id
    # its process died and the system gave its pid to a process started since
    newer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = utcnow() - timedelta(hours=1)
        update_run(db, first.run.id, state="running", pid=newer.pid, started_at=started)
        (second,) = writer.store_logs([log], settings=settings)
    finally:
        newer.kill()
        newer.wait()
    assert second.created and second.run.id != first.run.id
    states = {r.id: r.state for r in list_runs(db)}
    assert states[first.run.id] == "failed" and states[second.run.id] == "success"
