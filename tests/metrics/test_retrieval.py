"""Retrieval evals against trec_eval (through pytrec_eval) and its published definitions."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytest
import pytrec_eval

from hypermetric.api.evals import Eval
from hypermetric.errors import DefinitionError
from hypermetric.metrics import (
    average_precision,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

CUTOFFS = (1, 3, 5, 10, 20)
CASES = 300
POOL = [f"doc{i}" for i in range(30)]

# our eval for each trec_eval measure name
EVALS: dict[str, Eval] = {"map": average_precision, "recip_rank": mrr}
for _k in CUTOFFS:
    EVALS[f"P_{_k}"] = precision_at_k(_k)
    EVALS[f"recall_{_k}"] = recall_at_k(_k)
    EVALS[f"success_{_k}"] = hit_rate_at_k(_k)
    EVALS[f"ndcg_cut_{_k}"] = ndcg_at_k(_k)


def random_query(rng: random.Random, graded: bool) -> tuple[list[str], dict[str, int]]:
    """A ranking (possibly empty) and judgments with at least one relevant id."""
    judged = rng.sample(POOL, rng.randint(1, 12))
    if graded:
        grades = {doc: rng.choice([0, 0, 1, 1, 2, 3]) for doc in judged}
        grades[judged[0]] = rng.randint(1, 3)
    else:
        grades = dict.fromkeys(judged, 1)
    ranking = rng.sample(POOL, rng.choice([0, rng.randint(1, 4), rng.randint(5, 30)]))
    return ranking, grades


def trec_eval(queries: list[tuple[list[str], dict[str, int]]]) -> dict[str, dict[str, float]]:
    qrels = {f"q{i}": grades for i, (_, grades) in enumerate(queries)}
    # strictly decreasing scores, so trec_eval's ranking is ours (no tie-breaking by id)
    run = {
        f"q{i}": {doc: float(len(ranking) - r) for r, doc in enumerate(ranking)}
        for i, (ranking, _) in enumerate(queries)
    }
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(EVALS))
    return evaluator.evaluate(run)


@pytest.mark.parametrize("graded", [False, True], ids=["binary", "graded"])
def test_every_measure_matches_trec_eval_on_random_queries(graded: bool) -> None:
    rng = random.Random(1234 + graded)
    queries = [random_query(rng, graded) for _ in range(CASES)]
    results = trec_eval(queries)
    for i, (ranking, grades) in enumerate(queries):
        relevant = grades if graded else set(grades)
        for measure, ev in EVALS.items():
            want = results[f"q{i}"][measure]
            got = ev(ranking, relevant)
            assert got == pytest.approx(want, abs=1e-12), (measure, ranking, grades)
    # the random queries are not degenerate: partial scores are common
    partial = sum(0 < results[q]["ndcg_cut_10"] < 1 for q in results)
    assert partial > CASES // 4


def test_the_mean_over_examples_is_trec_evals_aggregate() -> None:
    rng = random.Random(99)
    queries = [random_query(rng, graded=True) for _ in range(CASES)]
    results = trec_eval(queries)
    for measure in ("map", "recip_rank", "P_5", "ndcg_cut_10"):
        ours = [EVALS[measure](ranking, grades) for ranking, grades in queries]
        want = pytrec_eval.compute_aggregated_measure(
            measure, [results[q][measure] for q in results]
        )
        assert sum(ours) / len(ours) == pytest.approx(want, abs=1e-12)


def test_hand_checked_graded_example() -> None:
    ranking = ["x", "a", "c", "b", "d"]
    grades = {"a": 2, "b": 0, "c": 1, "d": 3}  # three relevant: a, c, d
    assert precision_at_k(3)(ranking, grades) == pytest.approx(2 / 3)
    assert recall_at_k(3)(ranking, grades) == pytest.approx(2 / 3)
    assert recall_at_k(5)(ranking, grades) == 1.0
    assert hit_rate_at_k(1)(ranking, grades) == 0.0
    assert hit_rate_at_k(2)(ranking, grades) == 1.0
    assert mrr(ranking, grades) == 0.5
    # relevant at ranks 2, 3, 5: (1/2 + 2/3 + 3/5) / 3
    assert average_precision(ranking, grades) == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    # DCG@3 = 2/log2(3) + 1/log2(4); ideal top 3 = grades 3, 2, 1
    dcg = 2 / math.log2(3) + 1 / 2
    ideal = 3 + 2 / math.log2(3) + 1 / 2
    assert ndcg_at_k(3)(ranking, grades) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(3)(["d", "a", "c"], grades) == pytest.approx(1.0)


def test_precision_divides_by_k_even_with_fewer_retrieved() -> None:
    assert precision_at_k(10)(["a"], {"a"}) == pytest.approx(0.1)
    assert precision_at_k(10)([], {"a"}) == 0.0
    assert recall_at_k(10)(["a"], {"a", "b"}) == 0.5


def test_binary_relevance_ignores_grades_except_in_ndcg() -> None:
    ranking = ["b", "a"]
    assert average_precision(ranking, {"a": 3, "b": 1}) == average_precision(ranking, {"a", "b"})
    assert ndcg_at_k(2)(ranking, {"a", "b"}) == 1.0
    assert ndcg_at_k(2)(ranking, {"a": 3, "b": 1}) < 1.0


def test_no_relevant_ids_gives_no_score_where_trec_eval_gives_zero() -> None:
    results = trec_eval([(["a", "b"], {"a": 0, "c": 0})])["q0"]
    assert set(results.values()) == {0.0}
    for ev in EVALS.values():
        assert ev(["a", "b"], {"a": 0, "c": 0}) is None
        assert ev(["a", "b"], set()) is None
        assert ev([], {}) is None


def test_duplicate_ids_count_once_at_their_first_rank() -> None:
    rng = random.Random(5)
    checked = 0
    for _ in range(CASES):
        ranking, grades = random_query(rng, graded=True)
        if not ranking:
            continue
        noisy = list(ranking)
        for _ in range(rng.randint(1, 5)):  # repeat ids at later positions
            at = rng.randint(0, len(noisy))
            noisy.insert(at, rng.choice(noisy[:at] or noisy[:1]))
        deduplicated = list(dict.fromkeys(noisy))
        want = trec_eval([(deduplicated, grades)])["q0"]
        for measure, ev in EVALS.items():
            assert ev(noisy, grades) == pytest.approx(want[measure], abs=1e-12), measure
        checked += 1
    assert checked > CASES // 2
    assert precision_at_k(2)(["a", "a", "b"], {"a", "b"}) == 1.0
    assert recall_at_k(1)(["a", "a"], {"a", "b"}) == 0.5


def test_inputs_may_be_any_iterables() -> None:
    assert recall_at_k(2)(("a", "b"), frozenset({"b"})) == 1.0
    assert mrr(iter(["x", "b"]), (doc for doc in ["b"])) == 0.5
    assert average_precision([1, 2], {2: 1}) == 0.5  # ids of any hashable type


FACTORIES: list[Callable[[int], Eval]] = [precision_at_k, recall_at_k, hit_rate_at_k, ndcg_at_k]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_factories_name_and_record_k(factory: Callable[[int], Eval]) -> None:
    ev = factory(5)
    assert ev.name == factory.__name__.replace("_at_k", "_at_5")
    assert dict(ev.params) == {"k": 5}
    assert ev.parameter_names == ("output", "relevant")
    assert ev.higher_is_better is True
    assert ev.description
    numpy_k = factory(np.int64(7))  # type: ignore[arg-type]
    assert numpy_k.name.endswith("_at_7")
    assert type(numpy_k.params["k"]) is int


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("k", [0, -1, 2.5, "5", True, None])
def test_factories_validate_k(factory: Callable[[int], Eval], k: object) -> None:
    with pytest.raises(DefinitionError, match=rf"{factory.__name__}\(k\): k must be a positive"):
        factory(k)  # type: ignore[arg-type]


@pytest.mark.parametrize("ev", list(EVALS.values())[:6], ids=lambda e: e.name)
def test_bad_arguments_raise_clear_errors(ev: Eval) -> None:
    with pytest.raises(TypeError, match="output must be a ranked list of ids"):
        ev("doc1", {"doc1"})
    with pytest.raises(TypeError, match="output must be a ranked list of ids"):
        ev(None, {"doc1"})
    with pytest.raises(TypeError, match="relevant must be a collection of ids"):
        ev(["doc1"], "doc1")
    with pytest.raises(ValueError, match="grades must be integers >= 0"):
        ev(["doc1"], {"doc1": -1})
    with pytest.raises(ValueError, match="grades must be integers >= 0"):
        ev(["doc1"], {"doc1": 0.5})
