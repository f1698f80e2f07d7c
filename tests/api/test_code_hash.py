"""A component's code hash (its calls' cache key, its lineage) covers the helpers and the
constants of the user's code it reaches, so a cached call is not served after a prompt
template changed in a helper."""

from __future__ import annotations

import importlib
import linecache
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import hypermetric as hm
from hypermetric.api.calls import cache_key
from hypermetric.api.versions import code_hash, component_lineage, source_hash
from hypermetric.metrics import regex_match, token_f1

STEPS = """
import hypermetric as hm
import {helpers} as helpers
from {helpers} import build_prompt

TEMPLATE = {template!r}


@hm.component
def ask(question: str) -> str:
    return build_prompt(question) + helpers.SUFFIX + TEMPLATE


@hm.component
def alone(question: str, suffix: str = "?") -> str:
    return question.strip() + suffix


@hm.runtime(name="code-hash")
def runtime(example):
    return ask(example["question"])
"""

HELPERS = """
SUFFIX = {suffix!r}


def build_prompt(question):
    return _wrap(question)


def _wrap(question):
    return {wrap!r} + question


def unused():
    return {unused!r}
"""

BASE = {"template": "Answer: ", "suffix": "?", "wrap": "Q: ", "unused": "a"}


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write the two modules with the given texts and import them afresh (same names)."""
    tag = uuid.uuid4().hex[:8]
    helpers, steps = f"hm_helpers_{tag}", f"hm_steps_{tag}"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def write(**changes: str) -> Any:
        texts = {**BASE, **changes}
        (tmp_path / f"{helpers}.py").write_text(HELPERS.format(**texts))
        (tmp_path / f"{steps}.py").write_text(
            STEPS.replace("{helpers}", helpers).replace("{template!r}", repr(texts["template"]))
        )
        for name in (steps, helpers):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        linecache.clearcache()
        return importlib.import_module(steps)

    yield write
    for name in (steps, helpers):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "change",
    [
        {"wrap": "Question: "},  # a helper two calls away
        {"suffix": "!"},  # a constant of the helpers' module, read as helpers.SUFFIX
        {"template": "Reply: "},  # a constant of the component's own module
    ],
)
def test_a_change_the_output_depends_on_changes_the_hash(load: Any, change: dict) -> None:
    before = load().ask.code_hash
    after = load(**change)
    assert after.ask.code_hash != before
    # and the key of the same call with it: a cached output of the old code is not served
    assert cache_key(after.ask.code_hash, {"question": "q"}, {}) != cache_key(
        before, {"question": "q"}, {}
    )


def test_the_hash_is_the_same_for_the_same_code(load: Any) -> None:
    first = load()
    before = first.ask.code_hash
    assert code_hash(first.ask.fn) == before
    # what the component does not reach changes nothing
    assert load(unused="b").ask.code_hash == before


def test_a_component_that_reaches_nothing_keeps_its_source_hash(load: Any) -> None:
    steps = load()
    # its default is an argument of its calls, in their key already: a cache filled before
    # this hash existed still serves it
    assert steps.alone.code_hash == source_hash(steps.alone.fn)
    # a built-in metric is not the user's code: its source is its hash (its params, such as
    # a pattern, are recorded beside it)
    assert code_hash(token_f1.fn) == source_hash(token_f1.fn)
    digits = regex_match(r"\d+", name="digits")
    assert code_hash(digits.fn) == source_hash(digits.fn)


def test_the_lineage_records_the_same_hash(load: Any) -> None:
    steps = load()
    assert component_lineage(steps.ask)["hash"] == steps.ask.code_hash
    before = steps.runtime.versions()
    after = load(wrap="Question: ").runtime.versions()
    assert after["components"]["ask"] != before["components"]["ask"]
    assert after["code_version"] != before["code_version"]


def _make(prompt: str) -> Any:
    @hm.component(name="made")
    def made(question: str) -> str:
        return prompt + question

    return made


def test_components_made_by_one_factory_differ_by_what_they_close_over() -> None:
    assert _make("A: ").code_hash != _make("B: ").code_hash
    assert _make("A: ").code_hash == _make("A: ").code_hash


SCRIPT = """
PROMPT = {prompt!r}


def render(question):
    return PROMPT.format(q=question)


def ask(question):
    return render(question).upper()
"""


def _script_ask(path: Path, prompt: str) -> bytes:
    """``ask`` of a script run as ``python script.py``, pickled as Ray ships it to a worker
    (by value: its module is ``__main__``)."""
    import cloudpickle

    path.write_text(SCRIPT.format(prompt=prompt))
    linecache.clearcache()
    scope: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(path.read_text(), str(path), "exec"), scope)
    return cloudpickle.dumps(scope["ask"])


def test_a_scripts_component_in_a_worker_is_hashed_with_its_helpers_and_constants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle
    import types

    script = tmp_path / "nightly.py"
    first, same, edited = (_script_ask(script, p) for p in ("A: {q}", "A: {q}", "B: {q}"))
    # in a Ray worker, __main__ is Ray's own module, not the user's script
    workers_main = types.ModuleType("__main__")
    workers_main.__file__ = types.__file__  # a file of the standard library
    monkeypatch.setitem(sys.modules, "__main__", workers_main)
    hashes = [code_hash(pickle.loads(blob)) for blob in (first, same, edited)]
    assert hashes[0] == hashes[1], "the same script hashes the same in every process"
    assert hashes[2] != hashes[0], "an edited prompt in a helper's constant is a new key"
    assert hashes[0] != source_hash(pickle.loads(first)), "its helper is in the hash"


@pytest.mark.ray
@pytest.mark.slow
def test_a_script_run_again_after_its_prompt_changed_calls_again(
    tmp_path: Path, env: dict[str, str], ray_cluster: str
) -> None:
    import subprocess

    script = tmp_path / "nightly.py"
    body = """
import hypermetric as hm

PROMPT = {prompt!r}


def render(question):
    return PROMPT.format(q=question)


@hm.component(cache=True)
def ask(question: str) -> str:
    return render(question).upper()


@hm.runtime(name="script-cache")
def nightly(example):
    return ask(example["question"])


result = nightly.run(dataset=[{{"question": "q1"}}, {{"question": "q2"}}])
calls = result.calls().filter("component = 'ask'").order("example_id")
print(sorted(set(calls.project("cached").fetchall())), calls.project("output").fetchall())
"""
    outputs = []
    for prompt in ("A: {q}", "A: {q}", "B: {q}"):
        script.write_text(body.format(prompt=prompt))
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env={**env, "RAY_ADDRESS": ray_cluster},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout.strip().splitlines()[-1])
    assert outputs == [
        "[(False,)] [('\"A: Q1\"',), ('\"A: Q2\"',)]",
        "[(True,)] [('\"A: Q1\"',), ('\"A: Q2\"',)]",
        "[(False,)] [('\"B: Q1\"',), ('\"B: Q2\"',)]",
    ]
