"""The built-in evals scored as a run scores them, against each field's reference tool.

The per-function files check each eval call by call. Here seeded random examples go the
way of a run (bound by name from the examples, scored by the evaluator, stored in a
Parquet shard, averaged in SQL) and the run's means must equal the aggregate that the
reference itself computes, to 1e-9: the SQuAD v1.1 script's ``evaluate``, pytrec_eval's
``compute_aggregated_measure``, rouge_score, and scikit-learn. Where Hypermetric's
convention differs from the reference's, the test says so and checks the difference.
No Ray: units are driven and scored in this process.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import pytrec_eval
from pyarrow.fs import LocalFileSystem
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

import hypermetric as hm
from hypermetric.api.context import RunContext
from hypermetric.api.datasets import iter_chunks
from hypermetric.catalog.types import utcnow
from hypermetric.engine.evaluator import EvaluatorCore, Thresholds
from hypermetric.engine.worker import drive_unit
from hypermetric.metrics import normalized_exact_match, rouge_l, token_f1
from hypermetric.storage.files import ShardStore
from tests.metrics.test_classification import sparse_cases
from tests.metrics.test_retrieval import EVALS, POOL, random_query
from tests.metrics.test_text import (
    UnicodeTokenizer,
    qa_cases,
    squad_exact_match_score,
    squad_f1_score,
    squad_metric_max_over_ground_truths,
)

TOLERANCE = 1e-9
UNIT = 97  # examples a unit: several units and a short last one


# --- The reference: evaluate() of the official SQuAD v1.1 evaluate-v1.1.py, verbatim -----
def squad_evaluate(dataset, predictions):  # type: ignore[no-untyped-def]
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    message = "Unanswered question " + qa["id"] + " will receive score 0."
                    print(message, file=sys.stderr)
                    continue
                ground_truths = list(map(lambda x: x["text"], qa["answers"]))
                prediction = predictions[qa["id"]]
                exact_match += squad_metric_max_over_ground_truths(
                    squad_exact_match_score, prediction, ground_truths
                )
                f1 += squad_metric_max_over_ground_truths(squad_f1_score, prediction, ground_truths)
    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total
    return {"exact_match": exact_match, "f1": f1}


# --- The systems under test: each component returns what the example says it returns --------
@hm.component(evals=[normalized_exact_match, token_f1, rouge_l])
def reader(prediction: str) -> str:
    return prediction


@hm.runtime(name="reference-text", dataset=None)
def text_system(example: dict) -> str:
    return reader(example["prediction"])


@hm.component(evals=list(EVALS.values()))
def retriever(ranking: list[str]) -> list[str]:
    return ranking


@hm.runtime(name="reference-retrieval", dataset=None)
def retrieval_system(example: dict) -> list[str]:
    return retriever(example["ranking"])


CLASSES = ["c0", "c1", "c2", "c3", "c4"]


@hm.component(evals=[hm.metrics.accuracy, hm.metrics.brier_score, hm.metrics.log_loss])
def classifier(probabilities: dict) -> dict:
    return probabilities


@hm.component(evals=[ev(classes=CLASSES) for ev in (hm.metrics.accuracy, hm.metrics.brier_score)])
def classifier_over_classes(probabilities: dict) -> dict:
    return probabilities


@hm.component(evals=[hm.metrics.brier_score(classes=["no", "yes"])])
def yes_no(probabilities: dict) -> dict:
    return probabilities


@hm.runtime(name="reference-classification", dataset=None)
def classification_system(example: dict) -> dict:
    if example["task"] == "binary":
        return yes_no(example["probabilities"])
    classifier_over_classes(example["probabilities"])
    return classifier(example["probabilities"])


def run_means(
    tmp_path: Path, runtime: Any, examples: list[dict[str, Any]]
) -> tuple[dict[tuple[str, str], float], pa.Table]:
    """Drive and score ``examples`` as a run does; the mean of each (component, metric) as
    SQL over the stored shard gives it, and the score rows."""
    store = ShardStore(uri=str(tmp_path), fs=LocalFileSystem(), root=str(tmp_path))
    core = EvaluatorCore(
        run_id=1,
        evaluation=runtime.name,
        version=None,
        store=store,
        thresholds=Thresholds(seconds=1e9),
    )
    context = RunContext(evaluation=runtime.name, logical_date=utcnow())
    for unit_id, chunk in enumerate(iter_chunks(examples, UNIT)):
        core.evaluate(drive_unit(runtime, chunk, unit_id, context))
    flush = core.flush()
    assert flush is not None
    scores = store.read(next(f.path for f in flush.files if f.dataset == "scores"))
    assert scores["error"].null_count == scores.num_rows, "an eval raised"
    rows = duckdb.sql("SELECT component, metric, avg(value) FROM scores GROUP BY ALL").fetchall()
    return {(component, metric): mean for component, metric, mean in rows}, scores


def count(scores: pa.Table, metric: str) -> int:
    return sum(1 for m in scores["metric"].to_pylist() if m == metric)


# --- Text: the SQuAD v1.1 script and rouge_score ---------------------------------------------
def test_a_qa_run_equals_the_squad_script_and_rouge_score(tmp_path: Path) -> None:
    cases = qa_cases(31) + qa_cases(32)
    examples = [
        {"id": f"q{i}", "prediction": output, "answer": golds}
        for i, (output, golds) in enumerate(cases)
    ]
    means, scores = run_means(tmp_path, text_system, examples)
    assert count(scores, "token_f1") == len(cases)
    questions = [
        {"id": e["id"], "answers": [{"text": gold} for gold in e["answer"]]} for e in examples
    ]
    squad = squad_evaluate(
        [{"paragraphs": [{"qas": questions}]}], {e["id"]: e["prediction"] for e in examples}
    )
    # Convention: the script reports percentages; a score here is a fraction
    assert means[("reader", "normalized_exact_match")] * 100 == pytest.approx(
        squad["exact_match"], abs=100 * TOLERANCE
    )
    assert means[("reader", "token_f1")] * 100 == pytest.approx(squad["f1"], abs=100 * TOLERANCE)
    assert 5 < squad["exact_match"] < 95 and 5 < squad["f1"] < 95  # not degenerate
    # Convention: tokens are letters and digits of any script; rouge_score's default
    # tokenizer drops non-ASCII letters, so the reference gets a tokenizer that keeps them
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())
    want = np.mean([scorer.score_multi(g, o)["rougeL"].fmeasure for o, g in cases])
    assert means[("reader", "rouge_l")] == pytest.approx(want, abs=TOLERANCE)


# --- Retrieval: trec_eval through pytrec_eval -------------------------------------------------
def test_a_retrieval_run_equals_trec_eval_over_judged_queries(tmp_path: Path) -> None:
    rng = random.Random(41)
    queries = [random_query(rng, graded=rng.random() < 0.5) for _ in range(400)]
    for i in range(0, len(queries), 10):  # every tenth query: nothing relevant
        queries[i] = (queries[i][0], dict.fromkeys(rng.sample(POOL, 3), 0))
    examples = [
        {"id": f"q{i}", "ranking": ranking, "relevant": grades}
        for i, (ranking, grades) in enumerate(queries)
    ]
    means, scores = run_means(tmp_path, retrieval_system, examples)
    qrels = {f"q{i}": grades for i, (_, grades) in enumerate(queries)}
    trec_run = {  # strictly decreasing scores: trec_eval ranks as the list does
        f"q{i}": {doc: float(len(ranking) - r) for r, doc in enumerate(ranking)}
        for i, (ranking, _) in enumerate(queries)
    }
    results = pytrec_eval.RelevanceEvaluator(qrels, set(EVALS)).evaluate(trec_run)
    judged = [q for q, grades in qrels.items() if any(g > 0 for g in grades.values())]
    assert len(judged) == 360
    for measure, ev in EVALS.items():
        # Convention: a query with no relevant id has no score (trec_eval gives it 0, a
        # property of the dataset, not of the ranking): the mean is over judged queries
        assert count(scores, ev.name) == len(judged)
        want = pytrec_eval.compute_aggregated_measure(
            measure, [results[q][measure] for q in judged]
        )
        assert means[("retriever", ev.name)] == pytest.approx(want, abs=TOLERANCE), measure
        everything = pytrec_eval.compute_aggregated_measure(
            measure, [results[q][measure] for q in qrels]
        )
        assert means[("retriever", ev.name)] * len(judged) / len(qrels) == pytest.approx(
            everything, abs=TOLERANCE
        )


# --- Classification: scikit-learn --------------------------------------------------------------
def _matrix(cases: list[tuple[dict[str, float], str]], classes: list[str]) -> np.ndarray:
    return np.array([[output.get(c, 0.0) for c in classes] for output, _ in cases])


def test_a_classification_run_equals_scikit_learn(tmp_path: Path) -> None:
    multi = sparse_cases(51, CLASSES)  # zero-probability classes left out of each dict
    rng = np.random.default_rng(52)
    binary = []
    for _ in range(300):
        p = float(rng.random())
        output = {"yes": p, "no": 1 - p} if rng.random() < 0.5 else {"yes": 1.0}
        binary.append((output, str(rng.choice(["no", "yes"]))))
    examples = [
        {"id": f"m{i}", "task": "multi", "probabilities": o, "label": y}
        for i, (o, y) in enumerate(multi)
    ] + [
        {"id": f"b{i}", "task": "binary", "probabilities": o, "label": y}
        for i, (o, y) in enumerate(binary)
    ]
    means, _ = run_means(tmp_path, classification_system, examples)
    matrix, labels = _matrix(multi, CLASSES), [y for _, y in multi]
    predicted = [CLASSES[i] for i in matrix.argmax(axis=1)]  # ties: the first column
    want: dict[str, float] = {
        "accuracy": accuracy_score(labels, predicted),
        "brier_score": brier_score_loss(labels, matrix, labels=CLASSES),
        "log_loss": sk_log_loss(labels, matrix, labels=CLASSES),
    }
    for metric, value in want.items():
        assert means[("classifier", metric)] == pytest.approx(value, abs=TOLERANCE), metric
    for metric in ("accuracy", "brier_score"):
        got = means[("classifier_over_classes", metric)]
        assert got == pytest.approx(want[metric], abs=TOLERANCE), metric
    yes_no_matrix, yes_no_labels = _matrix(binary, ["no", "yes"]), [y for _, y in binary]
    two = brier_score_loss(yes_no_labels, yes_no_matrix, labels=["no", "yes"])
    assert means[("yes_no", "brier_score")] == pytest.approx(two, abs=TOLERANCE)
