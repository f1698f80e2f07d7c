"""Retrieval evals: score a ranked list of ids against the relevant ones, as trec_eval does.

Every eval takes ``output``, the ranked list of retrieved ids (best first; ids are
compared with ``==``, so keep them one type, usually strings), and ``relevant``, either a
collection of relevant ids (binary relevance) or a mapping id -> graded relevance, an
integer >= 0 where 0 means judged not relevant. Per example, each equals the trec_eval
measure named below (``pytrec_eval`` is the reference in the tests):

=======================  ==================  ==========================================
eval                     trec_eval measure   per query
=======================  ==================  ==========================================
``precision_at_k(k)``    ``P_k``             relevant in the top k / k
``recall_at_k(k)``       ``recall_k``        relevant in the top k / all relevant
``hit_rate_at_k(k)``     ``success_k``       1.0 if any of the top k is relevant
``ndcg_at_k(k)``         ``ndcg_cut_k``      DCG@k / ideal DCG@k, gain = grade
``mrr``                  ``recip_rank``      1 / rank of the first relevant id
``average_precision``    ``map``             mean precision at each relevant id
=======================  ==================  ==========================================

The means over examples are the usual aggregates (P@k, MRR, MAP, ...). All are
higher-is-better with scores in [0, 1]. Conventions, stated once:

* Relevant means a grade >= 1 (trec_eval's default ``relevance_level``); only nDCG uses
  the grade itself as the gain, every other measure is binary.
* P@k divides by k even when fewer than k ids were retrieved.
* A repeated id counts once, at its best (first) rank, and later positions move up; the
  cut-off k applies to the de-duplicated ranking. trec_eval likewise keys a run by doc id.
* **No relevant ids** (an empty collection, or all grades 0): every eval returns None, no
  score, so the example is left out of the mean. trec_eval reports 0 for such a query,
  which only measures the dataset, since no ranking could score better.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

from hypermetric.api.evals import Eval, eval
from hypermetric.errors import DefinitionError

__all__ = [
    "average_precision",
    "hit_rate_at_k",
    "mrr",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
]

_Ranking = Sequence[Hashable]
_Relevant = Collection[Hashable] | Mapping[Hashable, int]
_Measure = Callable[[list[Hashable], dict[Hashable, int], int], float]


def _grades(relevant: object, name: str) -> dict[Hashable, int]:
    """The judgments as id -> grade; binary relevance becomes grade 1."""
    if isinstance(relevant, Mapping):
        grades: dict[Hashable, int] = {}
        for doc, grade in relevant.items():
            try:
                value = operator.index(grade)
            except TypeError:
                value = -1
            if value < 0:
                raise ValueError(
                    f"{name}: relevance grades must be integers >= 0, got {grade!r} for {doc!r}"
                )
            grades[doc] = value
        return grades
    if isinstance(relevant, str | bytes) or not isinstance(relevant, Iterable):
        raise TypeError(
            f"{name}: relevant must be a collection of ids or a mapping id -> grade, "
            f"got {type(relevant).__name__}"
        )
    return dict.fromkeys(relevant, 1)


def _ranking(output: object, name: str) -> list[Hashable]:
    """The retrieved ids, best first, each kept at its first rank only."""
    if isinstance(output, str | bytes) or not isinstance(output, Iterable):
        raise TypeError(f"{name}: output must be a ranked list of ids, got {type(output).__name__}")
    return list(dict.fromkeys(output))


def _score(
    measure: _Measure, output: object, relevant: object, name: str, cutoff: int | None = None
) -> float | None:
    """``measure`` of the (top ``cutoff`` of the) ranking; None without relevant ids."""
    grades = _grades(relevant, name)
    ranking = _ranking(output, name)[:cutoff]
    num_relevant = sum(1 for grade in grades.values() if grade > 0)
    if num_relevant == 0:
        return None
    return measure(ranking, grades, num_relevant)


def _hits(ranking: list[Hashable], grades: dict[Hashable, int]) -> int:
    return sum(1 for doc in ranking if grades.get(doc, 0) > 0)


def _check_k(k: Any, factory: str) -> int:
    """``k`` as an int, or a DefinitionError that says what k must be."""
    try:
        value = operator.index(k) if not isinstance(k, bool) else 0
    except TypeError:
        value = 0
    if value < 1:
        raise DefinitionError(f"{factory}(k): k must be a positive integer, got {k!r}")
    return value


def _at_k(factory: str, cutoff: int, measure: _Measure, description: str) -> Eval:
    """An eval named ``<metric>_at_<k>`` that applies ``measure`` to the top k."""
    name = f"{factory.removesuffix('_k')}_{cutoff}"

    def at_k(output: _Ranking, relevant: _Relevant) -> float | None:
        return _score(measure, output, relevant, name, cutoff)

    return eval(
        at_k,
        name=name,
        params={"k": cutoff},
        description=description.format(k=cutoff),
    )


def precision_at_k(k: int) -> Eval:
    """Precision@k (trec_eval ``P_k``): relevant ids among the top k, divided by k.

    Returns an eval of ``(output, relevant)`` named ``precision_at_<k>`` with
    ``params={"k": k}``. The divisor is k even when fewer than k ids were retrieved.
    None when there are no relevant ids.
    """
    cutoff = _check_k(k, "precision_at_k")
    return _at_k(
        "precision_at_k",
        cutoff,
        lambda ranking, grades, _n: _hits(ranking, grades) / cutoff,
        "Precision@{k}: relevant ids among the top {k} retrieved, divided by {k}.",
    )


def recall_at_k(k: int) -> Eval:
    """Recall@k (trec_eval ``recall_k``): relevant ids in the top k / all relevant ids.

    Returns an eval of ``(output, relevant)`` named ``recall_at_<k>`` with
    ``params={"k": k}``. None when there are no relevant ids (the ratio is undefined).
    """
    return _at_k(
        "recall_at_k",
        _check_k(k, "recall_at_k"),
        lambda ranking, grades, n: _hits(ranking, grades) / n,
        "Recall@{k}: the share of the relevant ids found in the top {k} retrieved.",
    )


def hit_rate_at_k(k: int) -> Eval:
    """Hit rate@k (trec_eval ``success_k``): 1.0 if any of the top k ids is relevant.

    Returns an eval of ``(output, relevant)`` named ``hit_rate_at_<k>`` with
    ``params={"k": k}``. None when there are no relevant ids.
    """
    return _at_k(
        "hit_rate_at_k",
        _check_k(k, "hit_rate_at_k"),
        lambda ranking, grades, _n: 1.0 if _hits(ranking, grades) else 0.0,
        "Hit rate@{k}: 1.0 if a relevant id is among the top {k} retrieved, else 0.0.",
    )


def _dcg(gains: Iterable[int]) -> float:
    # trec_eval's discount: the document at 0-based position i is divided by log2(i + 2).
    return sum(gain / math.log2(i + 2) for i, gain in enumerate(gains) if gain > 0)


def ndcg_at_k(k: int) -> Eval:
    """nDCG@k (trec_eval ``ndcg_cut_k``): DCG of the top k over the ideal DCG at k.

    The gain of an id is its grade (linear; binary relevance is grade 1), discounted by
    log2(rank + 1), rank counted from 1. The ideal ranking orders every judged relevant
    id by grade, retrieved or not, and is cut at k too. Returns an eval of
    ``(output, relevant)`` named ``ndcg_at_<k>`` with ``params={"k": k}``. None when
    there are no relevant ids.
    """
    cutoff = _check_k(k, "ndcg_at_k")

    def ndcg(ranking: list[Hashable], grades: dict[Hashable, int], _n: int) -> float:
        ideal = sorted((grade for grade in grades.values() if grade > 0), reverse=True)
        dcg = _dcg(grades.get(doc, 0) for doc in ranking)
        return dcg / _dcg(ideal[:cutoff])

    return _at_k(
        "ndcg_at_k",
        cutoff,
        ndcg,
        "nDCG@{k}: DCG of the top {k} (gain = grade, log2 discount) over the ideal DCG@{k}.",
    )


def _reciprocal_rank(ranking: list[Hashable], grades: dict[Hashable, int], _n: int) -> float:
    for rank, doc in enumerate(ranking, 1):
        if grades.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def _average_precision(ranking: list[Hashable], grades: dict[Hashable, int], n: int) -> float:
    hits = 0
    total = 0.0
    for rank, doc in enumerate(ranking, 1):
        if grades.get(doc, 0) > 0:
            hits += 1
            total += hits / rank
    return total / n


@eval(higher_is_better=True)
def mrr(output: _Ranking, relevant: _Relevant) -> float | None:
    """Reciprocal rank (trec_eval ``recip_rank``): 1 / rank of the first relevant id.

    The whole ranking counts (no cut-off); 0.0 when no relevant id was retrieved. Its mean
    over examples is the mean reciprocal rank. None when there are no relevant ids.
    """
    return _score(_reciprocal_rank, output, relevant, "mrr")


@eval(higher_is_better=True)
def average_precision(output: _Ranking, relevant: _Relevant) -> float | None:
    """Average precision (trec_eval ``map`` for one query).

    The sum of the precision at the rank of each relevant id retrieved, divided by the
    number of relevant ids (retrieved or not), over the whole ranking. Its mean over
    examples is MAP. None when there are no relevant ids.
    """
    return _score(_average_precision, output, relevant, "average_precision")
