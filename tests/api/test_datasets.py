"""Datasets stream in chunks from every supported form; bad ones fail with one clear line."""

from __future__ import annotations

import itertools
import json
import math
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from hypermetric.api import datasets
from hypermetric.api.context import RunContext
from hypermetric.api.datasets import (
    check_path,
    count_hint,
    iter_chunks,
    open_path,
    resolve_source,
)
from hypermetric.api.identity import IdStream
from hypermetric.catalog.types import utcnow
from hypermetric.errors import DatasetError

ROWS = [{"id": i, "q": f"question {i}", "a": str(i * 2)} for i in range(25)]


def _all(source: object, size: int = 10) -> list[dict]:
    chunks = list(iter_chunks(source, size))
    assert all(len(c) <= size for c in chunks)
    return [row for c in chunks for row in c.rows()]


def test_every_form_gives_the_same_examples(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(ROWS)
    pq.write_table(table, tmp_path / "d.parquet")
    pacsv.write_csv(table, tmp_path / "d.csv")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert _all(ROWS) == ROWS
    assert _all(iter(ROWS)) == ROWS
    assert _all(table) == ROWS
    assert _all(str(tmp_path / "d.parquet")) == ROWS
    assert _all(tmp_path / "d.jsonl") == ROWS
    assert [r["q"] for r in _all(str(tmp_path / "d.csv"))] == [r["q"] for r in ROWS]
    assert count_hint(str(tmp_path / "d.parquet")) == 25 and count_hint(ROWS) == 25


def test_jsonl_lines_read_as_the_standard_decoder_reads_them(tmp_path: Path) -> None:
    # the fast decoder refuses NaN and integers past 64 bits; those lines still read
    lines = [
        {"id": 1, "q": "é", "x": [1.5, None, True], "big": 2**70},
        {"id": 2, "score": math.nan, "nested": {"a": {"b": -0.0}}},
        {"id": 3, "deep": [{"n": -(2**64)}, 1e300], "small": -(2**63)},
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    (chunk,) = iter_chunks(open_path(str(path)), 10)
    read = chunk.rows()
    assert read[0] == lines[0] and type(read[0]["big"]) is int
    assert math.isnan(read[1]["score"]) and read[1]["nested"] == {"a": {"b": -0.0}}
    assert read[2] == lines[2] and type(read[2]["deep"][0]["n"]) is int
    path.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(DatasetError, match=r"d\.jsonl line 2 is a JSON list, not an object"):
        next(iter_chunks(open_path(str(path)), 10)).rows()


def test_a_folder_reads_the_files_of_its_format_only(tmp_path: Path) -> None:
    for kind in ("parquet", "jsonl"):
        folder = tmp_path / kind
        folder.mkdir()
        for part in range(2):
            rows = ROWS[part * 13 : part * 13 + 13]
            if kind == "parquet":
                pq.write_table(pa.Table.from_pylist(rows), folder / f"part-{part}.parquet")
            else:
                text = "".join(json.dumps(r) + "\n" for r in rows)
                (folder / f"part-{part}.jsonl").write_text(text)
        # what exports and people leave beside the data
        (folder / "README.md").write_text("# examples for the nightly evaluation\n")
        (folder / "_SUCCESS").write_text("")
        assert _all(str(folder)) == ROWS, kind
        assert count_hint(str(folder)) == 25, kind


def test_text_datasets_are_counted_up_to_a_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a short JSONL or CSV file is counted, so the run can cut it into units for every actor
    # and show a total; blank lines are not examples
    lines = [json.dumps(r) for r in ROWS]
    (tmp_path / "d.jsonl").write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]))
    pacsv.write_csv(pa.Table.from_pylist(ROWS), tmp_path / "d.csv")
    (tmp_path / "parts").mkdir()
    for part in range(3):
        (tmp_path / "parts" / f"{part}.jsonl").write_text("\n".join(lines[part::3]) + "\n")
    assert count_hint(str(tmp_path / "d.jsonl")) == 25
    assert count_hint(str(tmp_path / "d.csv")) == 25
    assert count_hint(str(tmp_path / "parts")) == 25
    assert count_hint(iter(ROWS)) is None
    # past the size, counting would read a large file once more: no count
    monkeypatch.setattr(datasets, "COUNT_BYTES", 100)
    assert count_hint(str(tmp_path / "d.jsonl")) is None
    assert count_hint(str(tmp_path / "d.csv")) is None


def test_a_callable_receives_the_run_context() -> None:
    ctx = RunContext(evaluation="e", logical_date=utcnow(), params={"n": 3})
    source = resolve_source(lambda c: ROWS[: c.params["n"]], ctx)
    assert _all(source) == ROWS[:3]


def test_a_path_is_opened_once_for_its_check_count_and_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    for part in range(3):
        rows = ROWS[part * 10 : part * 10 + 10]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{part}.parquet")
    opened: list[str] = []
    real = datasets._open_path
    monkeypatch.setattr(datasets, "_open_path", lambda p: opened.append(p) or real(p))
    ctx = RunContext(evaluation="e", logical_date=utcnow())
    # as a run does: check before the run exists, then count and stream what was checked
    source = resolve_source(check_path(str(folder)), ctx)
    assert count_hint(source) == 25 and _all(source) == ROWS
    assert opened == [str(folder)]  # one listing of the folder, not one per step
    # a callable may return a path: it is opened when the run resolves it
    source = resolve_source(lambda c: str(folder / "1.parquet"), ctx)
    assert count_hint(source) == 10 and _all(source) == ROWS[10:20]
    assert opened == [str(folder), str(folder / "1.parquet")]


def test_an_infinite_source_is_read_lazily() -> None:
    endless = ({"i": i} for i in itertools.count())
    first = next(iter_chunks(endless, 100))
    assert len(first) == 100


def test_missing_path_and_bad_files_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        list(iter_chunks(str(tmp_path / "nope.jsonl"), 10))
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    chunk = next(iter_chunks(str(tmp_path / "bad.jsonl"), 10))
    with pytest.raises(DatasetError, match="line 2 is not valid JSON"):
        chunk.rows()
    # blank lines are skipped but counted: the error names the line an editor shows
    (tmp_path / "gaps.jsonl").write_text('{"a": 1}\n\n\n{"a": 2}\n[3]\n')
    chunk = pickle.loads(pickle.dumps(next(iter_chunks(str(tmp_path / "gaps.jsonl"), 10))))
    with pytest.raises(DatasetError, match=r"gaps\.jsonl line 5 is a JSON list, not an object"):
        chunk.rows()
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DatasetError, match="cannot be parsed"):
        list(iter_chunks(str(tmp_path / "bad.parquet"), 10))
    (tmp_path / "data.xyz").write_text("?")
    with pytest.raises(DatasetError, match="format"):
        list(iter_chunks(str(tmp_path / "data.xyz"), 10))
    with pytest.raises(DatasetError, match="must be dicts"):
        list(iter_chunks([1, 2], 10))


def test_a_chunk_of_a_large_row_group_travels_as_its_own_rows(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    n = 50_000
    table = pa.table({"id": range(n), "question": [f"question number {i}" for i in range(n)]})
    pq.write_table(table, path, row_group_size=n)
    chunks = list(itertools.islice(iter_chunks(str(path), 1000), 3))
    third = chunks[2]
    data = pickle.dumps(third)
    # a slice of a 50k-row group: its own rows, not the group it points into
    assert len(data) < 2 * third.data.nbytes < table.nbytes / 10
    copy = pickle.loads(data)
    assert copy.rows() == third.rows() and copy.rows()[0]["id"] == 2000


def test_a_data_frame_reads_as_its_rows() -> None:
    import duckdb
    import pandas as pd

    ctx = RunContext(evaluation="e", logical_date=utcnow())
    frame = pd.DataFrame(ROWS)
    # a frame's index (here labels) is not a field of its examples
    kept = frame.set_index(pd.Index([f"row {i}" for i in range(25)], name="key"))[::2]
    assert isinstance(resolve_source(kept, ctx), pa.Table)
    assert _all(resolve_source(kept, ctx)) == ROWS[::2]
    assert _all(resolve_source(lambda c: frame, ctx)) == ROWS
    # examples without an id get the same content ids from a frame as from its rows
    plain = [{k: v for k, v in row.items() if k != "id"} for row in ROWS]
    ids = [
        IdStream().assign(chunk, chunk.rows())
        for source in (plain, resolve_source(pd.DataFrame(plain), ctx))
        for chunk in iter_chunks(source, 100)
    ]
    assert ids[0] == ids[1] and len(set(ids[0])) == 25
    # an object column Arrow cannot type: the rows as dicts
    mixed = pd.DataFrame({"id": [1, 2], "x": [{"a": 1}, "text"]})
    assert _all(resolve_source(mixed, ctx)) == [{"id": 1, "x": {"a": 1}}, {"id": 2, "x": "text"}]
    # anything that speaks Arrow's stream interface: a DuckDB relation, a batch reader
    relation = duckdb.sql("SELECT * FROM range(3) AS t(id)")
    assert _all(resolve_source(relation, ctx)) == [{"id": 0}, {"id": 1}, {"id": 2}]
    table = pa.Table.from_pylist(ROWS)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    assert _all(resolve_source(reader, ctx)) == ROWS
