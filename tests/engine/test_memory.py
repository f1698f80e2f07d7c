"""Memory bounded in bytes: wide examples read from the source and not yet committed never
take more than the run's ``inflight_bytes``; past it the run stops reading and has its
evaluators write what they hold, even when no flush threshold was reached."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hypermetric.config import Settings, reset_settings
from hypermetric.engine.coordinator import Progress
from hypermetric.engine.runner import run_runtime
from tests.engine import sample
from tests.engine.conftest import assert_exactly_once

pytestmark = pytest.mark.ray

BUDGET = 2 * 2**20


def _wide_run(settings: Settings, budget: int) -> tuple[object, list[int]]:
    # 300 examples of 50 kB (15 MB), units of 10 (about 0.5 MB each), no flush threshold
    # reached before the end
    reset_settings(
        replace(
            settings,
            unit_size=10,
            flush_rows=10**9,
            flush_bytes=10**12,
            flush_seconds=1e9,
            inflight_bytes=budget,
        )
    )
    rows = sample.rows(300)
    for row in rows:  # each its own text (pickle would store one shared string once)
        row["document"] = f"document {row['id']}: " + "retrieved text " * 3_500
    held: list[int] = []

    def watch(progress: Progress) -> None:
        held.append(progress.held_bytes)

    return run_runtime(sample.basic, dataset=rows, progress=watch), held


def test_wide_examples_never_pile_up_past_the_inflight_budget(engine_settings: Settings) -> None:
    run, held = _wide_run(engine_settings, BUDGET)
    assert run.state == "success"  # type: ignore[attr-defined]
    assert_exactly_once(run.id, 600)  # type: ignore[attr-defined]
    unit = 10 * 60_000  # a unit's examples, pickled, at the most
    assert max(held) <= BUDGET + unit
    assert held[-1] == 0  # everything committed, nothing held
    # the budget made the evaluators write early, more than once each
    assert run.shard_count > 4  # type: ignore[attr-defined]


def test_without_a_budget_the_same_run_holds_every_example(engine_settings: Settings) -> None:
    # the check above can fail: with a budget past the dataset, all 15 MB are held until the
    # final flush commits them
    _, held = _wide_run(engine_settings, 10**12)
    assert max(held) > 10 * 2**20


def test_wide_examples_are_cut_into_units_by_their_bytes(engine_settings: Settings) -> None:
    # a one-shot iterator of 50 kB examples and units of 1,000 configured: a unit of them
    # would be 50 MB, past the whole 2 MB budget; the run measures a sample and cuts units
    # of an eighth of the budget, and the sampled examples are driven like the others
    reset_settings(replace(engine_settings, unit_size=1000, inflight_bytes=BUDGET))
    rows = sample.rows(120)
    for row in rows:
        row["document"] = f"document {row['id']}: " + "retrieved text " * 3_500
    held: list[int] = []
    run = run_runtime(
        sample.basic, dataset=iter(rows), progress=lambda p: held.append(p.held_bytes)
    )
    assert run.state == "success"
    assert run.unit_size == BUDGET // 8 // 52_500  # 4 examples of about 52.5 kB pickled
    assert_exactly_once(run.id, 240)
    assert max(held) <= BUDGET + 4 * 60_000
