"""Lineage from what runs, through real runs: a component reached only at run time (looked
up by name in another module) is recorded with its eval's direction, so changing its body
changes the run's code version and a CI gate judges its cost the right way round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypermetric.catalog.db import database
from hypermetric.catalog.runs import list_runs
from tests.engine.conftest import run_cli

pytestmark = pytest.mark.ray

STEPS = """
import hypermetric as hm

@hm.eval(higher_is_better=False)
def cost(output: str, factor: float) -> float:
    return len(output) * factor

@hm.component(evals=[cost])
def answer(question: str) -> str:
    return {body}
"""

RUNTIME = """
import importlib
import hypermetric as hm

STEP = "answer"

def rows(ctx):
    return [{{"id": i, "question": f"question {{i}}", "factor": float(ctx.params["factor"])}}
            for i in range(60)]

def pipeline(example):
    # looked up by name at run time: no walk of the code can see it
    steps = importlib.import_module({steps!r})
    return getattr(steps, STEP)(example["question"])

@hm.runtime(name="lineage-cost", dataset=rows)
def runtime(example):
    return pipeline(example)
"""


def test_a_component_reached_at_run_time_counts_for_code_and_direction(
    engine_settings: object, env: dict[str, str], ray_cluster: str, tmp_path: Path
) -> None:
    steps = f"hm_steps_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{steps}.py").write_text(STEPS.format(body="question.upper()"))
    runtime = tmp_path / "hm_lineage_runtime.py"
    runtime.write_text(RUNTIME.format(steps=steps))
    env = {**env, "RAY_ADDRESS": ray_cluster, "PYTHONPATH": str(tmp_path)}
    target = f"{runtime}:runtime"
    for version, factor in (("base", 1.0), ("half", 0.5), ("double", 2.0)):
        done = run_cli(env, "run", target, "--param", f"factor={factor}", "--version", version)
        assert done.returncode == 0, done.stderr
    runs = {r.version_label: r for r in list_runs(database(), evaluation="lineage-cost")}
    base = runs["base"]
    assert base.versions is not None and set(base.versions["components"]) == {"answer"}
    assert base.versions["evals"]["cost"]["higher_is_better"] is False
    assert base.code_version == runs["half"].code_version == base.versions["code_version"]

    # halving a lower-is-better cost passes the gate; doubling it fails it
    half = run_cli(env, "compare", "lineage-cost@base", "lineage-cost@half", "--fail-on-regression")
    assert half.returncode == 0, half.stdout + half.stderr
    double = run_cli(
        env, "compare", "lineage-cost@base", "lineage-cost@double", "--fail-on-regression"
    )
    assert double.returncode == 1 and "regression: answer/cost" in double.stderr
    shown = run_cli(env, "compare", "lineage-cost@base", "lineage-cost@half", "--format", "json")
    (metric,) = json.loads(shown.stdout)["metrics"]
    assert (metric["higher_is_better"], metric["improved"], metric["regressed"]) == (False, 60, 0)

    # a change to the component's body is a new code version
    (tmp_path / f"{steps}.py").write_text(STEPS.format(body="question.lower()"))
    changed = run_cli(env, "run", target, "--param", "factor=1", "--version", "lower")
    assert changed.returncode == 0, changed.stderr
    (lower,) = list_runs(database(), evaluation="lineage-cost", limit=1)
    assert lower.version_label == "lower" and lower.code_version != base.code_version
    assert lower.versions["components"]["answer"] != base.versions["components"]["answer"]
