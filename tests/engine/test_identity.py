"""Example identity through real runs: the same ids whatever the unit size or the number of
workers, compare pairing every example once, and duplicate explicit ids refused before
anything is committed."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hypermetric import compare, sql
from hypermetric.catalog.db import database
from hypermetric.catalog.runs import list_runs
from hypermetric.catalog.shards import live_shards
from hypermetric.config import Settings, reset_settings
from hypermetric.engine.runner import run_runtime
from hypermetric.errors import DatasetError
from tests.engine import sample
from tests.engine.conftest import run_cli

pytestmark = pytest.mark.ray

# 200 examples without ids: 50 distinct contents, each four times
TWINS = [{"question": f"q{i % 50}", "answer": f"q{i % 50}:{i % 50}"} for i in range(200)]


def _run_basic(dataset: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(
        env, "run", "tests.engine.sample:basic", "--dataset", str(dataset), "--no-progress"
    )


def _ids(run_id: int) -> list[str]:
    rows = sql(
        f"SELECT example_id FROM calls WHERE run_id = {run_id} AND component = 'engine-twins' "
        "ORDER BY example_id"
    ).fetchall()
    return [r[0] for r in rows]


def test_ids_do_not_depend_on_the_unit_size_or_the_workers(engine_settings: Settings) -> None:
    runs = []
    for unit_size, workers in ((1, 2), (7, 1), (7, 2), (2000, 1), (2000, 2)):
        reset_settings(replace(engine_settings, unit_size=unit_size, workers=workers))
        runs.append(run_runtime(sample.twins, dataset=TWINS))
    ids = [_ids(run.id) for run in runs]
    assert len(ids[0]) == 200 and len(set(ids[0])) == 200
    assert all(other == ids[0] for other in ids[1:])
    (keys,) = sql(
        "SELECT count(*) = count(DISTINCT (run_id, example_id, component, call_index, metric)) "
        "FROM scores"
    ).fetchall()
    assert keys == (True,)  # every (run, example, call, eval) once, with duplicate contents
    result = compare(runs[0].id, runs[-1].id)
    for metric in result.metrics:
        # 200 pairs: each example with its twin in the other run, never with its repeats
        assert (metric.n, metric.only_a, metric.only_b, metric.errored) == (200, 0, 0, 0)
        assert metric.unchanged == 200


def test_duplicate_explicit_ids_fail_the_run_before_anything_is_committed(
    engine_settings: Settings, env: dict[str, str], ray_cluster: str, tmp_path: Path
) -> None:
    rows = sample.rows(100)
    rows[60]["id"] = 7
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = _run_basic(path, {**env, "RAY_ADDRESS": ray_cluster})
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: duplicate example id '7': {path} line 8 and {path} line 61 both have it; "
        "give every example its own id (or drop the field to use content hashes)"
    ]
    (run,) = list_runs(database(), evaluation="engine-basic")
    assert run.state == "failed" and "duplicate example id '7'" in (run.error or "")
    assert live_shards(database(), "scores") == live_shards(database(), "calls") == []
    # a list: its rows are named
    with pytest.raises(DatasetError, match="row 7 of the dataset and row 60 of the dataset"):
        run_runtime(sample.basic, dataset=rows)
    assert live_shards(database(), "scores") == []


def test_a_malformed_jsonl_line_is_one_line_and_a_failed_run(
    engine_settings: Settings, env: dict[str, str], ray_cluster: str, tmp_path: Path
) -> None:
    path = tmp_path / "broken.jsonl"
    good = "".join(json.dumps(r) + "\n" for r in sample.rows(300))
    path.write_text(good + '{"id": 300, "question": \n')
    done = _run_basic(path, {**env, "RAY_ADDRESS": ray_cluster})
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path} line 301 is not valid JSON")
    (run,) = list_runs(database(), evaluation="engine-basic")
    assert run.state == "failed" and "line 301 is not valid JSON" in (run.error or "")
