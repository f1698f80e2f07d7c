"""``hypermetric scheduler`` through the CLI runner: one pass, and bad options."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import CliRunner

from hypermetric.catalog.db import Database
from hypermetric.catalog.instances import list_instances
from hypermetric.catalog.records import EvaluationRecord
from hypermetric.catalog.runs import list_runs
from hypermetric.cli import cli
from hypermetric.scheduler.definitions import trigger


def test_once_does_one_pass_and_exits(
    db: Database, define: Callable[..., EvaluationRecord]
) -> None:
    define(schedule="0 0 * * *", catchup=False)  # stored at the fixture clock's T0
    trigger(db, "every2")
    result = CliRunner().invoke(
        cli, ["scheduler", "--once", "--launcher", "tests.scheduler.fakes:instant"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        "one pass: 1 created, 1 launched, 0 resumed, 0 retried, 0 failed\n"
    )
    # the latest interval only (no catchup); the manual run, older, launched first
    manual, scheduled = sorted(list_runs(db), key=lambda r: r.id)
    assert manual.state == "running" and manual.attempt == 1  # it goes on without us
    assert scheduled.run_type == "scheduled" and scheduled.state == "queued"
    assert [i.state for i in list_instances(db)] == ["stopped"]


def test_a_launcher_that_does_not_import_is_one_line(db: Database) -> None:
    result = CliRunner().invoke(cli, ["scheduler", "--once", "--launcher", "nowhere:factory"])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot import the launcher nowhere:factory: ")
    assert result.output.count("\n") == 1
    assert list_instances(db) == []
