"""``hypermetric run``, ``runs resume`` and ``runs cancel`` through the CLI runner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.runs import create_run, get_run, list_runs
from hypermetric.cli import cli
from hypermetric.config import Settings
from tests.engine.conftest import assert_exactly_once

pytestmark = pytest.mark.ray


def test_run_prints_the_summary_and_stores_the_params(engine_settings: Settings) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "tests.engine.sample:basic",
            "--version",
            "v9",
            "--param",
            "k=3",
            "--param",
            "model=small",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    run = list_runs(database())[0]
    assert run.state == "success" and run.version_label == "v9"
    assert run.params == {"k": 3, "model": "small"}
    assert f"run {run.id} success: 1000 examples, 2000 scores, 0 errors" in result.output
    assert "echo_id" in result.output and "exact" in result.output  # the summary table
    assert_exactly_once(run.id, 2000)


def test_bad_targets_and_params_are_one_line_errors(engine_settings: Settings) -> None:
    runner = CliRunner()
    cases = {
        "tests.engine.nope:basic": "cannot import tests.engine.nope:basic",
        "tests.engine.sample:rows": "is a function, not an @hm.runtime",
        "no-colon": "is not MODULE:NAME",
    }
    for target, message in cases.items():
        result = runner.invoke(cli, ["run", target])
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.output
    result = runner.invoke(cli, ["run", "tests.engine.sample:basic", "--param", "oops"])
    assert result.exit_code == 2 and "is not k=v" in result.output


def test_a_failed_run_exits_1_with_its_reason(engine_settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["run", "tests.engine.sample:strict_mixed", "--no-progress"])
    assert result.exit_code == 1
    assert "above max_error_rate" in result.output.strip().splitlines()[-1]


def test_resume_starts_a_queued_run_and_cancel_refuses_ended_ones(
    engine_settings: Settings,
) -> None:
    db = database()
    ev = upsert_evaluation(db, "engine-basic", import_path="tests.engine.sample:basic")
    run = create_run(db, ev.id, run_type="manual", dataset="runtime", unit_size=25)
    runner = CliRunner()
    result = runner.invoke(cli, ["runs", "resume", str(run.id), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert get_run(db, run.id).state == "success"
    assert_exactly_once(run.id, 2000)
    result = runner.invoke(cli, ["runs", "resume", str(run.id)])
    assert result.exit_code == 1 and "nothing to resume" in result.output
    result = runner.invoke(cli, ["runs", "cancel", str(run.id)])
    assert result.exit_code == 1 and "only queued or running runs cancel" in result.output
    queued = create_run(db, ev.id, run_type="manual")
    result = runner.invoke(cli, ["runs", "cancel", str(queued.id)])
    assert result.exit_code == 0 and get_run(db, queued.id).state == "canceled"
