"""User code that exits or interrupts (SystemExit, KeyboardInterrupt raised by an eval or a
component) is an error row, never a dead worker driven again and again; an example that
cannot cross a process boundary never has to (it is scored where it was driven)."""

from __future__ import annotations

import pytest

from hypermetric.api.context import RunContext
from hypermetric.api.datasets import iter_chunks
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings
from hypermetric.engine.runner import run_runtime
from hypermetric.engine.worker import drive_unit
from tests.engine import sample
from tests.engine.conftest import assert_exactly_once


@pytest.mark.ray
def test_exits_and_interrupts_in_user_code_are_error_rows(engine_settings: Settings) -> None:
    run = run_runtime(sample.exiting)
    assert run.state == "success" and run.attempt == 1
    table = assert_exactly_once(run.id, 100)
    errors = {
        int(example): error
        for example, error in zip(
            table["example_id"].to_pylist(), table["error"].to_pylist(), strict=True
        )
        if error is not None
    }
    calls_failed = {i for i in range(100) if i % 11 == 0}
    assert all(errors[i] == "not scored: the call failed (SystemExit: 3)" for i in calls_failed)
    assert all(
        errors[i] == f"SystemExit: eval exit on {i}"
        for i in range(0, 100, 5)
        if i not in calls_failed
    )
    assert all(
        errors[i] == "KeyboardInterrupt"
        for i in range(0, 100, 7)
        if i not in calls_failed and i % 5
    )
    expected = calls_failed | {i for i in range(100) if i % 5 == 0 or i % 7 == 0}
    assert set(errors) == expected


def test_an_example_that_cannot_be_pickled_never_needs_to_be() -> None:
    chunk = next(iter_chunks(sample.rows(6), 6))
    context = RunContext(evaluation="t", logical_date=utcnow())
    scored = drive_unit(sample.mutating, chunk, 0, context)
    # examples 0 and 3 hold a lock the runtime put there: they are scored where they were
    # driven, and only their rows travel on (before, such an example was replaced by its
    # repr and scored as a string, silently)
    assert scored.unit.errors == 0 and scored.calls["error"].null_count == 12
    values = scored.scores.to_pydict()
    assert [v for m, v in zip(values["metric"], values["value"], strict=True) if m == "exact"] == [
        1.0
    ] * 6
