"""Lineage found statically: components reached through helpers, other modules, methods,
closures and defaults count; the code of what is not the user's is not walked."""

from __future__ import annotations

import importlib
import sys
import uuid
from pathlib import Path

import hypermetric as hm
from hypermetric.api.versions import component_lineage, discover_components, merge_lineage

STEPS = """
import hypermetric as hm

@hm.eval(higher_is_better=False)
def cost(output: str) -> float:
    return float(len(output))

@hm.component(evals=[cost])
def answer(question: str) -> str:
    return question.upper()

@hm.component
def rank(docs: list) -> list:
    return sorted(docs)

@hm.component
def polish(text: str) -> str:
    return text.strip()

class Pipeline:
    def run(self, example):
        return self._polish(answer(example["question"]))

    def _polish(self, text):
        return polish(text)
"""

RUNTIME = """
import json
import hypermetric as hm
import {steps} as steps
from {steps} import Pipeline

@hm.component
def fetch(q: str) -> list:
    return [q]

def helper(example):
    return steps.rank(fetch(example["q"]))

def make(step):
    def call(x):
        return step(x)
    return call

closure = make(hm.component(lambda x: x, name="inner"))

def with_default(x, step=fetch):
    return step(x)

@hm.runtime(name="lineage-{tag}")
def runtime(example):
    json.dumps(example)
    helper(example)
    closure(example)
    with_default(example["q"])
    return Pipeline().run(example)
"""


def _modules(folder: Path) -> object:
    tag = uuid.uuid4().hex[:8]
    (folder / f"hm_steps_{tag}.py").write_text(STEPS)
    text = RUNTIME.replace("{steps}", f"hm_steps_{tag}").replace("{tag}", tag)
    (folder / f"hm_rt_{tag}.py").write_text(text)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(f"hm_rt_{tag}")
    finally:
        sys.path.remove(str(folder))


def test_components_are_found_through_helpers_modules_methods_and_closures(
    tmp_path: Path,
) -> None:
    module = _modules(tmp_path)
    runtime = module.runtime  # type: ignore[attr-defined]
    found = discover_components(runtime.fn)
    assert set(found) == {"fetch", "rank", "answer", "polish", "inner"}
    info = runtime.versions()
    assert set(info["components"]) == set(found)
    assert info["evals"]["cost"]["higher_is_better"] is False
    assert info["evals"]["cost"]["components"] == ["answer"]


def test_lineage_a_run_finds_is_merged_into_its_versions(tmp_path: Path) -> None:
    module = _modules(tmp_path)

    @hm.runtime(name="bare")
    def bare(example: dict) -> str:
        return str(example)

    static = bare.versions()
    assert static["components"] == {} and "cost" not in static["evals"]
    steps = sys.modules[module.Pipeline.__module__]  # type: ignore[attr-defined]
    merged = merge_lineage(static, {"answer": component_lineage(steps.answer)})
    assert set(merged["components"]) == {"answer"}
    assert merged["evals"]["cost"]["higher_is_better"] is False
    assert merged["code_version"] != static["code_version"]
    assert merge_lineage(merged, {"answer": component_lineage(steps.answer)}) == merged
