"""How big a run's units are: the configured size, cut down by the bytes of the examples
(wide examples never make a unit take more than a share of the in-flight budget), by an
async runtime's concurrency, and by a short dataset; and the sample that measures the
examples loses none of a one-shot iterator's."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow as pa

from hypermetric.api.datasets import SAMPLE, example_bytes
from hypermetric.engine.units import ROUNDS_PER_UNIT, UNIT_SHARE, unit_size_for
from tests.engine import sample

MIB = 2**20


def _size(**kwargs: object) -> int:
    given = {"per_example": None, "inflight_bytes": 256 * MIB, "overlap": None, "total": None}
    given.update(kwargs)
    return unit_size_for(8000, actors=2, **given)  # type: ignore[arg-type]


def test_fast_narrow_examples_get_the_configured_size() -> None:
    assert _size() == 8000
    assert _size(per_example=80.0, total=1_000_000) == 8000


def test_wide_examples_get_units_of_a_share_of_the_inflight_budget() -> None:
    # 100 kB documents: 8,000 of them would be 800 MB in one unit
    size = _size(per_example=100_000.0)
    assert size == int(256 * MIB * UNIT_SHARE / 100_000) == 335
    assert _size(per_example=10 * MIB, inflight_bytes=MIB) == 1  # never zero


def test_an_async_runtime_waits_on_its_calls_a_bounded_number_of_times() -> None:
    # 50 calls in flight per unit: 40 rounds of them
    assert _size(overlap=50) == ROUNDS_PER_UNIT * 50 == 2000
    assert _size(overlap=1000) == 8000


def test_a_short_dataset_still_has_units_for_every_actor() -> None:
    assert _size(total=1000) == 125  # 4 units for each of 2 actors
    assert _size(total=1) == 1


def test_the_sample_of_a_one_shot_iterator_is_put_back_in_front() -> None:
    rows = sample.rows(SAMPLE + 10)
    per_example, source = example_bytes(iter(rows))
    assert list(source) == rows  # nothing lost, nothing repeated, in order
    expected = len(pickle.dumps(rows[:SAMPLE], protocol=pickle.HIGHEST_PROTOCOL)) / SAMPLE
    assert per_example is not None and abs(per_example - expected) < 16


def test_sizes_are_measured_on_every_kind_of_dataset(tmp_path: Path) -> None:
    wide = [dict(row, document="x" * 10_000) for row in sample.rows(100)]
    path = tmp_path / "wide.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in wide))
    for source in (wide, pa.Table.from_pylist(wide), str(path)):
        per_example, same = example_bytes(source)
        assert same is source
        assert per_example is not None and 10_000 < per_example < 11_000, source
    assert example_bytes([]) == (None, [])
    assert example_bytes(str(tmp_path / "missing.jsonl"))[0] is None
