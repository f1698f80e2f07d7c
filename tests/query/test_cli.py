"""``hypermetric sql``, ``history``, ``compact``, ``clean`` and ``versions`` through the runner."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from hypermetric.catalog.db import Database
from hypermetric.catalog.shards import latest_version_id
from hypermetric.catalog.types import utcnow
from hypermetric.cli import cli
from hypermetric.cli.storage import parse_before
from hypermetric.config import Settings
from hypermetric.storage.schemas import CALLS_SCHEMA
from tests.query.conftest import Runs, ids, scores_table


def _invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_sql_on_a_fresh_home(settings: Settings, db: Database) -> None:
    result = _invoke("sql", "SELECT * FROM scores")
    assert result.exit_code == 0, result.output
    assert "example_id" in result.output and "no rows" in result.output
    for view in ("calls", "runs", "evaluations", "dataset_versions"):
        assert _invoke("sql", f"SELECT count(*) AS n FROM {view}").exit_code == 0
    out = _invoke("sql", "SELECT column_name FROM (DESCRIBE calls)", "--format", "csv")
    assert [r[0] for r in csv.reader(io.StringIO(out.output))] == [
        "column_name",
        *CALLS_SCHEMA.names,
    ]


def test_sql_formats_and_output(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.run(build=lambda rid: scores_table(rid, ids(3), [1.0, None, 0.5]))
    query = "SELECT example_id, value, created_at FROM scores ORDER BY 1"
    as_csv = _invoke("sql", query, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [r["value"] for r in rows] == ["1", "", "0.5"]
    as_json = json.loads(_invoke("sql", query, "--format", "json").output)
    assert [r["value"] for r in as_json] == [1.0, None, 0.5]
    assert as_json[0]["created_at"].startswith("2026-11-01T02:00:00")
    target = tmp_path / "out.parquet"
    done = _invoke("sql", query, "--format", "parquet", "--output", str(target))
    assert done.exit_code == 0, done.output
    assert pq.read_table(target).column("example_id").to_pylist() == ids(3)
    text = tmp_path / "out.txt"
    assert _invoke("sql", query, "--output", str(text)).exit_code == 0
    assert "ex000002" in text.read_text()
    piped = _invoke("sql", "-", "--format", "csv", stdin=f"SELECT {run_id} AS r")
    assert list(csv.reader(io.StringIO(piped.output))) == [["r"], [str(run_id)]]
    many = _invoke("sql", "SELECT * FROM range(500)", "--max-rows", "7")
    assert "first 7 rows" in many.output
    needs_file = _invoke("sql", query, "--format", "parquet")
    assert needs_file.exit_code == 2 and "--output" in needs_file.output


def test_sql_as_of_and_expired_versions(runs: Runs, db: Database) -> None:
    runs.run(build=lambda rid: scores_table(rid, ids(4), [1.0] * 4))
    version = latest_version_id(db)
    runs.run(build=lambda rid: scores_table(rid, ids(6), [1.0] * 6))
    now = _invoke("sql", "SELECT count(*) FROM scores", "--format", "csv")
    then = _invoke("sql", "SELECT count(*) FROM scores", "--format", "csv", "--as-of", str(version))
    assert now.output.split()[-1] == "10" and then.output.split()[-1] == "4"
    soon = (utcnow() + timedelta(seconds=1)).isoformat()
    assert _invoke("clean", "--before", soon).exit_code == 0
    line = _one_error_line(_invoke("sql", "SELECT 1", "--as-of", str(version)))
    assert f"dataset version {version} was expired" in line
    line = _one_error_line(_invoke("sql", "SELECT 1", "--as-of", "999"))
    assert "no dataset version 999" in line


def test_bad_queries_and_writes_are_one_line_errors(runs: Runs, tmp_path: Path) -> None:
    runs.run(build=lambda rid: scores_table(rid, ids(2), [1.0, 0.0]))
    assert "Parser Error: syntax error" in _one_error_line(_invoke("sql", "SELEC 1"))
    line = _one_error_line(_invoke("sql", "SELECT nope FROM scores"))
    assert line.startswith('error: Binder Error: Referenced column "nope" not found')
    line = _one_error_line(_invoke("sql", "SELECT 1/0::INTEGER + 'x'::INTEGER"))
    assert "Conversion Error" in line
    for fmt in ("table", "csv", "json"):  # raised while rows are produced
        line = _one_error_line(_invoke("sql", "SELECT example_id::INTEGER FROM scores", "-f", fmt))
        assert "Conversion Error" in line and "ex000000" in line
    target = tmp_path / "stolen.csv"
    assert "COPY statements are refused" in _one_error_line(
        _invoke("sql", f"COPY (SELECT * FROM scores) TO '{target}'")
    )
    assert not target.exists()
    for statement in (
        f"ATTACH '{tmp_path / 'x.duckdb'}' AS x",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
    ):
        assert "Permission Error" in _one_error_line(_invoke("sql", statement))
    assert not (tmp_path / "x.duckdb").exists()


def test_history_compact_versions_and_clean(runs: Runs, db: Database) -> None:
    rng = np.random.default_rng(0)
    for mean in (0.8, 0.8, 0.8, 0.5):
        runs.run(
            build=lambda rid, m=mean: scores_table(rid, ids(300), rng.normal(m, 0.05, 300)),
            shards=3,
        )
    shown = _invoke("history", "qa")
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("▼ down") == 1 and "exact_match" in shown.output
    assert "v1" in shown.output
    assert _invoke("history", "qa", "--metric", "nothing").output.startswith("no scores")
    assert "no evaluation 'nope'" in _one_error_line(_invoke("history", "nope"))

    compacted = _invoke("compact", "--target-rows", "10000")
    assert compacted.exit_code == 0, compacted.output
    assert "12" in compacted.output and "1200" in compacted.output
    listed = _invoke("versions")
    assert "compact" in listed.output and "compacted 12 shards into 1 file" in listed.output
    dry = _invoke("clean", "--before", "30d", "--dry-run")
    assert dry.exit_code == 0 and "would expire versions: 0" in dry.output
    done = _invoke("clean", "--before", (utcnow() + timedelta(seconds=1)).isoformat())
    assert done.exit_code == 0, done.output
    assert "did delete shard files: 12" in done.output
    assert _invoke("sql", "SELECT count(*) FROM scores", "--format", "csv").output.split()[-1] == (
        "1200"
    )
    assert _invoke("clean", "--before", "yesterday").exit_code == 2


def test_parse_before() -> None:
    now = utcnow()
    assert parse_before("7d", now) == now - timedelta(days=7)
    assert parse_before("2026-01-31").isoformat() == "2026-01-31T00:00:00+00:00"
    assert parse_before("2026-01-31T12:00+02:00").isoformat() == "2026-01-31T10:00:00+00:00"
    with pytest.raises(Exception, match="not a date"):
        parse_before("soon")
