"""Classification evals, per example; their means are the usual aggregates.

Each takes ``output`` and ``label`` (the true class). ``output`` is one of:

* a **probability** (a float in [0, 1]): the probability of the positive class of a
  binary task, whose ``label`` is 0, 1 or a bool;
* a **dict class -> probability** (multiclass, or binary written out): ``label`` is one
  of the classes. A class missing from the dict has probability 0; the probabilities
  must sum to 1 (within 1e-4, so float32 softmax outputs pass);
* for :func:`accuracy` only, also the **predicted label** itself.

=================  ============  =========================================================
eval               direction     per example (mean over examples = scikit-learn's score)
=================  ============  =========================================================
``accuracy``       higher        1.0 if the predicted class is the label (``accuracy_score``)
``brier_score``    lower         squared error of the probabilities (``brier_score_loss``)
``log_loss``       lower         -ln(probability of the label), clipped (``log_loss``)
=================  ============  =========================================================
"""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Mapping
from numbers import Integral, Real
from typing import Any

from hypermetric.api.evals import eval

__all__ = ["LOG_LOSS_EPS", "accuracy", "brier_score", "log_loss"]

_Probabilities = float | Mapping[Hashable, float]

# scikit-learn clips probabilities to [eps, 1 - eps] with eps = the float64 machine
# epsilon, so log_loss is finite (at most -ln(eps) ~ 36.04) for a confident mistake.
LOG_LOSS_EPS = sys.float_info.epsilon
# Probabilities are checked, not renormalised; a float32 softmax over many classes drifts
# from 1 by ~1e-6, a mistake (logits, a truncated top-k) by far more.
_SUM_TOLERANCE = 1e-4


def _probability(value: object, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: {what} must be a probability, got {type(value).__name__}")
    p = float(value)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"{name}: {what} must be a probability in [0, 1], got {value!r}")
    return p


def _binary_label(label: object, name: str) -> int:
    if isinstance(label, Real) and label in (0, 1):
        return 1 if label == 1 else 0
    raise ValueError(
        f"{name}: with a probability as output the label must be 0, 1 or a bool, got {label!r}"
    )


def _distribution(output: Mapping[Any, Any], name: str) -> dict[Hashable, float]:
    probs = {cls: _probability(p, name, f"output[{cls!r}]") for cls, p in output.items()}
    total = math.fsum(probs.values())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(
            f"{name}: the output probabilities must sum to 1, they sum to {total!r}; "
            "pass the full distribution (e.g. a softmax), not scores or a top-k"
        )
    return probs


def _argmax(probs: Mapping[Any, Any]) -> Any:
    # The first class wins a tie, as numpy.argmax does over the same order.
    best, best_p = None, -math.inf
    for cls, p in probs.items():
        if p > best_p:
            best, best_p = cls, p
    return best


@eval(higher_is_better=True)
def accuracy(output: Any, label: Any) -> float:
    """1.0 if the predicted class equals ``label``, else 0.0; the mean is accuracy.

    The predicted class is ``output`` itself, or, for a dict class -> probability, the
    most probable class (the first listed on a tie), or, for a float probability of the
    positive class with a 0/1/bool label, 1 when it is above 0.5 (so 0.5 predicts 0, like
    an argmax over ``[1 - p, p]``). Other values are compared with ``==``.
    """
    if isinstance(output, Mapping):
        if not output:
            raise ValueError("accuracy: the output dict of probabilities is empty")
        return float(_argmax(output) == label)
    if (
        isinstance(output, Real)
        and not isinstance(output, Integral)
        and isinstance(label, Real)
        and label in (0, 1)
        and 0.0 <= float(output) <= 1.0
    ):
        # A probability is never a label here; compare the class it predicts.
        return float((float(output) > 0.5) == (label == 1))
    return float(output == label)


@eval(higher_is_better=False)
def brier_score(output: _Probabilities, label: Any) -> float:
    """Squared error of the predicted probabilities, as scikit-learn's ``brier_score_loss``.

    Binary (``output`` = P(positive), ``label`` 0/1/bool): ``(output - label) ** 2``, in
    [0, 1]. Multiclass (``output`` a dict): the sum over classes of
    ``(p_class - [class == label]) ** 2``, in [0, 2] (Brier's original definition); over
    exactly two classes (the dict's plus the label) it is halved so that it equals the
    binary score, as ``brier_score_loss(scale_by_half="auto")`` does. Lower is better.
    """
    if isinstance(output, Mapping):
        probs = _distribution(output, "brier_score")
        total = sum((p - (cls == label)) ** 2 for cls, p in probs.items())
        if label not in probs:
            total += 1.0
        classes = len(probs) + (label not in probs)
        return total / 2 if classes <= 2 else total
    p = _probability(output, "brier_score", "output")
    return (p - _binary_label(label, "brier_score")) ** 2


@eval(higher_is_better=False)
def log_loss(output: _Probabilities, label: Any) -> float:
    """Negative natural log of the probability given to ``label`` (cross-entropy).

    Binary (``output`` = P(positive), ``label`` 0/1/bool): ``-ln(p)`` for label 1,
    ``-ln(1 - p)`` for label 0. Multiclass (``output`` a dict): ``-ln(output[label])``,
    probability 0 for a missing class. As in scikit-learn's ``log_loss``, the probability
    is first clipped to ``[eps, 1 - eps]`` with ``eps`` = :data:`LOG_LOSS_EPS` (the float64
    machine epsilon, 2.2e-16), so a confident mistake costs about 36.04, not infinity.
    Lower is better.
    """
    if isinstance(output, Mapping):
        p = _distribution(output, "log_loss").get(label, 0.0)
    else:
        p = _probability(output, "log_loss", "output")
        if _binary_label(label, "log_loss") == 0:
            p = 1.0 - p
    return -math.log(min(max(p, LOG_LOSS_EPS), 1.0 - LOG_LOSS_EPS))
