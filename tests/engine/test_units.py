"""How big a run's units are: the configured size, cut down by the bytes of the examples
(wide examples never make a unit take more than a share of the in-flight budget), by an
async runtime's concurrency, and by a short dataset; the smaller units of a dataset's
tail, cut the same way by every attempt; and the sample that measures the examples loses
none of a one-shot iterator's."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hypermetric.api.datasets import SAMPLE, example_bytes, open_path
from hypermetric.api.identity import survey
from hypermetric.catalog.ledger import UnitPlan
from hypermetric.engine.units import (
    ROUNDS_PER_UNIT,
    TAIL_KEY,
    UNIT_SHARE,
    UnitReader,
    attempt_tail,
    tail_for,
    unit_size_for,
)
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


def test_epochs_count_in_a_units_size() -> None:
    # each example driven 4 times: a unit drives 8,000 times, not 32,000
    assert _size(epochs=4) == 2000
    assert _size(overlap=50, epochs=4) == 500  # still 40 rounds of 50 calls
    assert _size(epochs=10_000) == 1
    # an example ships once whatever its epochs: the budget's share is in examples
    assert _size(per_example=100_000.0, epochs=4) == 335


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


def _units(source: object, size: int, tail: tuple[int, int] | None, **plan: object) -> list:
    found = survey(source)
    reader = UnitReader(1, source, size, UnitPlan(**plan), found, tail)  # type: ignore[arg-type]
    return list(reader)


def test_the_end_of_a_dataset_is_cut_into_smaller_units() -> None:
    assert tail_for(16_000, 200_000) == (168_000, 2000)  # the last two units, in eighths
    assert tail_for(16_000, 20_000) == (0, 2000)
    assert tail_for(16_000, None) is None  # a one-shot iterator: its end is not known
    assert tail_for(125, 1000) is None  # units small already
    rows = sample.rows(100)
    sizes = [len(chunk) for _, chunk in _units(rows, 20, (60, 5))]
    assert sizes == [20, 20, 20] + [5] * 8


def test_every_form_of_a_dataset_is_cut_alike_with_its_ids(tmp_path: Path) -> None:
    rows = sample.rows(100)
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=7)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # units of 20 up to the tail at 53, then of 5 within each unit of 20 read
    cuts = [0, 20, 40, 53, 58, 60, *range(65, 101, 5)]
    expected = [[str(i) for i in range(a, b)] for a, b in itertools.pairwise(cuts)]
    for source in (rows, table, open_path(str(tmp_path / "d.jsonl"))):
        units = _units(source, 20, (53, 5))
        assert [c.ids for _, c in units] == expected, source
        assert [u for u, _ in units] == list(range(len(expected)))
        # each unit holds its own examples, and says where they are
        assert [r["id"] for _, c in units for r in c.rows()] == list(range(100))
    jsonl = _units(open_path(str(tmp_path / "d.jsonl")), 20, (53, 5))
    assert jsonl[4][1].location(0).endswith("d.jsonl line 59")
    # Parquet is read by row groups: the units follow them up to the tail, then the tail's
    parquet = _units(open_path(str(tmp_path / "d.parquet")), 20, (53, 5))
    assert [r["id"] for _, c in parquet for r in c.rows()] == list(range(100))
    assert all(len(c) <= 5 for _, c in parquet if int(c.ids[0]) >= 53)


def test_a_later_attempt_cuts_the_tail_its_run_kept() -> None:
    kept = {TAIL_KEY: [168_000, 2000]}
    assert attempt_tail(kept, True, 16_000, 200_000) == (168_000, 2000)
    # a run an earlier release started (no tail kept) is cut as it was, in even units
    assert attempt_tail({"epochs": 1}, True, 16_000, 200_000) is None
    # nothing committed yet: the attempt cuts anew
    assert attempt_tail({"epochs": 1}, False, 8000, 200_000) == (184_000, 1000)
    # a retry drives again the failed examples of the same units
    rows = sample.rows(100)
    first = dict(_units(rows, 20, (60, 5)))
    later = _units(rows, 20, (60, 5), done=frozenset(range(5)))
    assert [u for u, _ in later] == list(range(5, 11))
    assert all(c.ids == first[u].ids for u, c in later)
