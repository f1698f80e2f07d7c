"""``hypermetric import lm-eval``: lm-evaluation-harness output in, its samples' scores out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import hypermetric as hm
from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import count_runs, list_runs
from hypermetric.catalog.shards import live_shards
from hypermetric.cli import cli
from hypermetric.config import Settings
from hypermetric.storage.files import store_for
from tests.importing.conftest import _doc_hash, lm_sample, write_lmeval

STAMP_A = "2026-11-01T02-00-00.123456"
STAMP_B = "2026-11-02T02-00-00.654321"
DATE_A = datetime(2026, 11, 1, 2, 0, 0, 123456, tzinfo=UTC)
DATE_B = datetime(2026, 11, 2, 2, 0, 0, 654321, tzinfo=UTC)
VALUES_A = {"arc_easy": [1.0, 0.0], "wikitext": [12.5, 30.0, 11.0]}
VALUES_B = {"arc_easy": [1.0, 1.0], "wikitext": [10.0, 20.0, 9.0]}


def _import(folder: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["import", "lm-eval", str(folder), *args])


def _two_models(root: Path) -> Path:
    write_lmeval(root, model="org/model-a", stamp=STAMP_A, values=VALUES_A, date=DATE_A.timestamp())
    write_lmeval(root, model="org/model-b", stamp=STAMP_B, values=VALUES_B, date=DATE_B.timestamp())
    return root


def _ids(task: str) -> list[str]:
    """The example ids the documents of ``task`` must get (identical ones suffixed)."""
    hashes = [_doc_hash(lm_sample(task, i, 0.0)["doc"]) for i in range(len(VALUES_A[task]))]
    return [
        h if hashes[:i].count(h) == 0 else f"{h}~{hashes[:i].count(h) + 1}"
        for i, h in enumerate(hashes)
    ]


def test_every_document_and_metric_is_imported(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    folder = _two_models(tmp_path / "out")
    result = _import(folder)
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 4
    runs = {(r.evaluation, r.version_label): r for r in list_runs(db)}
    assert set(runs) == {(t, f"org/model-{m}") for t in ("arc_easy", "wikitext") for m in "ab"}
    for (task, version), run in runs.items():
        values = VALUES_A[task] if version.endswith("a") else VALUES_B[task]
        metric = "acc" if task == "arc_easy" else "word_perplexity"
        rows = hm.sql(
            "SELECT example_id, component, call_index, metric, value, error FROM scores "
            f"WHERE run_id = {run.id} ORDER BY example_id",
            settings=settings,
        ).fetchall()
        assert sorted(rows) == sorted(
            (i, task, 0, metric, v, None) for i, v in zip(_ids(task), values, strict=True)
        )
        assert run.logical_date == (DATE_A if version.endswith("a") else DATE_B)
        assert (run.run_type, run.state) == ("import", "success")
        direction = run.versions["evals"][metric]["higher_is_better"]
        assert direction is (task == "arc_easy")
        assert run.params["task_config"]["dataset_path"] == f"allenai/{task}"
        assert run.params["model_args"] == f"pretrained={version},dtype=float32"
    # identical documents: the second gets ~2
    assert _ids("wikitext")[2] == _ids("wikitext")[0] + "~2"

    calls = hm.sql(
        "SELECT example_id, inputs, output FROM calls c JOIN runs r ON c.run_id = r.id "
        "WHERE r.version_label = 'org/model-a' AND c.evaluation = 'arc_easy' ORDER BY 1",
        settings=settings,
    ).fetchall()
    assert len(calls) == 2
    by_id = {e: (json.loads(i), json.loads(o)) for e, i, o in calls}
    inputs, output = by_id[_ids("arc_easy")[1]]
    assert inputs == {"gen_args_0": {"arg_0": "Q: grass?\nA:", "arg_1": " green"}}
    assert output == ["-0.0", "False"]


def test_history_and_compare_across_two_models(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    assert _import(_two_models(tmp_path / "out")).exit_code == 0
    points = hm.history("wikitext", settings=settings)
    assert [p.version for p in points] == ["org/model-a", "org/model-b"]
    assert [p.mean for p in points] == pytest.approx([53.5 / 3, 39 / 3])
    a, b = (p.run_id for p in points)
    (ppl,) = hm.compare(a, b, settings=settings).metrics
    # lower is better: every document's perplexity fell, each an improvement
    assert (ppl.higher_is_better, ppl.n, ppl.improved, ppl.regressed) == (False, 3, 3, 0)
    assert ppl.delta == pytest.approx((39 - 53.5) / 3)


def test_importing_twice_adds_nothing(settings: Settings, db: Database, tmp_path: Path) -> None:
    folder = _two_models(tmp_path / "out")
    assert _import(folder).exit_code == 0
    store = store_for(settings)
    before = (count_runs(db), len(live_shards(db, "scores")), sum(1 for _ in store.files()))
    again = _import(folder, "--version", "relabelled")
    assert again.exit_code == 0, again.output
    lines = again.output.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("already imported") for line in lines)
    after = (count_runs(db), len(live_shards(db, "scores")), sum(1 for _ in store.files()))
    assert after == before == (4, 4, 12)


def test_evaluation_and_version_are_overridable(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    write_lmeval(folder, model="org/m", stamp=STAMP_A, values=VALUES_A, date=DATE_A.timestamp())
    result = _import(folder, "--evaluation", "nightly", "--version", "v7")
    assert result.exit_code == 0, result.output
    runs = list_runs(db)
    # both tasks of the one results file share its date: the second run takes the next µs
    assert {(r.evaluation, r.version_label) for r in runs} == {("nightly", "v7")}
    assert sorted(r.logical_date for r in runs) == [
        DATE_A,
        DATE_A.replace(microsecond=DATE_A.microsecond + 1),
    ]


def test_filters_become_metric_dot_filter(settings: Settings, db: Database, tmp_path: Path) -> None:
    def two_filters(task: str, doc_id: int, value: float) -> list[dict[str, object]]:
        return [
            lm_sample(task, doc_id, value, filt="strict-match"),
            lm_sample(task, doc_id, 1.0 - value, filt="flexible-extract"),
        ]

    folder = tmp_path / "out"
    results = write_lmeval(
        folder, model="m", stamp=STAMP_A, values={"arc_easy": [1.0, 0.0]}, date=DATE_A.timestamp()
    )
    samples = results.with_name(f"samples_arc_easy_{STAMP_A}.jsonl")
    lines = [json.dumps(x) for d, v in enumerate([1.0, 0.0]) for x in two_filters("arc_easy", d, v)]
    samples.write_text("\n".join(lines) + "\n")
    assert _import(folder).exit_code == 0
    rows = hm.sql(
        "SELECT metric, sum(value), count(*) FROM scores GROUP BY 1 ORDER BY 1", settings=settings
    ).fetchall()
    assert rows == [("acc.flexible-extract", 1.0, 2), ("acc.strict-match", 1.0, 2)]
    (run,) = list_runs(db)
    assert run.calls_count == 2  # one call per document, whatever its filters
    (out,) = hm.sql("SELECT output FROM calls LIMIT 1", settings=settings).fetchall()
    assert set(json.loads(out[0])) == {"strict-match", "flexible-extract"}


def _break_results_json(folder: Path) -> Path:
    path = next(folder.rglob("results_*.json"))
    path.write_text(path.read_text()[:50])
    return path


def _no_results_object(folder: Path) -> Path:
    path = next(folder.rglob("results_*.json"))
    path.write_text(json.dumps({"configs": {}}))
    return path


def _bad_line(folder: Path) -> Path:
    path = sorted(folder.rglob("samples_wikitext_*.jsonl"))[-1]
    path.write_text(path.read_text() + "{not json\n")
    return path


def _no_doc_id(folder: Path) -> Path:
    path = sorted(folder.rglob("samples_arc_easy_*.jsonl"))[-1]
    path.write_text(path.read_text() + json.dumps({"doc": {}}) + "\n")
    return path


def _orphan_samples(folder: Path) -> Path:
    path = folder / "extra" / "samples_arc_easy_2026-01-01T00-00-00.000000.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(lm_sample("arc_easy", 0, 1.0)) + "\n")
    return path


def _missing_samples(folder: Path) -> Path:
    samples = sorted(folder.rglob("samples_wikitext_*.jsonl"))[-1]
    samples.unlink()
    return next(samples.parent.glob("results_*.json"))


@pytest.mark.parametrize(
    "damage, says",
    [
        (_break_results_json, "not JSON"),
        (_no_results_object, 'no "results" object'),
        (_bad_line, ":4: not JSON"),
        (_no_doc_id, ":3: not an lm-eval sample (no doc_id)"),
        (_orphan_samples, "a samples file without its results_*.json file"),
        (_missing_samples, "task 'wikitext' has no samples_wikitext_"),
    ],
)
def test_a_malformed_folder_fails_in_one_line_and_writes_nothing(
    settings: Settings, db: Database, tmp_path: Path, damage: object, says: str
) -> None:
    folder = _two_models(tmp_path / "out")
    bad = damage(folder)  # type: ignore[operator]
    result = _import(folder)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}"), result.output
    assert says in lines[0] and "Traceback" not in result.output
    assert count_runs(db) == 0 and live_shards(db, "scores") == []
    assert list(store_for(settings).files()) == []


def test_a_folder_without_results(settings: Settings, tmp_path: Path) -> None:
    result = _import(tmp_path)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {tmp_path}: no results_*.json file; import the folder lm-eval wrote whole"
    )


def test_imported_runs_compact_like_any_run(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    assert _import(_two_models(tmp_path / "out")).exit_code == 0
    query = "SELECT run_id, example_id, metric, value FROM scores ORDER BY ALL"

    def rows() -> list[dict[str, object]]:
        shown = CliRunner().invoke(cli, ["sql", query, "--format", "json"])
        assert shown.exit_code == 0, shown.output
        return list(json.loads(shown.output))

    before = rows()
    assert len(before) == 2 * (2 + 3) and len(live_shards(db, "scores")) == 4
    packed = CliRunner().invoke(cli, ["compact"])
    assert packed.exit_code == 0, packed.output
    assert len(live_shards(db, "scores")) == 1  # the four runs' shards in one packed file
    assert rows() == before
    (ppl,) = hm.compare("wikitext@org/model-a", "wikitext@org/model-b", settings=settings).metrics
    assert (ppl.n, ppl.improved) == (3, 3)
