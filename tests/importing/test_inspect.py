"""``hypermetric import inspect``: real Inspect logs in, every sample's scores out, on both DBs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import hypermetric as hm
from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import count_runs, get_run
from hypermetric.catalog.shards import live_shards
from hypermetric.cli import cli
from hypermetric.config import Settings
from hypermetric.storage.files import store_for
from tests.importing.conftest import QUESTIONS, InspectLogs

pytest.importorskip("inspect_ai")


def _import(*args: str) -> Result:
    return CliRunner().invoke(cli, ["import", "inspect", *map(str, args)])


def _run_id(result: Result) -> int:
    assert result.exit_code == 0, result.output
    return int(result.output.split(" as run ")[1].split()[0])


def _expected(path: Path) -> set[tuple[str, int, str, float | None, bool]]:
    """(example, 0-based epoch, metric, value, is an error) of every score of a log, read
    with Inspect's own reader and converted with its own ``value_to_float``."""
    from inspect_ai.log import read_eval_log
    from inspect_ai.scorer import value_to_float

    to_float = value_to_float()
    log = read_eval_log(str(path))
    scorers = [s.name for s in log.eval.scorers]
    rows: set[tuple[str, int, str, float | None, bool]] = set()
    for sample in log.samples:
        key = (str(sample.id), sample.epoch - 1)
        for name in scorers:
            score = (sample.scores or {}).get(name)
            if score is None:
                assert sample.error is not None
                rows.add((*key, name, None, True))
            elif isinstance(score.value, dict):
                rows.update(
                    (*key, f"{name}.{k}", to_float(v), False) for k, v in score.value.items()
                )
            else:
                rows.add((*key, name, to_float(score.value), False))
    return rows


def _stored(settings: Settings, run_id: int) -> set[tuple[str, int, str, float | None, bool]]:
    rows = hm.sql(
        "SELECT example_id, epoch, metric, value, error IS NOT NULL FROM scores "
        f"WHERE run_id = {run_id}",
        settings=settings,
    ).fetchall()
    return {(e, c, m, v, bool(err)) for e, c, m, v, err in rows}


def test_every_sample_score_is_imported(
    settings: Settings, db: Database, inspect_logs: InspectLogs
) -> None:
    run_id = _run_id(_import(inspect_logs.a_eval))
    expected = _expected(inspect_logs.a_eval)
    # 3 samples x 2 epochs x (match, includes and shape's two keys), and the failed
    # sample's error row for each of the 3 scorers in both epochs
    assert len(expected) == 3 * 2 * 4 + 2 * 3
    assert _stored(settings, run_id) == expected
    # spot checks against the mock model's answers, independent of any converter
    values = {(e, c, m): v for e, c, m, v, _ in expected}
    assert values[("q1", 1, "match")] == 1.0 and values[("q3", 0, "match")] == 0.0
    assert values[("2", 0, "match")] == 0.0 and values[("2", 0, "includes")] == 1.0
    assert values[("2", 1, "shape.words")] == 2.0 and values[("2", 1, "shape.long")] == 1.0
    errors = hm.sql(
        f"SELECT DISTINCT error FROM scores WHERE run_id = {run_id} AND example_id = 'q4'",
        settings=settings,
    ).fetchall()
    assert len(errors) == 1 and "the model exploded" in errors[0][0]

    # the examples view: one row per example (not per epoch), its fields as JSON
    examples = hm.sql(
        "SELECT example_id, fields->>'$.input', fields->>'$.target' FROM examples "
        f"WHERE run_id = {run_id} ORDER BY example_id",
        settings=settings,
    ).fetchall()
    assert sorted(examples) == sorted(
        (e, question, target)
        for e, (question, target) in {
            "q1": QUESTIONS["q1"],
            "2": QUESTIONS["q2"],
            "q3": QUESTIONS["q3"],
            "q4": QUESTIONS["q4"],
        }.items()
    )

    run = get_run(db, run_id)
    assert (run.evaluation, run.run_type, run.state) == ("arith", "import", "success")
    assert run.versions["epochs"] == 2
    assert run.version_label == "mockllm/model-a"
    assert run.versions is not None and run.versions["evals"]["match"]["higher_is_better"] is True
    assert run.params["epochs"] == 2
    assert (run.examples_done, run.rows_count, run.calls_count) == (4, 30, 8)


def test_calls_hold_each_sample_input_and_output(
    settings: Settings, db: Database, inspect_logs: InspectLogs
) -> None:
    from inspect_ai.log import read_eval_log

    run_id = _run_id(_import(inspect_logs.b_json))
    rows = hm.sql(
        f"SELECT example_id, epoch, inputs, output, error FROM calls WHERE run_id = {run_id}",
        settings=settings,
    ).fetchall()
    stored = {(e, c): (json.loads(i), o and json.loads(o), err) for e, c, i, o, err in rows}
    log = read_eval_log(str(inspect_logs.b_json))
    assert len(stored) == len(log.samples) == 8
    for sample in log.samples:
        inputs, output, error = stored[(str(sample.id), sample.epoch - 1)]
        assert inputs == {"input": sample.input}
        if sample.error is None:
            assert output == sample.output.completion and error is None
        else:
            assert output is None and "the model exploded" in error


def test_both_formats_history_and_compare(
    settings: Settings, db: Database, inspect_logs: InspectLogs
) -> None:
    from hypermetric.ui.comparison import compare_view

    a = _run_id(_import(inspect_logs.a_eval))
    b = _run_id(_import(inspect_logs.b_json))
    points = hm.history("arith", metric="match", settings=settings)
    assert [(p.run_id, p.version) for p in points] == [
        (a, "mockllm/model-a"),
        (b, "mockllm/model-b"),
    ]
    # q1 right for both; "hi" and "Paris" only for model-b; q4 failed for both
    assert points[0].mean == pytest.approx(2 / 6) and points[1].mean == pytest.approx(6 / 6)

    result = hm.compare(a, b, metric="match", settings=settings)
    (match,) = result.metrics
    # paired by example, each example's two epochs reduced to their mean first
    assert (match.component, match.higher_is_better, match.n) == ("arith", True, 3)
    assert match.delta == pytest.approx(2 / 3)
    assert (match.improved, match.regressed, match.errored) == (2, 0, 1)

    shown = CliRunner().invoke(cli, ["compare", str(a), str(b), "--metric", "match"])
    assert shown.exit_code == 0, shown.output
    assert "arith" in shown.output and "match" in shown.output

    # b against a: model-a regressed on "Say hi" and "Paris"; the web view shows both outputs
    view = compare_view(settings, str(b), str(a), metric="match")
    shown_outputs = {
        (r.change.example_id, r.change.call_index): (
            "".join(s.text for s in r.output_a),
            "".join(s.text for s in r.output_b),
        )
        for r in view.regressions
    }
    assert {e for e, _ in shown_outputs} == {"2", "q3"}
    assert shown_outputs[("q3", 0)] == ("Paris", "no idea")
    # an example's row shows its first epoch's outputs
    assert shown_outputs[("2", 0)] == ("hi", "hi there")


def test_importing_twice_adds_nothing(
    settings: Settings, db: Database, inspect_logs: InspectLogs
) -> None:
    first = _run_id(_import(inspect_logs.a_eval, inspect_logs.b_eval))
    store = store_for(settings)
    before = (count_runs(db), len(live_shards(db, "scores")), sum(1 for _ in store.files()))
    again = _import(inspect_logs.a_eval, inspect_logs.b_eval, "--evaluation", "other")
    assert again.exit_code == 0, again.output
    lines = again.output.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("already imported") for line in lines)
    assert f"is run {first} of arith" in lines[0]
    after = (count_runs(db), len(live_shards(db, "scores")), sum(1 for _ in store.files()))
    assert after == before == (2, 2, 6)


def _truncated(source: Path, tmp_path: Path) -> Path:
    data = source.read_bytes()
    target = tmp_path / f"truncated{source.suffix}"
    target.write_bytes(data[: len(data) // 2])
    return target


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda logs, tmp: _truncated(logs.a_eval, tmp), "not a readable Inspect log"),
        (lambda logs, tmp: _truncated(logs.b_json, tmp), "not a readable Inspect log"),
        (lambda logs, tmp: _write(tmp / "x.json", '{"version": 2}'), "not a readable Inspect log"),
        (lambda logs, tmp: _write(tmp / "x.txt", "hello"), "expected a .eval or .json file"),
        (lambda logs, tmp: tmp / "missing.eval", "no such file"),
        (lambda logs, tmp: _unfinished(logs.b_json, tmp), "did not finish (status started)"),
        (lambda logs, tmp: _edited(logs.b_json, tmp, version=99), "version 99 of log format"),
        (lambda logs, tmp: _edited(logs.b_json, tmp, task=None), "(eval.task: Field required)"),
    ],
)
def test_a_malformed_log_fails_in_one_line_and_writes_nothing(
    settings: Settings,
    db: Database,
    inspect_logs: InspectLogs,
    tmp_path: Path,
    make: Any,
    says: str,
) -> None:
    bad = make(inspect_logs, tmp_path)
    # the good log first: it is not imported either, as every log is read before any write
    result = _import(inspect_logs.a_eval, bad)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: "), result.output
    assert says in lines[0] and "Traceback" not in result.output
    assert count_runs(db) == 0 and live_shards(db, "scores") == []
    assert list(store_for(settings).files()) == []


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _edited(source: Path, tmp_path: Path, **changes: Any) -> Path:
    """The log with its format ``version`` changed, or a field of its ``eval`` removed."""
    data = json.loads(source.read_text())
    if "version" in changes:
        data["version"] = changes["version"]
    for name in set(changes) - {"version"}:
        del data["eval"][name]
    return _write(tmp_path / "edited.json", json.dumps(data))


def _unfinished(source: Path, tmp_path: Path) -> Path:
    data = json.loads(source.read_text())
    data["status"] = "started"
    return _write(tmp_path / "started.json", json.dumps(data))


def test_without_inspect_ai_the_error_says_what_to_install(
    settings: Settings, inspect_logs: InspectLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "inspect_ai.log", None)
    result = _import(inspect_logs.a_eval)
    assert result.exit_code == 1
    assert result.output.strip() == (
        'error: importing Inspect logs needs inspect_ai: pip install "hypermetric[inspect]"'
    )


def test_values_convert_as_inspect_converts_them() -> None:
    from inspect_ai.scorer import value_to_float

    from hypermetric.importing.inspect_logs import inspect_float

    reference = value_to_float()
    for value in ["C", "I", "P", "N", "yes", "No", "TRUE", "false", "0.25", "-3", 2, 0.5, True]:
        assert inspect_float(value) == reference(value), value
    for value in ["maybe", "nan", "inf", [1, 2]]:  # Inspect warns and gives 0; we refuse
        with pytest.raises((TypeError, ValueError)):
            inspect_float(value)
    assert math.isclose(inspect_float("1e-3"), 0.001)
