"""What the CLI prints on its own behalf never shows a credential: its error line, and the
warnings of loggers nothing was set up for."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from click.testing import CliRunner

from hypermetric.catalog.db import Database
from hypermetric.cli import cli
from hypermetric.config import Settings, reset_settings


def test_an_error_that_quotes_a_uri_is_printed_masked(settings: Settings, db: Database) -> None:
    # pyarrow's own message quotes the URI it was given, credentials and all
    reset_settings(replace(settings, storage="nope://AKIDKEY1:Secret-Key-1@bucket/x"))
    result = CliRunner().invoke(cli, ["sql", "SELECT 1"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert "nope://***@bucket/x" in result.output
    assert "Secret-Key-1" not in result.output and "AKIDKEY1" not in result.output


def test_warnings_of_unconfigured_loggers_are_masked(
    settings: Settings,
    db: Database,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logging, "lastResort", logging.lastResort)  # put back after the test
    assert CliRunner().invoke(cli, ["runs", "list"]).exit_code == 0
    record = logging.LogRecord(
        "hypermetric.anywhere",
        logging.WARNING,
        __file__,
        1,
        "cannot reach %s",
        ("postgresql://hm:Pw-Secret-1@db/hm",),
        None,
    )
    assert logging.lastResort is not None
    logging.lastResort.handle(record)
    assert capsys.readouterr().err == "cannot reach postgresql://***@db/hm\n"
