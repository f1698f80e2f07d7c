"""``hypermetric db``, ``runs`` and ``evals`` through the CLI runner, and the error contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.runs import create_run
from hypermetric.cli import cli
from hypermetric.config import Settings


def test_every_group_has_help() -> None:
    runner = CliRunner()
    for args in (["--help"], ["db", "--help"], ["runs", "--help"], ["evals", "--help"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_db_current_upgrade_and_runs_listing(settings: Settings, db: Database) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "current"])
    assert result.exit_code == 0 and "up to date" in result.output
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0 and "0006" in result.output
    ev = upsert_evaluation(db, "nightly-qa", schedule="0 2 * * *")
    run = create_run(db, ev.id, run_type="manual", version_label="v7")
    result = runner.invoke(cli, ["runs", "list"])
    assert result.exit_code == 0
    assert "nightly-qa" in result.output and "v7" in result.output
    result = runner.invoke(cli, ["runs", "list", "--state", "success"])
    assert "no runs" in result.output
    result = runner.invoke(cli, ["runs", "show", str(run.id)])
    assert result.exit_code == 0 and "manual" in result.output
    result = runner.invoke(cli, ["evals", "list"])
    assert "nightly-qa" in result.output and "0 2 * * *" in result.output


def test_errors_are_one_line_and_exit_non_zero(settings: Settings, db: Database) -> None:
    result = CliRunner().invoke(cli, ["runs", "show", "999"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: no run 999; `hypermetric runs list` shows the runs"
    ]
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = {"HYPERMETRIC_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    plain = subprocess.run(
        [sys.executable, "-m", "hypermetric", "runs", "show", "5"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("error: no run 5")
    debug = subprocess.run(
        [sys.executable, "-m", "hypermetric", "--debug", "runs", "show", "5"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_embedded_default_creates_the_db_by_itself(tmp_path: Path) -> None:
    env = {"HYPERMETRIC_HOME": str(tmp_path / "fresh"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "hypermetric", "runs", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "no runs" in done.stdout
    assert (tmp_path / "fresh" / "hypermetric.db").exists()
