"""Classification evals against scikit-learn, per example and as means."""

from __future__ import annotations

import math
import random
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from hypermetric.metrics import accuracy, brier_score, log_loss
from hypermetric.metrics.classification import LOG_LOSS_EPS

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
        accuracy_score(labels, predicted)
    )


def test_a_two_class_dict_scores_like_the_binary_probability() -> None:
    for output, y in multiclass_cases(2, ["neg", "pos"])[:PER_EXAMPLE]:
        p = output["pos"]
        label = int(y == "pos")
        assert brier_score(output, y) == pytest.approx(brier_score(p, label), abs=1e-12)
        assert brier_score(output, y) == pytest.approx(
            brier_score_loss([y], [[output["neg"], p]], labels=["neg", "pos"]), abs=1e-12
        )
        assert log_loss(output, y) == pytest.approx(log_loss(p, label), rel=1e-9)


def test_accuracy_matches_sklearn_on_predicted_labels() -> None:
    rng = random.Random(8)
    for labels in ([0, 1, 2], ["cat", "dog"], [True, False]):
        y_true = [rng.choice(labels) for _ in range(CASES)]
        y_pred = [rng.choice(labels) for _ in range(CASES)]
        mean = sum(accuracy(p, y) for p, y in zip(y_pred, y_true, strict=True)) / CASES
        assert mean == pytest.approx(accuracy_score(y_true, y_pred))
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
    assert accuracy({"a": 0.5, "b": 0.5}, "a") == 1.0  # the first class wins a tie
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
    assert brier_score({"a": 1.0}, "b") == pytest.approx(1.0)  # two classes: halved
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
