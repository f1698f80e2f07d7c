"""``hypermetric runs logs RUN`` with the local launcher: the run's log file, or one line."""

from __future__ import annotations

from click.testing import CliRunner

from hypermetric.catalog.db import Database
from hypermetric.cli import cli
from hypermetric.config import Settings
from hypermetric.scheduler.definitions import store_definition, trigger
from tests.scheduler.conftest import DEFAULTS


def test_runs_logs_prints_the_log_file_or_says_there_is_none(
    db: Database, settings: Settings
) -> None:
    store_definition(db, "logged", {**DEFAULTS, "schedule": None})
    run = trigger(db, "logged")
    result = CliRunner().invoke(cli, ["runs", "logs", str(run.id)])
    assert result.exit_code == 0, result.output
    path = settings.home / "logs" / "runs" / f"run-{run.id}.log"
    assert result.output.splitlines() == [
        f"run {run.id} has no logs: no {path} (a run started by `hypermetric run` printed to "
        "its terminal; --launcher ray-jobs reads Ray jobs)"
    ]
    path.parent.mkdir(parents=True)
    path.write_text("starting\nconnecting to postgresql://hm:hunter2-secret@db/hm\n")
    result = CliRunner().invoke(cli, ["runs", "logs", str(run.id)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"== {path} ==",
        "starting",
        "connecting to postgresql://***@db/hm",
    ]
