"""Classification evals against scikit-learn, per example and as means."""

from __future__ import annotations

import math
import pickle
import random
import sys
from collections.abc import Callable
from typing import Any

import cloudpickle
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from hypermetric.api.evals import Eval, bind
from hypermetric.errors import DefinitionError
from hypermetric.metrics import accuracy, brier_score, log_loss
from hypermetric.metrics.classification import LOG_LOSS_EPS, ClassificationEval

CASES = 300
PER_EXAMPLE = 100  # sklearn costs ~1 ms a call; means cover every case
EPS = sys.float_info.epsilon


def binary_cases(seed: int) -> list[tuple[float, int | bool]]:
    rng = random.Random(seed)
    cases: list[tuple[float, int | bool]] = []
    for _ in range(CASES):
        p = rng.choice([rng.random(), rng.random(), 0.0, 1.0, 0.5, 1e-20, 1 - 1e-16])
        label: int | bool = rng.choice([0, 1, True, False])
        cases.append((p, label))
    return cases


def multiclass_cases(seed: int, classes: list[str]) -> list[tuple[dict[str, float], str]]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(CASES):
        probs = rng.dirichlet(np.full(len(classes), rng.choice([0.2, 1.0, 5.0])))
        order = rng.permutation(len(classes))  # dict order must not matter
        output = {classes[i]: float(probs[i]) for i in order}
        cases.append((output, str(rng.choice(classes))))
    return cases


@pytest.mark.parametrize("seed", [0, 1])
def test_binary_scores_match_sklearn_per_example_and_on_average(seed: int) -> None:
    cases = binary_cases(seed)
    for p, y in cases[:PER_EXAMPLE]:
        assert brier_score(p, y) == pytest.approx(
            brier_score_loss([int(y)], [p], labels=[0, 1]), abs=1e-12
        )
        assert log_loss(p, y) == pytest.approx(sk_log_loss([int(y)], [p], labels=[0, 1]), rel=1e-12)
        assert accuracy(p, y) == accuracy_score([int(y)], [int(p > 0.5)])
    probs = [p for p, _ in cases]
    labels = [int(y) for _, y in cases]
    mean = sum(brier_score(p, y) for p, y in cases) / CASES
    assert mean == pytest.approx(brier_score_loss(labels, probs), abs=1e-12)
    mean = sum(log_loss(p, y) for p, y in cases) / CASES
    assert mean == pytest.approx(sk_log_loss(labels, probs), rel=1e-12)


@pytest.mark.parametrize("n_classes", [3, 5])
def test_multiclass_scores_match_sklearn(n_classes: int) -> None:
    classes = [f"class{i}" for i in range(n_classes)]  # sklearn orders columns by label
    cases = multiclass_cases(n_classes, classes)
    matrix = [[output[c] for c in classes] for output, _ in cases]
    labels = [y for _, y in cases]
    for row, (output, y) in zip(matrix[:PER_EXAMPLE], cases, strict=False):
        assert brier_score(output, y) == pytest.approx(
            brier_score_loss([y], [row], labels=classes), abs=1e-12
        )
        assert log_loss(output, y) == pytest.approx(
            sk_log_loss([y], [row], labels=classes), rel=1e-12
        )
    assert sum(brier_score(o, y) for o, y in cases) / CASES == pytest.approx(
        brier_score_loss(labels, matrix, labels=classes), abs=1e-12
    )
    assert sum(log_loss(o, y) for o, y in cases) / CASES == pytest.approx(
        sk_log_loss(labels, matrix, labels=classes), rel=1e-12
    )
    predicted = [classes[int(np.argmax(row))] for row in matrix]
    assert sum(accuracy(o, y) for o, y in cases) / CASES == pytest.approx(
        accuracy_score(labels, predicted), abs=1e-12
    )


def test_a_two_class_dict_over_two_classes_scores_like_the_binary_probability() -> None:
    binary = brier_score(classes=["neg", "pos"])
    for output, y in multiclass_cases(2, ["neg", "pos"])[:PER_EXAMPLE]:
        p = output["pos"]
        label = int(y == "pos")
        row = [[output["neg"], p]]
        assert binary(output, y) == pytest.approx(brier_score(p, label), abs=1e-12)
        assert binary(output, y) == pytest.approx(
            brier_score_loss([y], row, labels=["neg", "pos"]), abs=1e-12
        )
        # Convention: without classes= a dict is scored as multiclass, never halved
        assert brier_score(output, y) == pytest.approx(
            brier_score_loss([y], row, labels=["neg", "pos"], scale_by_half=False), abs=1e-12
        )
        assert log_loss(output, y) == pytest.approx(log_loss(p, label), rel=1e-9)


def test_accuracy_matches_sklearn_on_predicted_labels() -> None:
    rng = random.Random(8)
    for labels in ([0, 1, 2], ["cat", "dog"], [True, False]):
        y_true = [rng.choice(labels) for _ in range(CASES)]
        y_pred = [rng.choice(labels) for _ in range(CASES)]
        mean = sum(accuracy(p, y) for p, y in zip(y_pred, y_true, strict=True)) / CASES
        assert mean == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
        assert 0.2 < mean < 0.8


def test_hand_checked_values() -> None:
    assert brier_score(0.7, 1) == pytest.approx(0.09)
    assert brier_score(0.7, False) == pytest.approx(0.49)
    # (0.2 - 0)^2 + (0.5 - 1)^2 + (0.3 - 0)^2 = 0.38
    assert brier_score({"a": 0.2, "b": 0.5, "c": 0.3}, "b") == pytest.approx(0.38)
    assert log_loss(0.8, 1) == pytest.approx(-math.log(0.8))
    assert log_loss(0.8, 0) == pytest.approx(-math.log(0.2))
    assert log_loss({"a": 0.25, "b": 0.75}, "a") == pytest.approx(math.log(4))
    assert accuracy({"a": 0.2, "b": 0.8}, "b") == 1.0
    assert accuracy({"b": 0.5, "a": 0.5}, "a") == 1.0  # the smallest class wins a tie
    assert accuracy(0.5, 0) == 1.0  # 0.5 predicts the negative class
    assert accuracy(0.51, True) == 1.0
    assert accuracy("spam", "spam") == 1.0
    assert accuracy(2, 1) == 0.0


def test_log_loss_clips_like_sklearn() -> None:
    assert LOG_LOSS_EPS == EPS == np.finfo(np.float64).eps
    assert log_loss(0.0, 1) == pytest.approx(-math.log(EPS))
    assert log_loss(1.0, 0) == pytest.approx(sk_log_loss([0], [1.0], labels=[0, 1]))
    assert log_loss(1.0, 1) == pytest.approx(-math.log(1 - EPS))
    assert math.isfinite(log_loss({"a": 1.0, "b": 0.0}, "b"))


def test_a_class_missing_from_the_dict_has_probability_zero() -> None:
    assert log_loss({"a": 1.0}, "b") == pytest.approx(-math.log(EPS))
    assert brier_score({"a": 0.6, "b": 0.4}, "c") == pytest.approx(0.36 + 0.16 + 1.0)
    assert brier_score({"a": 1.0}, "b") == 2.0  # never halved without classes=
    assert brier_score(classes=["a", "b"])({"a": 1.0}, "b") == 1.0
    assert accuracy({"a": 1.0}, "b") == 0.0


@pytest.mark.parametrize(
    ("output", "label", "error", "message"),
    [
        (1.5, 1, ValueError, r"probability in \[0, 1\]"),
        (-0.1, 0, ValueError, r"probability in \[0, 1\]"),
        (float("nan"), 1, ValueError, r"probability in \[0, 1\]"),
        (True, 1, TypeError, "must be a probability"),
        ("0.5", 1, TypeError, "must be a probability"),
        (0.5, 2, ValueError, "label must be 0, 1 or a bool"),
        (0.5, "yes", ValueError, "label must be 0, 1 or a bool"),
        ({"a": 0.5, "b": 0.6}, "a", ValueError, "must sum to 1"),
        ({"a": 2.0, "b": -1.0}, "a", ValueError, r"probability in \[0, 1\]"),
        ({}, "a", ValueError, "must sum to 1"),
    ],
)
def test_bad_probabilities_raise(output: object, label: object, error: type, message: str) -> None:
    for ev in (brier_score, log_loss):
        with pytest.raises(error, match=message):
            ev(output, label)


def test_float32_probabilities_are_accepted() -> None:
    probs = np.asarray([0.1, 0.2, 0.3, 0.4], dtype=np.float32) / np.float32(1.0000001)
    output = {i: float(p) for i, p in enumerate(probs)}
    assert log_loss(output, 3) == pytest.approx(-math.log(0.4), rel=1e-6)
    assert brier_score(np.float64(0.25), np.int64(1)) == pytest.approx(0.5625)


# --- The class set: from classes=, or a rule that holds for every class set -----------------
def sparse_cases(seed: int, classes: list[str]) -> list[tuple[dict[str, float], str]]:
    """Dicts that leave out their zero-probability classes, often with tied maxima."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(CASES):
        k = int(rng.integers(1, len(classes) + 1))
        support = [str(c) for c in rng.choice(classes, size=k, replace=False)]
        probs = np.full(k, 1 / k) if rng.random() < 0.3 else rng.dirichlet(np.ones(k))
        cases.append((dict(zip(support, map(float, probs), strict=True)), str(rng.choice(classes))))
    return cases


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_outputs_that_omit_zero_probability_classes_match_sklearn(n_classes: int) -> None:
    classes = [f"c{i}" for i in range(n_classes)]  # sorted: scikit-learn's column order
    cases = sparse_cases(10 + n_classes, classes)
    matrix = np.array([[output.get(c, 0.0) for c in classes] for output, _ in cases])
    labels = [y for _, y in cases]
    fixed = {ev.name: ev(classes=classes) for ev in (accuracy, brier_score, log_loss)}

    def mean(ev: Callable[[Any, Any], float]) -> float:
        return math.fsum(ev(o, y) for o, y in cases) / CASES

    want_brier = brier_score_loss(labels, matrix, labels=classes)
    assert mean(fixed["brier_score"]) == pytest.approx(want_brier, abs=1e-12)
    unhalved = brier_score_loss(labels, matrix, labels=classes, scale_by_half=False)
    assert mean(brier_score) == pytest.approx(unhalved, abs=1e-12)
    if n_classes >= 3:  # scikit-learn halves only a two-column y_proba
        assert mean(brier_score) == pytest.approx(want_brier, abs=1e-12)
    want_loss = sk_log_loss(labels, matrix, labels=classes)
    assert mean(log_loss) == pytest.approx(want_loss, abs=1e-12)
    assert mean(fixed["log_loss"]) == pytest.approx(want_loss, abs=1e-12)
    # numpy's argmax takes the first of tied columns, the smallest class
    predicted = [classes[i] for i in matrix.argmax(axis=1)]
    assert mean(accuracy) == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    assert mean(fixed["accuracy"]) == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    ties = sum(sorted(row)[-1] == sorted(row)[-2] for row in matrix)
    assert ties > CASES // 10  # the tie rule is exercised


def test_the_issue_example_a_three_class_dict_without_its_zeros() -> None:
    want = brier_score_loss(["c0"], [[0.0, 1.0, 0.0]], labels=["c0", "c1", "c2"])
    assert want == 2.0
    assert brier_score({"c1": 1.0}, "c0") == want
    assert brier_score(classes=["c0", "c1", "c2"])({"c1": 1.0}, "c0") == want
    assert brier_score({"c1": 1.0}, "c0", classes=["c0", "c1", "c2"]) == want


def test_a_score_never_depends_on_which_zeros_the_dict_lists() -> None:
    classes = ["a", "b", "c", "d"]
    for output, y in sparse_cases(3, classes)[:PER_EXAMPLE]:
        full = {c: output.get(c, 0.0) for c in reversed(classes)}
        for ev in (accuracy, brier_score, log_loss):
            assert ev(output, y) == ev(full, y), (ev.name, output, y)
            assert ev(output, y, classes=classes) == ev(full, y, classes=classes)


def test_classes_make_an_eval_with_params_like_a_factory() -> None:
    for ev in (accuracy, brier_score, log_loss):
        fixed = ev(classes=("cat", "dog", "bird"))
        assert isinstance(fixed, Eval) and not isinstance(fixed, ClassificationEval)
        assert (fixed.name, fixed.higher_is_better) == (ev.name, ev.higher_is_better)
        assert dict(fixed.params) == {"classes": ("cat", "dog", "bird")}
        assert fixed.parameter_names == ("output", "label") == ev.parameter_names
        assert fixed.description and "['cat', 'dog', 'bird']" in fixed.description
        assert dict(ev.params) == {}
        copy = pickle.loads(cloudpickle.dumps(fixed))
        assert copy({"cat": 0.5, "bird": 0.5}, "bird") == fixed({"cat": 0.5, "bird": 0.5}, "bird")
    copy = pickle.loads(cloudpickle.dumps(brier_score))  # as a Ray worker receives it
    assert copy(classes=["a", "b"])({"a": 1.0}, "b") == 1.0 and copy({"a": 1.0}, "b") == 2.0
    bound = bind(brier_score(classes=["no", "yes"]), label="gold")
    assert dict(bound.params) == {"classes": ("no", "yes")} and bound.mapping == {"label": "gold"}


def test_a_float_output_over_two_classes_is_the_second_class_probability() -> None:
    rng = random.Random(4)
    cases = [(rng.random(), rng.choice(["ham", "spam"])) for _ in range(CASES)]
    probs, labels = [p for p, _ in cases], [y for _, y in cases]
    for ev, want in (
        (brier_score, brier_score_loss(labels, probs, pos_label="spam")),
        (log_loss, sk_log_loss(labels, np.column_stack([1 - np.array(probs), probs]))),
        (accuracy, accuracy_score(labels, ["spam" if p > 0.5 else "ham" for p in probs])),
    ):
        fixed = ev(classes=["ham", "spam"])
        assert math.fsum(fixed(p, y) for p, y in cases) / CASES == pytest.approx(want, abs=1e-12)
    assert accuracy(0.5, "ham", classes=["ham", "spam"]) == 1.0


def test_accuracy_ties_go_to_the_first_listed_class_or_the_smallest() -> None:
    tie = {"dog": 0.4, "cat": 0.4, "bird": 0.2}
    assert accuracy(tie, "cat") == 1.0  # sorted: cat < dog
    assert accuracy(tie, "dog", classes=["bird", "dog", "cat"]) == 1.0
    assert accuracy({0: 0.5, 1: 0.5}, 0) == 1.0
    with pytest.raises(ValueError, match=r"cannot be ordered; pass accuracy\(classes="):
        accuracy({1: 0.5, "one": 0.5}, 1)
    assert accuracy({1: 0.5, "one": 0.5}, "one", classes=["one", 1]) == 1.0


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ("abc", "must be a list of class labels"),
        ({"a": 1, "b": 2}, "must be a list of class labels"),
        (5, "must be a list of class labels"),
        (["a"], "at least two classes, each once"),
        (["a", "b", "a"], "at least two classes, each once"),
        ([["a"], ["b"]], "must be hashable"),
    ],
)
def test_bad_class_sets_are_definition_errors(classes: object, message: str) -> None:
    for ev in (accuracy, brier_score, log_loss):
        with pytest.raises(DefinitionError, match=rf"{ev.name}\(classes=...\): .*{message}"):
            ev(classes=classes)


def test_values_outside_the_class_set_raise() -> None:
    three = ["a", "b", "c"]
    for ev in (accuracy, brier_score, log_loss):
        with pytest.raises(ValueError, match=r"label 'z' is not one of classes \['a', 'b', 'c'\]"):
            ev({"a": 1.0}, "z", classes=three)
        with pytest.raises(ValueError, match="output class 'z' is not one of classes"):
            ev({"z": 1.0}, "a", classes=three)
    for ev in (brier_score, log_loss):
        with pytest.raises(ValueError, match="a binary probability, but classes= lists 3"):
            ev(0.25, "a", classes=three)
    with pytest.raises(ValueError, match="predicted label 'z' is not one of classes"):
        accuracy("z", "a", classes=three)
    with pytest.raises(ValueError, match=r"predicted label 0\.25 is not one of classes"):
        accuracy(0.25, "a", classes=three)  # over three classes a float is a label
