"""Built-in evals: plain eval functions to list in ``@hm.component(evals=[...])``.

Each is an :class:`~hypermetric.api.evals.Eval` that also works as a plain function, and
declares its direction (``higher_is_better``) for compare and history. Factories return a
new eval whose name and ``params`` carry the argument: ``recall_at_k(5)`` is
``recall_at_5`` with ``params={"k": 5}``. Arguments are bound by parameter name
(``output`` is the component's return value; ``answer``, ``relevant`` and ``label`` come
from the component's arguments or the example's fields; rename with ``hm.bind``). An eval
returns a float, or None when the score is undefined for that example.

Text (``hypermetric.metrics.text``), ``(output, answer)``, higher is better:
    exact_match, normalized_exact_match, token_f1, contains, rouge_l,
    regex_match(pattern, flags=0) -> eval of ``(output)``
Retrieval (``hypermetric.metrics.retrieval``), ``(output, relevant)``, higher is better:
    precision_at_k(k), recall_at_k(k), hit_rate_at_k(k), ndcg_at_k(k), mrr,
    average_precision
Classification (``hypermetric.metrics.classification``), ``(output, label)``:
    accuracy (higher is better), brier_score, log_loss (lower is better); each also
    ``(classes=[...])`` -> the same eval over a fixed class set, ``params={"classes": ...}``
"""

from __future__ import annotations

from hypermetric.metrics.classification import accuracy, brier_score, log_loss
from hypermetric.metrics.retrieval import (
    average_precision,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from hypermetric.metrics.text import (
    contains,
    exact_match,
    normalize_answer,
    normalized_exact_match,
    regex_match,
    rouge_l,
    token_f1,
)

__all__ = [
    "accuracy",
    "average_precision",
    "brier_score",
    "contains",
    "exact_match",
    "hit_rate_at_k",
    "log_loss",
    "mrr",
    "ndcg_at_k",
    "normalize_answer",
    "normalized_exact_match",
    "precision_at_k",
    "recall_at_k",
    "regex_match",
    "rouge_l",
    "token_f1",
]
