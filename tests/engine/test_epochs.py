"""Epochs and the examples dataset on the session's Ray cluster: each example K times with
seeded randomness, exactly once through a killed driver and a retry, the examples view one
row per example, the wide-field setting, the scheduler's queued runs and rescores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from hypermetric import sql
from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.runs import create_run, get_run, list_runs
from hypermetric.catalog.shards import latest_version_id
from hypermetric.cli import cli
from hypermetric.config import Settings, reset_settings
from hypermetric.engine.runner import rescore_run, resume_run, retry_run, run_runtime
from hypermetric.errors import QueryError, RunFailedError
from tests.engine import epochs_sample
from tests.engine.conftest import kill_cli_run
from tests.engine.epochs_sample import seeded

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ray


def _assert_epochs(run_id: int, n: int, epochs: int = 3) -> None:
    """Every example of the run scored once in each epoch, each epoch's value the draw
    seeded on (example, epoch); its calls once per epoch; its fields once."""
    rows = sql(
        "SELECT example_id, metric, list(epoch ORDER BY epoch), list(value ORDER BY epoch) "
        f"FROM scores WHERE run_id = {run_id} GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert len(rows) == n
    for example_id, metric, found, values in rows:
        assert metric == "draw" and found == list(range(epochs))
        assert values == [seeded(example_id, e) for e in found]
        assert len(set(values)) == epochs  # each epoch drew its own sample
    ((calls, keys),) = sql(
        "SELECT count(*), count(DISTINCT (example_id, component, call_index, epoch)) "
        f"FROM calls WHERE run_id = {run_id}"
    ).fetchall()
    assert calls == keys == 2 * epochs * n  # the sampler's call and the runtime's own
    ((examples, ids),) = sql(
        f"SELECT count(*), count(DISTINCT example_id) FROM examples WHERE run_id = {run_id}"
    ).fetchall()
    assert examples == ids == n


def test_each_example_runs_once_per_epoch_and_the_examples_view_has_its_fields(
    engine_settings: Settings,
) -> None:
    run = run_runtime(epochs_sample.sampled)
    assert run.state == "success" and run.versions and run.versions["epochs"] == 3
    assert (run.examples_done, run.rows_count, run.calls_count) == (60, 180, 360)
    # a unit drives its examples 3 times: of the 25 drives a unit makes, 8 examples
    assert get_run(database(), run.id).unit_size == 25 // 3
    _assert_epochs(run.id, 60)
    ((fields,),) = sql(
        f"SELECT fields FROM examples WHERE run_id = {run.id} AND example_id = '5'"
    ).fetchall()
    assert json.loads(fields) == {"id": 5, "question": "q5", "topic": "math"}
    by_topic = sql(
        "SELECT s.metric, e.fields->>'$.topic' AS topic, count(*) "
        "FROM scores s JOIN examples e USING (run_id, example_id) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert by_topic == [("draw", "history", 90), ("draw", "math", 90)]
    # a rescore replays each stored call in its epoch, and keeps the run's epochs
    again = rescore_run(run.id, runtime=epochs_sample.sampled)
    assert again.versions and again.versions["epochs"] == 3
    _assert_epochs(again.id, 60)


def test_a_killed_run_of_epochs_is_resumed_to_exactly_once(
    engine_settings: Settings, env: dict[str, str], ray_cluster: str
) -> None:
    run_id = kill_cli_run(
        "tests.engine.epochs_sample:sampled_slowly", "engine-epochs-slow", env, ray_cluster, 6
    )
    before = get_run(database(), run_id)
    assert before.state == "running" and before.examples_done < 900
    resumed = resume_run(run_id)
    assert resumed.state == "success" and resumed.attempt == 2
    _assert_epochs(run_id, 900)


def test_a_retry_drives_every_epoch_of_a_failed_example_and_retracts_its_rows(
    engine_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "api-is-back"
    params = {"marker": str(marker), "n": 60}
    with pytest.raises(RunFailedError, match="20 of 60 examples had errors"):
        run_runtime(epochs_sample.flaky_sampled, params=params)
    (run,) = list_runs(database(), evaluation="engine-epochs-flaky")
    before = latest_version_id(database())
    marker.write_text("up")
    done = retry_run(run.id)
    assert (done.state, done.attempt, done.errors_count) == ("success", 2, 0)
    _assert_epochs(run.id, 60)
    # every epoch of the failed examples ran again (not only the failed epoch); the
    # others keep the first attempt's rows, and their examples rows too
    for view, failed, kept in (("scores", 60, 120), ("calls", 120, 240), ("examples", 20, 40)):
        by_attempt = sql(
            f"SELECT run_attempt, count(*) FROM {view} WHERE run_id = {run.id} GROUP BY 1 "
            "ORDER BY 1"
        ).fetchall()
        assert by_attempt == [(1, kept), (2, failed)], view
    # the version before the retry still shows the first attempt's rows, no retried one
    old = sql(
        f"SELECT count(*), count(DISTINCT example_id), max(run_attempt) FROM examples "
        f"WHERE run_id = {run.id}",
        as_of=before,
    ).fetchall()
    assert old == [(60, 60, 1)]
    errors = sql(f"SELECT count(error) FROM scores WHERE run_id = {run.id}", as_of=before)
    assert errors.fetchall() == [(20,)]


def test_wide_and_omitted_fields_are_left_out_of_the_examples(
    engine_settings: Settings,
) -> None:
    reset_settings(replace(engine_settings, example_field_bytes=64))
    rows = [{"id": i, "question": f"q{i}", "secret": "s3cr3t", "doc": "x" * 100} for i in range(6)]
    run = run_runtime(epochs_sample.with_fields, dataset=rows)
    stored = sql(f"SELECT fields FROM examples WHERE run_id = {run.id} ORDER BY example_id")
    assert [json.loads(f) for (f,) in stored.fetchall()] == [
        {"id": i, "question": f"q{i}", "doc": None} for i in range(6)
    ]


def test_a_queued_run_takes_its_runtimes_epochs_and_records_them(
    engine_settings: Settings,
) -> None:
    db = database()
    path = "tests.engine.epochs_sample:sampled"
    ev = upsert_evaluation(db, "engine-epochs", import_path=path)
    # as the scheduler queues a run: no versions yet; its launcher resumes it
    queued = create_run(db, ev.id, run_type="scheduled", dataset="runtime", unit_size=25)
    done = resume_run(queued.id)
    assert done.state == "success" and done.versions and done.versions["epochs"] == 3
    _assert_epochs(queued.id, 60)


def test_hypermetric_run_takes_the_epochs_of_the_runtime_or_of_its_option(
    engine_settings: Settings,
) -> None:
    runner = CliRunner()
    target = "tests.engine.epochs_sample:sampled"
    done = runner.invoke(cli, ["run", target, "--epochs", "2", "--no-progress"])
    assert done.exit_code == 0, done.output
    (run,) = list_runs(database(), evaluation="engine-epochs")
    assert run.versions and run.versions["epochs"] == 2
    _assert_epochs(run.id, 60, epochs=2)
    refused = runner.invoke(cli, ["run", target, "--epochs", "0"])
    assert refused.exit_code == 2 and "--epochs" in refused.output


def test_compare_pairs_examples_over_their_epochs_as_sql_reduces_them(
    engine_settings: Settings,
) -> None:
    a = run_runtime(epochs_sample.salted, params={"salt": "a"})
    b = run_runtime(epochs_sample.salted, params={"salt": "b"})
    per_example = f"""SELECT example_id,
        avg(value) FILTER (WHERE run_id = {a.id}) AS va,
        avg(value) FILTER (WHERE run_id = {b.id}) AS vb,
        var_samp(value) FILTER (WHERE run_id = {a.id}) AS wa
      FROM scores WHERE run_id IN ({a.id}, {b.id}) AND component = 'sampler' GROUP BY ALL"""
    ((n, delta, mean_a, within_a, improved),) = sql(
        f"SELECT count(*), avg(vb - va), avg(va), avg(wa), count(*) FILTER (WHERE vb > va) "
        f"FROM ({per_example})"
    ).fetchall()
    from hypermetric.query.compare import compare

    (m,) = compare(a.id, b.id, metric="draw").metrics
    assert m.component == "sampler" and m.n == n == 40  # examples, not 120 epochs
    assert m.delta == pytest.approx(delta, rel=1e-9)
    assert m.mean_a == pytest.approx(mean_a, rel=1e-9)
    assert m.within_var_a == pytest.approx(within_a, rel=1e-9)
    assert m.improved == improved
    # majority and pass@k need 0/1 values: a draw is not one
    with pytest.raises(QueryError, match=r"--reduce majority needs a 0/1 metric"):
        compare(a.id, b.id, metric="draw", reduce="majority")
