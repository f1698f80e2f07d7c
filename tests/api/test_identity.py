"""Example identity: the id field or a content hash, suffixes by order in the whole dataset,
never by how the dataset is cut; duplicate explicit ids refused with both places."""

from __future__ import annotations

import datetime
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hypermetric.api.datasets import iter_chunks, open_path
from hypermetric.api.identity import IdStream, content_id, survey
from hypermetric.errors import DatasetError

# repeated contents, no ids: 50 distinct examples, each four times, interleaved
TWINS = [{"question": f"q{i % 50}", "answer": str(i % 50)} for i in range(200)]


def _streamed(rows: list[dict], size: int) -> list[str]:
    stream = IdStream()
    return [i for chunk in iter_chunks(iter(rows), size) for i in stream.assign(chunk)]


def test_content_ids_are_the_ones_earlier_releases_stored() -> None:
    # an id must never change: history is compared by it
    assert content_id({"q": "x", "a": 1}) == "46beccd1ff24c65b"
    assert content_id({"a": 1, "q": "x"}) == "46beccd1ff24c65b"  # key order does not matter
    assert content_id({"question": "capital of France", "gold": "Paris"}) == "8ac238e3b00577a7"
    assert content_id({"q": "é", "when": datetime.date(2026, 1, 2)}) == "a60f20ef8f74c848"
    assert survey([{"id": 7, "x": 1}, {"id": "x"}]).ids.to_pylist() == ["7", "x"]


def test_repeated_contents_get_suffixes_by_their_order_in_the_whole_dataset() -> None:
    ids = survey(TWINS).ids.to_pylist()
    assert len(set(ids)) == 200
    first = content_id(TWINS[0])
    assert [ids[i] for i in (0, 50, 100, 150)] == [first, f"{first}~2", f"{first}~3", f"{first}~4"]
    # however the dataset is cut, and whether it is a list or an iterator read once
    for size in (1, 7, 64, 2000):
        assert survey(TWINS, size).ids.to_pylist() == ids
        assert _streamed(TWINS, size) == ids


def test_every_form_of_a_dataset_gives_the_same_ids(tmp_path: Path) -> None:
    rows = [{"id": i if i % 3 else None, "q": f"q{i % 4}"} for i in range(30)]
    expected = survey(rows).ids.to_pylist()
    assert expected[1] == "1" and expected[0] == content_id(rows[0])
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=7)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert survey(table, 8).ids.to_pylist() == expected
    assert survey(open_path(str(tmp_path / "d.parquet")), 5).ids.to_pylist() == expected
    assert survey(open_path(str(tmp_path / "d.jsonl")), 9).ids.to_pylist() == expected
    # an integer id column is read as text without a Python loop, with the same text
    ints = pa.table({"id": list(range(5)), "q": ["a"] * 5})
    assert survey(ints).ids.to_pylist() == ["0", "1", "2", "3", "4"]
    # other types are written as Python writes them (Arrow would write 1.0 as "1")
    floats = [{"id": 1.0}, {"id": 2.5}]
    assert survey(pa.Table.from_pylist(floats)).ids.to_pylist() == ["1.0", "2.5"]
    assert survey(floats).ids.to_pylist() == ["1.0", "2.5"]


def test_duplicate_explicit_ids_are_refused_naming_both_places(tmp_path: Path) -> None:
    rows = [{"id": i, "q": "x"} for i in range(10)] + [{"id": "3", "q": "y"}]
    with pytest.raises(DatasetError, match=r"id '3': row 3 of the dataset and row 10 of the"):
        survey(rows)
    with pytest.raises(DatasetError, match=r"id '3': row 3 of the dataset and row 10 of the"):
        _streamed(rows, 4)
    path = tmp_path / "qa.jsonl"
    path.write_text(
        "".join(json.dumps(r) + "\n" + ("\n" if i == 5 else "") for i, r in enumerate(rows))
    )
    with pytest.raises(DatasetError, match=r"qa\.jsonl line 4 and .*qa\.jsonl line 12 both"):
        survey(open_path(str(path)), 3)
    table = pa.Table.from_pylist([*rows[:10], {"id": 3, "q": "y"}])
    with pytest.raises(DatasetError, match=r"id '3': row 3 of the table and row 10"):
        survey(table, 4)


def test_ids_numbered_in_order_are_taken_as_they_are_and_a_repeat_is_still_refused() -> None:
    # ids that rise chunk after chunk are distinct without a sort of them all; a repeat at a
    # chunk's edge, or the same text given as a number and as a string, is not missed
    ordered = [{"id": i, "q": "x"} for i in range(12)]
    assert survey(ordered, 5).ids.to_pylist() == [str(i) for i in range(12)]
    for last in ({"id": 11}, {"id": "11"}, {"id": 0}):
        rows = [*ordered, last]
        for size in (4, 12, 13):
            with pytest.raises(DatasetError, match="duplicate example id"):
                survey(rows, size)
    texts = [{"id": f"ex-{i:03d}"} for i in range(10)]
    with pytest.raises(DatasetError, match="'ex-009': row 9 of the dataset and row 10"):
        survey([*texts, {"id": "ex-009"}], 5)
    # a bool is not an integer: True is "True", not "1"
    assert survey([{"id": 1}, {"id": True}], 1).ids.to_pylist() == ["1", "True"]


def test_files_with_ids_are_surveyed_by_their_id_column_alone_with_the_same_result(
    tmp_path: Path,
) -> None:
    # a Parquet file is surveyed by its id column, a JSONL file by Arrow's reader; what
    # they find (and refuse) is what reading every field finds
    cases = {
        "ordered": [{"id": i, "q": "x"} for i in range(20)],
        "reversed": [{"id": f"ex-{19 - i}", "q": "x"} for i in range(20)],
        "floats": [{"id": i + 0.5, "q": "x"} for i in range(20)],
        "repeated": [{"id": i % 15, "q": "x"} for i in range(20)],
    }
    for name, rows in cases.items():
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{name}.parquet", row_group_size=6)
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for suffix in ("parquet", "jsonl"):
            opened = open_path(str(tmp_path / f"{name}.{suffix}"))
            if name == "repeated":
                where = r"id '0': (row 0 of|\S+ line 1 and) .* (row 15 of|line 16 both)"
                with pytest.raises(DatasetError, match=where):
                    survey(opened, 4)
            else:
                assert survey(opened, 4).ids.to_pylist() == survey(rows).ids.to_pylist(), name


def test_an_explicit_id_equal_to_a_content_id_is_refused() -> None:
    made = content_id({"q": "x"})
    with pytest.raises(DatasetError, match="equals the content id"):
        survey([{"q": "x"}, {"id": made}])
    with pytest.raises(DatasetError, match="equals an id made"):
        _streamed([{"q": "x"}, {"id": made}], 1)
    with pytest.raises(DatasetError, match="both given and made"):
        survey([{"q": "x"}, {"q": "x"}, {"id": f"{made}~2"}])


def test_the_bookkeeping_is_a_few_dozen_bytes_an_example() -> None:
    rows = ({"question": f"q{i % 1000}", "context": "x" * 500} for i in range(100_000))
    found = survey(list(itertools.islice(rows, 100_000)))
    assert found.count == 100_000
    assert found.ids.nbytes < 32 * found.count  # ids only, never the examples


def test_jsonl_ids_read_in_bulk_equal_the_ones_read_line_by_line(tmp_path: Path) -> None:
    cases = {
        "ints": [{"id": i, "q": "x"} for i in range(20)],
        "texts": [{"id": f"ex-{i}", "q": "x"} for i in range(20)],
        "mixed": [{"id": i if i % 2 else str(i), "q": "x"} for i in range(20)],
        "floats": [{"id": i + 0.5, "q": "x"} for i in range(20)],
        "some missing": [{"id": i, "q": "x"} if i % 5 else {"q": f"x{i}"} for i in range(20)],
    }
    for name, rows in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.jsonl"
        # blank lines between examples are not examples
        path.write_text(
            "".join(json.dumps(r) + "\n" + ("\n" if i % 7 == 0 else "") for i, r in enumerate(rows))
        )
        found = survey(open_path(str(path)), 6)
        assert found.count == 20, name
        assert found.ids.to_pylist() == survey(rows).ids.to_pylist(), name
