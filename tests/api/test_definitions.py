"""Decorators validate at import time, bind eval arguments by name, and stay plain functions."""

from __future__ import annotations

import pickle

import pytest

import hypermetric as hm
from hypermetric.api.binding import make_plan
from hypermetric.api.versions import discover_components
from hypermetric.errors import BindingError, DefinitionError, ScheduleError
from tests.api import sample


def test_component_outside_a_run_is_the_plain_function() -> None:
    assert sample.retrieve("what is up") == ["doc-what", "doc-is"]
    assert sample.qa({"question": "hi there", "answer": "x"}) == "HI"


def test_binding_order_output_then_arguments_then_fields_then_example() -> None:
    def ev(output, question, answer, example):  # type: ignore[no-untyped-def]
        return 0.0

    plan = make_plan("generate", ("question", "docs"), hm.eval(ev))
    args = plan.arguments(
        "OUT", {"question": "from-args", "docs": []}, {"question": "from-example", "answer": "a"}
    )
    assert args == {
        "output": "OUT",
        "question": "from-args",
        "answer": "a",
        "example": {"question": "from-example", "answer": "a"},
    }


def test_bind_renames_a_parameter_source() -> None:
    def exact(output, answer):  # type: ignore[no-untyped-def]
        return float(output == answer)

    plan = make_plan("c", ("q",), hm.bind(exact, answer="gold"))
    assert plan.arguments("x", {"q": 1}, {"gold": "x", "answer": "y"}) == {
        "output": "x",
        "answer": "x",
    }


def test_unbindable_parameter_names_eval_parameter_and_what_was_available() -> None:
    def needs(output, gold):  # type: ignore[no-untyped-def]
        return 1.0

    plan = make_plan("generate", ("question",), hm.eval(needs))
    with pytest.raises(BindingError) as info:
        plan.arguments("o", {"question": "q"}, {"answer": "a"})
    message = str(info.value)
    assert "'needs'" in message and "'gold'" in message and "'generate'" in message
    assert "output, question, answer, example" in message


def test_bind_to_unknown_parameter_fails_at_decoration() -> None:
    def exact(output, answer):  # type: ignore[no-untyped-def]
        return 1.0

    with pytest.raises(DefinitionError, match="does not have"):
        hm.bind(exact, gold="answer")


def test_duplicate_eval_names_and_nameless_evals_are_refused() -> None:
    def f(output):  # type: ignore[no-untyped-def]
        return 1.0

    with pytest.raises(DefinitionError, match="two evals named 'f'"):
        hm.component(evals=[f, f])(lambda x: x)
    with pytest.raises(DefinitionError, match="needs a name"):
        hm.component(evals=[lambda output: 1.0])(lambda x: x)


def test_runtime_with_wrong_arguments_is_a_clear_error() -> None:
    with pytest.raises(DefinitionError, match=r"must take \(example\) or \(example, context\)"):
        hm.runtime(name="bad")(lambda: None)
    with pytest.raises(DefinitionError, match=r"it takes \(a, b, c\)"):
        hm.runtime(name="bad")(lambda a, b, c: None)
    ok = hm.runtime(name="ok")(lambda example, context: context.evaluation)
    assert ok({"x": 1}) == "ok"


def test_schedule_options_are_validated() -> None:
    with pytest.raises(ScheduleError, match="unknown timezone"):
        hm.runtime(name="x", timezone="Mars/Olympus")
    with pytest.raises(ScheduleError, match="before start_date"):
        hm.runtime(name="x", start_date="2026-02-01", end_date="2026-01-01")
    rt = hm.runtime(name="x", timezone="Europe/Paris", start_date="2026-03-01")(lambda e: e)
    assert rt.schedule.start_date is not None and rt.schedule.start_date.hour == 23


def test_code_version_changes_with_any_step_and_components_are_found() -> None:
    found = discover_components(sample.qa.fn)
    assert set(found) == {"retrieve", "generate"}
    info = sample.qa.versions()
    assert set(info["components"]) == {"retrieve", "generate"}
    assert info["evals"]["exact"]["higher_is_better"] is True
    assert info["evals"]["slowness"]["higher_is_better"] is False
    assert info["evals"]["exact"]["components"] == ["generate"]
    assert len(info["code_version"]) == 16


def test_evals_pickle_with_their_parameters() -> None:
    from ray import cloudpickle

    back = pickle.loads(cloudpickle.dumps(hm.bind(hm.metrics.token_f1, answer="gold")))
    assert (back.name, dict(back.mapping)) == ("token_f1", {"answer": "gold"})
    # evals travel as Ray sends them (cloudpickle): factories keep their parameters
    ev = pickle.loads(cloudpickle.dumps(hm.bind(hm.metrics.recall_at_k(5), relevant="gold")))
    assert (ev.name, dict(ev.params), dict(ev.mapping)) == (
        "recall_at_5",
        {"k": 5},
        {"relevant": "gold"},
    )
    assert ev(["a", "b"], {"a"}) == 1.0


def test_components_and_runtimes_pickle_by_reference() -> None:
    assert pickle.loads(pickle.dumps(sample.generate)) is sample.generate
    assert pickle.loads(pickle.dumps(sample.qa)) is sample.qa
    assert sample.qa.import_path == "tests.api.sample:qa"


def test_runtime_evals_bind_the_final_output_and_the_whole_example() -> None:
    def judge(output, example, answer):  # type: ignore[no-untyped-def]
        return float(output == answer and "answer" in example)

    rt = hm.runtime(name="rt", evals=[judge])(lambda example: example["answer"])
    (plan,) = rt.plans
    row = {"answer": "x"}
    assert plan.arguments("x", {}, row) == {"output": "x", "example": row, "answer": "x"}
