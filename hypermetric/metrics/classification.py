"""Classification evals, per example; their means are scikit-learn's scores.

Each takes ``output`` and ``label`` (the true class). ``output`` is one of:

* a **probability** (a float in [0, 1]) of the positive class of a binary task, whose
  ``label`` is 0, 1 or a bool (or, with ``classes=[negative, positive]``, one of those two);
* a **dict class -> probability** (multiclass, or binary written out): ``label`` is one
  of the classes. A class missing from the dict has probability 0; the probabilities
  must sum to 1 (within 1e-4, so float32 softmax outputs pass);
* for :func:`accuracy` only, also the **predicted label** itself.

**The class set.** A score must not depend on which classes one example's dict happens to
list. Give the set with ``classes=``: ``hm.metrics.brier_score(classes=["cat", "dog"])`` is
the same eval (same name) over that set, with ``params={"classes": ("cat", "dog")}``, the
way ``recall_at_k(5)`` carries ``k``; a label, dict key or predicted label outside the set
is an error row. The order of ``classes`` is the column order of scikit-learn's
``labels=``: it breaks accuracy's ties, and with a float output the second class is the
positive one. Without ``classes=``, each eval follows a rule that holds for every class
set at once, so its value never depends on one example's keys:

=================  =========  ====================================================================
eval               direction  per example (mean over examples = scikit-learn's score)
=================  =========  ====================================================================
``accuracy``       higher     1.0 if the predicted class is the label (``accuracy_score``); the
                              predicted class of a dict is its most probable class, a tie going to
                              the first of ``classes``, else to the smallest class (sorted order,
                              which is scikit-learn's column order)
``brier_score``    lower      the sum over classes of ``(p - [class == label]) ** 2``
                              (``brier_score_loss``). A float output is the binary score, in
                              [0, 1]. A dict is never halved without ``classes=``: Brier's
                              multiclass score, in [0, 2], which is scikit-learn's whenever the
                              run has 3 or more classes; with ``classes=`` of two it is halved, as
                              scikit-learn halves a two-column ``y_proba``
``log_loss``       lower      ``-ln(p(label))``, clipped (``log_loss``); the class set only
                              validates, the value does not depend on it
=================  =========  ====================================================================

So a two-class task written as dicts needs ``classes=`` (or a float output) to get the
binary Brier score; without it, every dict is scored as multiclass.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

from hypermetric.api.evals import Eval
from hypermetric.errors import DefinitionError

__all__ = ["LOG_LOSS_EPS", "ClassificationEval", "accuracy", "brier_score", "log_loss"]

_Probabilities = float | Mapping[Hashable, float]
_Classes = tuple[Hashable, ...]
_Scorer = Callable[[Any, Any, _Classes | None], float]

# scikit-learn clips probabilities to [eps, 1 - eps] with eps = the float64 machine
# epsilon, so log_loss is finite (at most -ln(eps) ~ 36.04) for a confident mistake.
LOG_LOSS_EPS = sys.float_info.epsilon
# Probabilities are checked, not renormalised; a float32 softmax over many classes drifts
# from 1 by ~1e-6, a mistake (logits, a truncated top-k) by far more.
_SUM_TOLERANCE = 1e-4


@dataclass(frozen=True, eq=False)
class ClassificationEval(Eval):
    """A classification eval that can be fixed to a class set: ``ev(classes=[...])``.

    Called with ``classes=`` alone it returns that eval over the set (an :class:`Eval` of
    ``(output, label)`` with ``params={"classes": ...}``); called with ``output`` and
    ``label`` it scores, over ``classes`` when given.
    """

    scorer: _Scorer | None = None

    def __call__(
        self, *args: Any, classes: Collection[Hashable] | None = None, **kwargs: Any
    ) -> Any:
        if classes is None:
            return super().__call__(*args, **kwargs)
        fixed = self.over(classes)
        return fixed(*args, **kwargs) if args or kwargs else fixed

    def over(self, classes: Collection[Hashable]) -> Eval:
        """This eval over ``classes`` (listed in the order that breaks ties)."""
        checked = _class_set(classes, self.name)
        scorer = self.scorer
        assert scorer is not None  # set by _classification below

        def over_classes(output: Any, label: Any) -> float:
            return scorer(output, label, checked)

        over_classes.__name__ = over_classes.__qualname__ = self.name
        # the code version hashes the unwrapped function: this eval's own definition, so
        # the hash changes with it (and `params` tells the class set apart)
        over_classes.__wrapped__ = self.fn  # type: ignore[attr-defined]
        return Eval(
            fn=over_classes,
            name=self.name,
            higher_is_better=self.higher_is_better,
            params=MappingProxyType({"classes": checked}),
            description=f"{self.description}\n\nOver the classes {list(checked)!r}.",
        )


def _classification(scorer: _Scorer, *, higher_is_better: bool) -> Callable[..., Any]:
    """Make the decorated ``(output, label)`` function a :class:`ClassificationEval`."""

    def wrap(fn: Callable[..., float]) -> ClassificationEval:
        return ClassificationEval(
            fn=fn,
            name=fn.__name__,
            higher_is_better=higher_is_better,
            description=inspect.getdoc(fn),
            scorer=scorer,
        )

    return wrap


def _class_set(classes: object, name: str) -> _Classes:
    if isinstance(classes, str | bytes | Mapping) or not isinstance(classes, Collection):
        raise DefinitionError(
            f"{name}(classes=...): classes must be a list of class labels, got {classes!r}"
        )
    try:
        distinct = len(set(classes))
    except TypeError:
        raise DefinitionError(f"{name}(classes=...): class labels must be hashable") from None
    if distinct < 2 or distinct != len(classes):
        raise DefinitionError(
            f"{name}(classes=...): list at least two classes, each once; got {classes!r}"
        )
    return tuple(classes)


def _probability(value: object, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: {what} must be a probability, got {type(value).__name__}")
    p = float(value)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"{name}: {what} must be a probability in [0, 1], got {value!r}")
    return p


def _member(value: object, classes: _Classes, name: str, what: str) -> None:
    if value not in classes:
        raise ValueError(
            f"{name}: {what} {value!r} is not one of classes {list(classes)!r}; "
            "add it to classes=[...] or fix the output"
        )


def _label(label: object, name: str, classes: _Classes | None) -> None:
    if classes is not None:
        _member(label, classes, name, "label")


def _positive(label: object, name: str, classes: _Classes | None) -> bool:
    """Whether ``label`` is the positive class of a binary task (classes[1] if given, else 1)."""
    if classes is not None:
        if len(classes) != 2:
            raise ValueError(
                f"{name}: a float output is a binary probability, but classes= lists "
                f"{len(classes)} classes; output a dict class -> probability"
            )
        _member(label, classes, name, "label")
        return bool(label == classes[1])
    if isinstance(label, Real) and label in (0, 1):
        return label == 1
    raise ValueError(
        f"{name}: with a probability as output the label must be 0, 1 or a bool, got {label!r}"
    )


def _binary(p: float, label: object, name: str, classes: _Classes | None) -> float:
    """The probability a float ``p`` of the positive class gives to ``label``."""
    return p if _positive(label, name, classes) else 1.0 - p


def _distribution(
    output: Mapping[Any, Any], name: str, classes: _Classes | None
) -> dict[Hashable, float]:
    probs = {cls: _probability(p, name, f"output[{cls!r}]") for cls, p in output.items()}
    if classes is not None:
        for cls in probs:
            _member(cls, classes, name, "output class")
    total = math.fsum(probs.values())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(
            f"{name}: the output probabilities must sum to 1, they sum to {total!r}; "
            "pass the full distribution (e.g. a softmax), not scores or a top-k"
        )
    return probs


def _predicted(probs: Mapping[Any, float], classes: _Classes | None) -> Any:
    """The most probable class; a tie goes to the first of ``classes``, else the smallest."""
    best = max(probs.values())
    tied = [cls for cls, p in probs.items() if p == best]
    if len(tied) == 1:
        return tied[0]
    if classes is not None:
        return min(tied, key=classes.index)
    try:
        return min(tied)
    except TypeError:
        raise ValueError(
            f"accuracy: the tied classes {tied!r} cannot be ordered; "
            "pass accuracy(classes=[...]) to say which comes first"
        ) from None


def _is_binary_probability(output: Any, label: Any, classes: _Classes | None) -> bool:
    """Whether accuracy reads ``output`` as P(positive) rather than a predicted label."""
    if isinstance(output, Integral) or not isinstance(output, Real):
        return False
    if not 0.0 <= float(output) <= 1.0:
        return False
    if classes is not None:
        return len(classes) == 2 and output not in classes
    return isinstance(label, Real) and label in (0, 1)


def _accuracy(output: Any, label: Any, classes: _Classes | None) -> float:
    _label(label, "accuracy", classes)
    if isinstance(output, Mapping):
        if not output:
            raise ValueError("accuracy: the output dict of probabilities is empty")
        return float(_predicted(_distribution(output, "accuracy", classes), classes) == label)
    if _is_binary_probability(output, label, classes):
        # A probability is never a label here; compare the class it predicts.
        return float((float(output) > 0.5) == _positive(label, "accuracy", classes))
    if classes is not None:
        _member(output, classes, "accuracy", "predicted label")
    return float(output == label)


def _brier(output: Any, label: Any, classes: _Classes | None) -> float:
    if not isinstance(output, Mapping):
        p = _binary(_probability(output, "brier_score", "output"), label, "brier_score", classes)
        return (1.0 - p) ** 2
    _label(label, "brier_score", classes)
    probs = _distribution(output, "brier_score", classes)
    # A class outside the dict has p = 0 and adds nothing, unless it is the label.
    total = math.fsum((p - (cls == label)) ** 2 for cls, p in probs.items())
    if label not in probs:
        total += 1.0
    return total / 2 if classes is not None and len(classes) == 2 else total


def _log_loss(output: Any, label: Any, classes: _Classes | None) -> float:
    if isinstance(output, Mapping):
        _label(label, "log_loss", classes)
        p = _distribution(output, "log_loss", classes).get(label, 0.0)
    else:
        p = _binary(_probability(output, "log_loss", "output"), label, "log_loss", classes)
    return -math.log(min(max(p, LOG_LOSS_EPS), 1.0 - LOG_LOSS_EPS))


@_classification(_accuracy, higher_is_better=True)
def accuracy(output: Any, label: Any) -> float:
    """1.0 if the predicted class equals ``label``, else 0.0; the mean is accuracy.

    The predicted class is ``output`` itself, or, for a dict class -> probability, the
    most probable class (on a tie the smallest class, or the first of ``classes=``), or,
    for a float probability of the positive class, the positive class when it is above
    0.5 (so 0.5 predicts the negative class, like an argmax over ``[1 - p, p]``). Other
    values are compared with ``==``. ``accuracy(classes=[...])`` fixes the class set.
    """
    return _accuracy(output, label, None)


@_classification(_brier, higher_is_better=False)
def brier_score(output: _Probabilities, label: Any) -> float:
    """Squared error of the predicted probabilities, as scikit-learn's ``brier_score_loss``.

    Binary (``output`` = P(positive), ``label`` 0/1/bool): ``(output - label) ** 2``, in
    [0, 1]. Multiclass (``output`` a dict): the sum over all classes of
    ``(p_class - [class == label]) ** 2``, in [0, 2] (Brier's definition), whatever the
    dict lists. ``brier_score(classes=[...])`` fixes the class set; over exactly two
    classes the sum is halved so that it equals the binary score, as
    ``brier_score_loss(scale_by_half="auto")`` does. Lower is better.
    """
    return _brier(output, label, None)


@_classification(_log_loss, higher_is_better=False)
def log_loss(output: _Probabilities, label: Any) -> float:
    """Negative natural log of the probability given to ``label`` (cross-entropy).

    Binary (``output`` = P(positive), ``label`` 0/1/bool): ``-ln(p)`` for label 1,
    ``-ln(1 - p)`` for label 0. Multiclass (``output`` a dict): ``-ln(output[label])``,
    probability 0 for a missing class. As in scikit-learn's ``log_loss``, the probability
    is first clipped to ``[eps, 1 - eps]`` with ``eps`` = :data:`LOG_LOSS_EPS` (the float64
    machine epsilon, 2.2e-16), so a confident mistake costs about 36.04, not infinity.
    ``log_loss(classes=[...])`` checks labels and outputs against a class set. Lower is
    better.
    """
    return _log_loss(output, label, None)
