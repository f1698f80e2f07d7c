"""The metrics package as a whole: exports, directions, names, binding, shipping."""

from __future__ import annotations

import ast
import importlib
import pickle
from pathlib import Path

import pytest

import hypermetric.metrics as metrics
from hypermetric.api.evals import Eval, as_eval, bind

MODULES = ["text", "retrieval", "classification", "_text_utils"]
# metric code runs per example in evaluator processes: pure Python, nothing heavy to import
ALLOWED_IMPORTS = {"__future__", "collections", "hypermetric", "math", "numbers", "operator"}
ALLOWED_IMPORTS |= {"dataclasses", "inspect", "re", "string", "sys", "types", "typing"}

# every public eval, with its direction and an example call that must give a score
EXPECTED: dict[str, tuple[bool, tuple[object, ...], float]] = {
    "exact_match": (True, ("Paris", "Paris"), 1.0),
    "normalized_exact_match": (True, ("the Paris.", "paris"), 1.0),
    "token_f1": (True, ("the cat sat", "cat sat down"), 0.8),
    "contains": (True, ("It is Paris.", "paris"), 1.0),
    "rouge_l": (True, ("the cat", "cat"), 2 / 3),
    "regex_match": (True, ("2024",), 1.0),
    "precision_at_5": (True, (["a", "x"], {"a"}), 0.2),
    "recall_at_5": (True, (["a", "x"], {"a", "b"}), 0.5),
    "hit_rate_at_5": (True, (["x", "a"], {"a"}), 1.0),
    "ndcg_at_5": (True, (["a"], {"a": 2}), 1.0),
    "mrr": (True, (["x", "a"], {"a"}), 0.5),
    "average_precision": (True, (["x", "a"], {"a"}), 0.5),
    "accuracy": (True, ("spam", "spam"), 1.0),
    "brier_score": (False, (0.5, 1), 0.25),
    "log_loss": (False, ({"a": 1.0, "b": 0.0}, "a"), 0.0),
}
FACTORIES = {"precision_at_k", "recall_at_k", "hit_rate_at_k", "ndcg_at_k"}


def all_evals() -> list[Eval]:
    out: list[Eval] = []
    for name in metrics.__all__:
        obj = getattr(metrics, name)
        if isinstance(obj, Eval):
            out.append(obj)
        elif name in FACTORIES:
            out.append(obj(5))
    out.append(metrics.regex_match(r"^\d+$"))
    return out


def test_the_package_exports_exactly_the_metrics() -> None:
    assert sorted(metrics.__all__) == metrics.__all__
    factories = {f"{name.removesuffix('_k')}_5" for name in FACTORIES}
    exported = {n.replace("_at_k", "_at_5") if n in FACTORIES else n for n in metrics.__all__}
    assert exported == set(EXPECTED) | factories | {"normalize_answer"}
    for name in metrics.__all__:
        assert getattr(metrics, name) is not None


@pytest.mark.parametrize("module", MODULES)
def test_each_module_declares_all_and_documents_it(module: str) -> None:
    mod = importlib.import_module(f"hypermetric.metrics.{module}")
    assert mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        if isinstance(obj, float):  # a constant, documented by a comment and its users
            continue
        doc = obj.description if isinstance(obj, Eval) else obj.__doc__
        assert doc and doc.strip(), f"{module}.{name} has no docstring"


def test_every_eval_declares_its_direction_name_and_works() -> None:
    seen = set()
    for ev in all_evals():
        assert ev.name in EXPECTED, ev.name
        higher, args, value = EXPECTED[ev.name]
        assert ev.higher_is_better is higher, ev.name
        assert ev(*args) == pytest.approx(value), ev.name
        assert ev.description, ev.name
        seen.add(ev.name)
    assert seen == set(EXPECTED)


def test_parameter_names_are_the_binding_names() -> None:
    want = {
        "text": ("output", "answer"),
        "retrieval": ("output", "relevant"),
        "classification": ("output", "label"),
    }
    for ev in all_evals():
        if ev.name == "regex_match":
            assert ev.parameter_names == ("output",)
            continue
        module = ev.fn.__module__.rsplit(".", 1)[-1]
        assert ev.parameter_names == want[module], ev.name


def test_evals_work_through_bind() -> None:
    bound = bind(metrics.token_f1, answer="gold")
    assert bound.mapping == {"answer": "gold"}
    assert (bound.name, bound.higher_is_better) == ("token_f1", True)
    assert bound(output="cat sat", answer="cat sat") == 1.0

    recall = bind(metrics.recall_at_k(10), name="recall_at_10_gold", relevant="gold_ids")
    assert recall.name == "recall_at_10_gold"
    assert dict(recall.params) == {"k": 10}
    assert recall.mapping == {"relevant": "gold_ids"}
    assert recall(output=["a", "b"], relevant=["b"]) == 1.0

    loss = bind(metrics.log_loss, label="y")
    assert loss.higher_is_better is False
    assert as_eval(metrics.brier_score) is metrics.brier_score


def test_binding_a_parameter_an_eval_lacks_is_an_error() -> None:
    from hypermetric.errors import DefinitionError

    with pytest.raises(DefinitionError, match="label"):
        bind(metrics.mrr, label="y")


def test_evals_survive_cloudpickle_for_the_evaluator_processes() -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    for ev in all_evals():
        copy = pickle.loads(cloudpickle.dumps(ev))
        assert (copy.name, copy.higher_is_better, dict(copy.params)) == (
            ev.name,
            ev.higher_is_better,
            dict(ev.params),
        )
        _, args, value = EXPECTED[ev.name]
        assert copy(*args) == pytest.approx(value)


def test_metric_modules_import_only_the_standard_library_and_hypermetric() -> None:
    package = Path(metrics.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, (path.name, roots)
