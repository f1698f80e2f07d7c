"""User code that exits or interrupts (SystemExit, KeyboardInterrupt raised by an eval or a
component) is an error row, never a dead worker driven again and again; an example that
cannot cross a process boundary is an error naming its field, never silently replaced."""

from __future__ import annotations

import pytest

from hypermetric.api.context import RunContext
from hypermetric.api.datasets import iter_chunks
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings
from hypermetric.engine.runner import run_runtime
from hypermetric.engine.worker import drive_unit, load_payload
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


def test_an_example_that_cannot_be_pickled_fails_naming_its_field() -> None:
    chunk = next(iter_chunks(sample.rows(6), 6))
    context = RunContext(evaluation="t", logical_date=utcnow())
    payload = load_payload(drive_unit(sample.mutating, chunk, 0, context))
    own = {
        payload.call_example[i]: payload.call_error[i]
        for i, name in enumerate(payload.call_component)
        if name == "engine-mutating"
    }
    for position in (0, 3):
        assert own[position] is not None
        assert own[position].startswith("example field 'client' cannot be serialized (TypeError")
        assert "client" not in payload.examples[position]
    assert own[1] is None and own[2] is None
    assert payload.examples[1] == {"id": 1, "question": "q1", "answer": "q1:1"}
