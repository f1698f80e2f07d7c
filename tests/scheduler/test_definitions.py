"""Registering runtimes: what is stored, updates, and bad input refused whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import get_evaluation, list_evaluations
from hypermetric.catalog.runs import create_run
from hypermetric.cli import cli
from hypermetric.errors import DefinitionError, HypermetricError, ScheduleError
from hypermetric.scheduler.clock import ManualClock
from hypermetric.scheduler.definitions import register
from tests.scheduler.conftest import T0
from tests.scheduler.helpers import write_runtime


def test_register_stores_the_whole_definition(
    db: Database, tmp_path: Path, clock: ManualClock
) -> None:
    path = write_runtime(
        tmp_path,
        schedule="0 2 * * *",
        timezone="Europe/Paris",
        catchup=True,
        start_date="2026-10-30",
        max_active_runs=3,
        retries=2,
        retry_delay=30,
        retry_exponential=False,
        timeout=600,
        max_error_rate=0.25,
        params={"k": 5},
        version="model-v8",
    )
    done = register(db, path, clock=clock)
    ev = done.evaluation
    assert done.created and ev.name == "nightly" and ev.import_path == path
    assert (ev.schedule, ev.timezone, ev.catchup) == ("0 2 * * *", "Europe/Paris", True)
    assert ev.start_date == datetime(2026, 10, 29, 23, tzinfo=UTC)  # midnight in Paris
    assert (ev.max_active_runs, ev.retries, ev.retry_delay_s, ev.retry_exponential) == (
        3,
        2,
        30.0,
        False,
    )
    assert (ev.timeout_s, ev.max_error_rate, ev.params) == (600.0, 0.25, {"k": 5})
    assert ev.version_label == "model-v8" and ev.code_version
    # catchup from the start date: the first interval starts at 02:00 on Oct 30 in Paris
    assert ev.next_logical_date == datetime(2026, 10, 30, 1, tzinfo=UTC)
    assert ev.next_due_at == datetime(2026, 10, 31, 1, tzinfo=UTC)


def test_registering_again_updates_and_never_repeats_an_interval(
    db: Database, tmp_path: Path, clock: ManualClock
) -> None:
    day = timedelta(days=1)
    two = T0.replace(hour=2)
    first = register(db, write_runtime(tmp_path, schedule="0 2 * * *"), clock=clock).evaluation
    # the latest complete interval, due at once
    assert (first.next_logical_date, first.next_due_at) == (two - day, two)
    create_run(
        db, first.id, run_type="scheduled", logical_date=two - day, data_interval=(two - day, two)
    )
    again = register(db, write_runtime(tmp_path, schedule="0 2 * * *", retries=4), clock=clock)
    assert not again.created and again.evaluation.retries == 4
    assert again.evaluation.next_logical_date == first.next_logical_date  # schedule unchanged
    moved = register(db, write_runtime(tmp_path, schedule="0 3 * * *"), clock=clock).evaluation
    # a new schedule continues from the end of the last run's interval, never before it
    assert (moved.next_logical_date, moved.next_due_at) == (two, T0.replace(hour=3))
    assert len(list_evaluations(db)) == 1


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"schedule": "every night"}, ScheduleError, "cron 'every night' has 2 fields"),
        ({"schedule": "0 25 * * *"}, ScheduleError, "invalid cron '0 25 \\* \\* \\*'"),
        ({"schedule": "0 2 * * *", "timezone": "Mars/Olympus"}, ScheduleError, "unknown timezone"),
        (
            {"schedule": "0 2 * * *", "start_date": "2026-02-01", "end_date": "2026-01-01"},
            ScheduleError,
            "is before start_date",
        ),
    ],
)
def test_bad_definitions_are_refused_whole(
    db: Database,
    tmp_path: Path,
    options: dict[str, str],
    error: type[HypermetricError],
    message: str,
) -> None:
    with pytest.raises(error, match=message) as info:
        register(db, write_runtime(tmp_path, **options))
    assert "\n" not in str(info.value)
    assert list_evaluations(db) == []


def test_an_import_path_that_does_not_import(db: Database, tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot import no_such_module_here:qa"):
        register(db, "no_such_module_here:qa")
    broken = tmp_path / "hm_broken_mod.py"
    broken.write_text("raise RuntimeError('broken on purpose')\n")
    with pytest.raises(DefinitionError, match="RuntimeError: broken on purpose"):
        register(db, f"{broken}:qa")
    with pytest.raises(DefinitionError, match=r"is a int, not an @hm\.runtime"):
        (tmp_path / "hm_not_runtime.py").write_text("qa = 3\n")
        register(db, f"{tmp_path / 'hm_not_runtime.py'}:qa")
    assert list_evaluations(db) == []


def test_a_bad_update_leaves_the_stored_definition_as_it_was(db: Database, tmp_path: Path) -> None:
    register(db, write_runtime(tmp_path, schedule="0 2 * * *", retries=1))
    before = get_evaluation(db, "nightly")
    with pytest.raises(ScheduleError):
        register(db, write_runtime(tmp_path, schedule="0 2 * *", retries=5))
    assert get_evaluation(db, "nightly") == before


def test_cli_register_show_pause_trigger_list(
    db: Database, tmp_path: Path, env: dict[str, str]
) -> None:
    runner = CliRunner()
    path = write_runtime(tmp_path, schedule="30 2 * * *", timezone="America/New_York")
    result = runner.invoke(cli, ["evals", "register", path])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("registered 'nightly' from ")
    # the latest complete interval runs at once, and the command says so
    assert "; next run: due now for the interval starting " in result.output
    shown = runner.invoke(cli, ["evals", "show", "nightly"])
    assert shown.exit_code == 0 and "30 2 * * * (America/New_York)" in shown.output
    assert runner.invoke(cli, ["evals", "pause", "nightly"]).output == "paused 'nightly'\n"
    triggered = runner.invoke(cli, ["evals", "trigger", "nightly", "--param", "k=3", "-p", "s=x"])
    assert triggered.exit_code == 0
    assert "queued manual run 1 of 'nightly'; the evaluation is paused" in triggered.output
    listed = runner.invoke(cli, ["evals", "list"])
    assert "#1 queued" in listed.output and "yes" in listed.output
    unpaused = runner.invoke(cli, ["evals", "unpause", "nightly"])
    assert unpaused.output.startswith("unpaused 'nightly'; next run: due ")
    runs = runner.invoke(cli, ["runs", "list", "--type", "manual"])
    assert "manual" in runs.output


def test_cli_errors_are_one_line(db: Database, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["evals", "register", write_runtime(tmp_path, schedule="* * *")])
    assert bad.exit_code == 1
    assert bad.output.startswith("error: cron '* * *' has 3 fields") and bad.output.count("\n") == 1
    missing = runner.invoke(cli, ["evals", "trigger", "nope"])
    assert missing.exit_code == 1 and "no evaluation 'nope'" in missing.output
