"""Runs on the session's Ray cluster: every score stored exactly once, also through faults.

Each fault is real: an evaluator process or a worker process exits in the middle of a run,
or the driver process is killed with SIGKILL and the run is resumed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hypermetric.catalog.db import database
from hypermetric.catalog.runs import cancel_run, get_run, list_runs
from hypermetric.catalog.shards import committed_unit_ids, live_shards
from hypermetric.config import Settings, reset_settings
from hypermetric.engine.coordinator import Progress
from hypermetric.engine.runner import resume_run, run_runtime
from hypermetric.errors import BindingError, DatasetError, EngineError, RunFailedError
from tests.engine import sample
from tests.engine.conftest import assert_exactly_once, committed, kill_cli_run, values_of

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ray


def test_a_run_stores_every_score_once_on_its_example(engine_settings: Settings) -> None:
    run = run_runtime(sample.basic, version="v2", params={"temperature": 0})
    assert run.state == "success" and run.version_label == "v2" and run.attempt == 1
    assert (run.examples_done, run.rows_count, run.calls_count) == (1000, 2000, 2000)
    assert run.shard_count > 4  # flushed at the row threshold, not once at the end
    table = assert_exactly_once(run.id, 2000)
    echo = values_of(table, "echo_id")
    assert len(echo) == 1000 and set(echo) == {0.0}  # each score sits on its own example
    assert committed(run.id, "calls").num_rows == 2000
    assert run.versions and set(run.versions["components"]) == {"answer"}


def test_no_lost_tail_below_the_flush_threshold(engine_settings: Settings) -> None:
    run = run_runtime(sample.basic, dataset=sample.rows(7))
    # no threshold is reached: each evaluator writes its scores, calls and examples in the
    # final flush
    assert run.state == "success" and run.shard_count in (3, 6)  # 2 evaluators on the cluster
    assert_exactly_once(run.id, 14)


def test_async_components_overlap_up_to_concurrency(engine_settings: Settings) -> None:
    reset_settings(replace(engine_settings, workers=2))
    run = run_runtime(sample.concurrent)
    table = assert_exactly_once(run.id, 800)
    peaks = values_of(table, "peak")  # measured per run in each worker process
    # concurrency 16 over 2 workers: up to 8 examples of the run in flight in each one
    assert 1 < max(peaks) <= 8
    echo = values_of(table, "echo_id")
    assert set(echo) == {0.0}
    # the same warm workers, concurrency 2: one example at a time each, whatever the
    # previous run reached in those processes
    pairs = run_runtime(sample.concurrent_pairs)
    assert set(values_of(assert_exactly_once(pairs.id, 200), "peak")) == {1.0}


@pytest.mark.parametrize("form", ["list", "jsonl"])
def test_a_short_dataset_is_cut_into_units_for_every_actor(
    engine_settings: Settings, tmp_path: Path, form: str
) -> None:
    reset_settings(replace(engine_settings, unit_size=2000, workers=2, evaluators=2))
    dataset: Any = sample.rows(100)
    if form == "jsonl":
        path = tmp_path / "examples.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in dataset))
        dataset = str(path)
    run = run_runtime(sample.basic, dataset=dataset)
    # 100 examples would be one unit of 2,000, for one driver and one evaluator: 4 units per
    # actor instead, and the size is kept on the run for a resume
    assert run.examples_total == 100
    assert run.unit_size == 13 and len(committed_unit_ids(database(), run.id)) == 8
    assert_exactly_once(run.id, 200)


def test_an_evaluator_killed_mid_run_loses_and_doubles_nothing(
    engine_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "evaluator-crashed"
    rows = sample.rows(600)
    rows[300]["crash_marker"] = str(marker)
    run = run_runtime(sample.crash_evaluator, dataset=rows)
    assert marker.exists()  # the evaluator process really died
    assert run.state == "success"
    assert_exactly_once(run.id, 600)


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(
    engine_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "worker-crashed"
    rows = sample.rows(600)
    rows[310]["worker_marker"] = str(marker)
    run = run_runtime(sample.crash_worker, dataset=rows)
    assert marker.exists()
    assert run.state == "success"
    assert_exactly_once(run.id, 1200)


def test_an_example_that_always_kills_its_worker_fails_the_run_with_its_unit(
    engine_settings: Settings,
) -> None:
    rows = sample.rows(200)
    rows[130]["poison"] = True
    with pytest.raises(EngineError, match=r"unit 5 killed its worker process 4 times"):
        run_runtime(sample.crash_always, dataset=rows)
    run = list_runs(database(), evaluation="engine-crash-always")[0]
    assert run.state == "failed" and "unit 5" in (run.error or "")


def test_a_killed_driver_is_resumed_to_exactly_once(
    engine_settings: Settings, env: dict[str, str], ray_cluster: str
) -> None:
    run_id = kill_cli_run("tests.engine.sample:slow", "engine-slow", env, ray_cluster, 8)
    before = get_run(database(), run_id)
    assert before.state == "running" and before.examples_done < 3000
    resumed = resume_run(run_id)
    assert resumed.state == "success" and resumed.attempt == 2
    assert_exactly_once(run_id, 6000)


def test_an_unbindable_eval_fails_the_run_at_its_first_call(engine_settings: Settings) -> None:
    with pytest.raises(BindingError, match="needs_gold"):
        run_runtime(sample.unbindable)
    run = list_runs(database(), evaluation="engine-unbound")[0]
    assert run.state == "failed" and "'gold'" in (run.error or "")


def test_bad_dataset_paths_fail_before_any_run(engine_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        run_runtime(sample.basic, dataset=str(tmp_path / "missing.jsonl"))
    not_parquet = tmp_path / "scores.parquet"
    not_parquet.write_text("id,question\n1,q\n")
    with pytest.raises(DatasetError, match="cannot be parsed as parquet"):
        run_runtime(sample.basic, dataset=str(not_parquet))
    assert list_runs(database()) == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "".join(f'{{"id": {i}, "question": "q", "answer": "a"}}\n' for i in range(40)) + "{oops\n"
    )
    with pytest.raises(DatasetError, match="line 41"):
        run_runtime(sample.basic, dataset=str(bad))
    assert list_runs(database())[0].state == "failed"


def test_errors_are_rows_until_the_error_budget_is_spent(engine_settings: Settings) -> None:
    ok = run_runtime(sample.mixed_outputs)
    assert ok.state == "success" and ok.errors_count > 0
    with pytest.raises(RunFailedError, match=r"above max_error_rate 5\.0%"):
        run_runtime(sample.strict_mixed)
    failed = list_runs(database(), evaluation="engine-strict")[0]
    assert failed.state == "failed" and "max_error_rate" in (failed.error or "")


def test_an_endless_dataset_is_read_only_as_fast_as_it_is_scored(
    engine_settings: Settings,
) -> None:
    read = [0]

    def endless() -> Iterator[dict[str, Any]]:
        for i in itertools.count():
            read[0] += 1
            yield {"id": i, "question": f"q{i}", "answer": "x"}

    source = endless()
    gaps: list[int] = []

    def watch(progress: Progress) -> None:
        # units in flight are bounded: driving (2 x 2) + waiting (2) + evaluating (2)
        # + buffered in the evaluator until a 200-row flush (4 units) = 12 units of 25
        gaps.append(read[0] - progress.examples_done)
        assert gaps[-1] <= 16 * 25 + 25
        if progress.examples_done >= 2000 and not canceled:
            canceled.append(cancel_run(database(), runs[0].id))

    runs: list[Any] = []
    canceled: list[Any] = []
    original = watch

    def first(progress: Progress) -> None:
        if not runs:
            runs.extend(list_runs(database(), evaluation="engine-endless"))
        original(progress)

    with pytest.raises(RunFailedError, match="canceled"):
        run_runtime(sample.endless, dataset=source, progress=first)
    assert get_run(database(), runs[0].id).state == "canceled"
    assert len(gaps) > 5


def test_evaluators_write_ahead_once_the_source_is_exhausted(engine_settings: Settings) -> None:
    # no flush threshold is reached (not even the age one, which a loaded machine would
    # reach): once the last unit is read, the evaluator writes what it holds while the
    # drivers drive the last few, so the write after the last unit (with every driver
    # idle) holds a few units only, not the whole run
    reset_settings(
        replace(engine_settings, workers=2, evaluators=1, flush_rows=10**9, flush_seconds=1e9)
    )
    run = run_runtime(sample.basic, dataset=sample.rows(1000))
    assert_exactly_once(run.id, 2000)
    shards = live_shards(database(), "scores", run_ids=[run.id])
    assert [s.rows for s in shards][1:] and sum(s.rows for s in shards) == 2000
    assert shards[0].rows >= 1500 and shards[-1].rows <= 500  # 40 units: 4 driving at most
