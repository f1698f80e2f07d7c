"""Example identity: each example of a dataset gets one id, whatever cuts the dataset up.

An example's id is its ``id`` field, as text; without one, a content hash: the first 16 hex
digits of BLAKE2b over its canonical JSON (sorted keys, no spaces, non-JSON values as
``str``), so the same example lines up across runs. Examples with identical contents get
``~2``, ``~3``... by their order in the **whole dataset**: the ids of a dataset never depend
on the unit size, the worker count or the cluster. Two examples with the same explicit id
are refused, naming the id and both places.

The ids are assigned in the process that cuts the dataset into units, in order:

* :func:`survey` reads a dataset that can be read again (a list, a pyarrow Table, files)
  once before the run drives anything, keeping only the ids, as an Arrow string array (about
  20 bytes an example, never the examples). Duplicates are found by one sort, so a
  duplicate explicit id is refused before anything is committed. It also counts the examples.
* :class:`IdStream` assigns them while a one-shot iterator (a generator) is read: it keeps
  the ids seen so far in sets, and a duplicate explicit id fails the run when it is read.

Both give the same ids for the same examples in the same order.
"""

from __future__ import annotations

import bisect
import hashlib
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring_ascii as _ascii
from typing import Any

import numpy as np
import pyarrow as pa

from hypermetric.api.datasets import Chunk, OpenedPath, iter_chunks, iter_id_chunks
from hypermetric.errors import DatasetError

__all__ = ["IdStream", "Survey", "assign_all", "chunk_ids", "content_id", "survey"]

_markers: dict[int, Any] = {}
# the encoder json.dumps(row, sort_keys=True, default=str, separators=(",", ":")) builds on
# every call, built once: the same text (ids must never change), in half the time
_canonical = (
    c_make_encoder(_markers, str, _ascii, None, ":", ",", True, False, True)
    if c_make_encoder is not None
    else None
)


def _canonical_json(row: Mapping[str, Any]) -> str:
    if _canonical is not None:
        try:
            return "".join(_canonical(row, 0))
        except (ValueError, TypeError, RecursionError):
            _markers.clear()  # left dirty by the error; json.dumps says what it was
    import json

    return json.dumps(row, sort_keys=True, default=str, separators=(",", ":"))


def content_id(row: Mapping[str, Any]) -> str:
    """The content hash of an example without an ``id`` field."""
    text = _canonical_json(row)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


#: Arrow types whose cast to text is what ``str`` of the Python value gives
_TEXT_LIKE = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer)


def _given_arrow(batch: pa.RecordBatch) -> pa.Array | None:
    """The ``id`` column of a batch whose every example has one, integers or text."""
    if "id" not in batch.schema.names:
        return None
    column = batch.column("id")
    if column.null_count or not any(test(column.type) for test in _TEXT_LIKE):
        return None
    return column


_ID = operator.itemgetter("id")


def _given_rows(rows: list[dict[str, Any]]) -> pa.Array | None:
    """The ``id`` values of rows that all have one, all integers or all text."""
    try:
        values = list(map(_ID, rows))
    except KeyError:
        return None
    kinds = set(map(type, values))  # exact types: a bool or an int subclass is not an int
    try:
        if kinds == {int}:
            return pa.array(values, pa.int64())
        if kinds == {str}:
            return pa.array(values, pa.string())
    except (OverflowError, pa.ArrowException):  # an integer past 64 bits
        return None
    return None


def chunk_ids(chunk: Chunk, rows: list[dict[str, Any]] | None = None) -> tuple[pa.Array, pa.Array]:
    """The base ids of a chunk's examples (before suffixes) and which are explicit.

    ``rows``: the chunk's examples as dicts, if the caller has them already.
    """
    ids, explicit, _ = _chunk_ids(chunk, rows)
    return ids, explicit


def _chunk_ids(
    chunk: Chunk, rows: list[dict[str, Any]] | None
) -> tuple[pa.Array, pa.Array, pa.Array | None]:
    """:func:`chunk_ids`, and the ids as given when every example has one, all integers or
    all text: Arrow casts those to the text ``str`` gives at once; otherwise each example
    is looked at in turn."""
    if rows is None and chunk.kind == "arrow":
        given = _given_arrow(chunk.data)
    else:
        rows = chunk.rows() if rows is None else rows
        given = _given_rows(rows)
    if given is not None:
        return given.cast(pa.string()), pa.repeat(pa.scalar(True), len(given)), given
    ids: list[str] = []
    explicit: list[bool] = []
    for offset, row in enumerate(chunk.rows() if rows is None else rows):
        value = row.get("id")
        if value is None:
            try:
                ids.append(content_id(row))
            except (ValueError, TypeError, RecursionError) as exc:
                raise DatasetError(
                    f"{chunk.location(offset)} cannot be hashed for its id ({exc}); "
                    "give it an `id` field"
                ) from None
            explicit.append(False)
        else:
            ids.append(str(value))
            explicit.append(True)
    return pa.array(ids, pa.string()), pa.array(explicit, pa.bool_()), None


class _Ascending:
    """Whether the ids given so far, chunk after chunk, rise strictly (numbers by value,
    text by bytes): then they are distinct, which a dataset numbered in order (the usual
    case) shows at a glance instead of a sort of all its ids."""

    def __init__(self) -> None:
        self.holds = True
        self._last: pa.Scalar | None = None

    def add(self, given: pa.Array | None) -> None:
        import pyarrow.compute as pc

        if given is None:  # an example without an id, or one not an integer or text
            self.holds = False
        if not self.holds or given is None or len(given) == 0:
            return
        first, last = given[0], given[len(given) - 1]
        if self._last is not None and (
            self._last.type != given.type or not pc.less(self._last, first).as_py()
        ):
            self.holds = False
            return
        rising = pc.less(given.slice(0, len(given) - 1), given.slice(1))
        self.holds = bool(pc.all(rising).as_py() is not False)
        self._last = last


@dataclass(frozen=True)
class Survey:
    """A dataset read once for its ids: how many examples, and each one's final id."""

    count: int
    ids: pa.Array


def _duplicate(value: str, first: str, second: str) -> DatasetError:
    return DatasetError(
        f"duplicate example id {value!r}: {first} and {second} both have it; "
        "give every example its own id (or drop the field to use content hashes)"
    )


class _Places:
    """Where an example of a survey is, for messages (one entry per chunk, not example)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.chunks: list[Chunk] = []

    def add(self, start: int, chunk: Chunk) -> None:
        # only what a message needs: a JSONL chunk's lines, not its data
        self.starts.append(start)
        self.chunks.append(chunk.locator())

    def __call__(self, position: int) -> str:
        i = bisect.bisect_right(self.starts, position) - 1
        return self.chunks[i].location(position - self.starts[i], position)


def _rename(ids: pa.Array, explicit: pa.Array, where: Callable[[int], str]) -> pa.Array:
    """``ids`` with ``~k`` on the k-th occurrence of a content id; DatasetError for an
    explicit id given twice (or equal to another example's content id)."""
    # imported here: drivers use this module, and pyarrow.compute costs a new process a
    # quarter of a second to import
    import pyarrow.compute as pc

    n = len(ids)
    if n < 2:
        return ids
    order = pc.array_sort_indices(ids)  # a stable sort: equal ids keep dataset order
    ordered = ids.take(order)
    same = pc.equal(ordered.slice(1), ordered.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    hits = np.flatnonzero(same)
    if hits.size == 0:
        return ids
    positions = order.to_numpy()
    flags = explicit.to_numpy(zero_copy_only=False)
    renamed: dict[int, str] = {}
    group: list[int] = []
    for i in hits.tolist():
        if group and group[-1] != positions[i]:
            _suffix(group, ids, flags, where, renamed)
            group = []
        if not group:
            group.append(int(positions[i]))
        group.append(int(positions[i + 1]))
    _suffix(group, ids, flags, where, renamed)
    mask = np.zeros(n, dtype=bool)
    keys = sorted(renamed)
    mask[keys] = True
    out = pc.replace_with_mask(ids, pa.array(mask), pa.array([renamed[k] for k in keys]))
    if pc.count_distinct(out).as_py() != n:  # a suffixed id equals another example's id
        clash = next(v for v in renamed.values() if pc.sum(pc.equal(out, v)).as_py() > 1)
        raise DatasetError(
            f"example id {clash!r} is both given and made for a repeated example; "
            "give the repeated examples ids of their own"
        )
    return out


def _suffix(
    group: list[int],
    ids: pa.Array,
    flags: np.ndarray,
    where: Callable[[int], str],
    renamed: dict[int, str],
) -> None:
    group.sort()
    given = [p for p in group if flags[p]]
    value = ids[group[0]].as_py()
    if len(given) > 1:
        raise _duplicate(value, where(given[0]), where(given[1]))
    if given:
        other = next(p for p in group if not flags[p])
        raise DatasetError(
            f"example id {value!r} of {where(given[0])} equals the content id of "
            f"{where(other)}; give that example an id of its own"
        )
    for k, position in enumerate(group[1:], start=2):
        renamed[position] = f"{value}~{k}"


def _jsonl_ids(
    source: OpenedPath, on_chunk: Callable[[int], None] | None
) -> tuple[pa.Array, bool] | None:
    """The ids of a JSONL dataset whose every example has one, all integers or all text,
    read by Arrow's JSON reader (in C++: a fifth of what parsing each line in Python costs),
    and whether they rise (then they are distinct); None otherwise (then each line is
    parsed here)."""
    import pyarrow.json as pajson

    parts: list[pa.Array] = []
    ascending = _Ascending()
    for file in source.files:
        for kind in (pa.int64(), pa.string()):
            options = pajson.ParseOptions(
                explicit_schema=pa.schema([("id", kind)]), unexpected_field_behavior="ignore"
            )
            try:
                with source.fs.open_input_stream(file.path) as raw:
                    column = pajson.read_json(raw, parse_options=options).column("id")
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError):
                continue  # another type, or a line to report: the Python path names it
            break
        else:
            return None
        if column.null_count:
            return None
        column = column.combine_chunks()
        ascending.add(column)
        parts.append(column.cast(pa.string()))
        if on_chunk is not None:
            on_chunk(sum(len(p) for p in parts))
    ids = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
    return ids, ascending.holds


def survey(source: Any, size: int = 8192, on_chunk: Callable[[int], None] | None = None) -> Survey:
    """Read ``source`` (a list, a pyarrow Table or an opened path) for its ids and count.

    ``on_chunk`` is called with the examples read so far, after each chunk (a long survey
    keeps its run's heartbeat with it).
    """
    if isinstance(source, OpenedPath) and source.fmt == "jsonl":
        bulk = _jsonl_ids(source, on_chunk)
        if bulk is not None and (bulk[1] or _distinct(bulk[0])):
            return Survey(len(bulk[0]), bulk[0])
        # no ids, or duplicates: read line by line, for content ids or to say where
    if isinstance(source, OpenedPath):
        # a Parquet or CSV dataset whose every example has an id: that column alone
        id_chunks = iter_id_chunks(source, size)
        if id_chunks is not None:
            given = _survey(id_chunks, on_chunk, given_only=True)
            if given is not None:
                return given
    found = _survey(iter_chunks(source, size), on_chunk, given_only=False)
    assert found is not None
    return found


def _survey(
    chunks: Iterable[Chunk], on_chunk: Callable[[int], None] | None, *, given_only: bool
) -> Survey | None:
    """:func:`survey` over ``chunks``; None if ``given_only`` and an example has no id (or
    one that is not an integer or text): its content id needs its other fields."""
    places = _Places()
    id_parts: list[pa.Array] = []
    flag_parts: list[pa.Array] = []
    ascending = _Ascending()
    count = 0
    for chunk in chunks:
        if given_only and _given_arrow(chunk.data) is None:
            return None  # checked first: content ids would read an id-only chunk's rows
        ids, explicit, given = _chunk_ids(chunk, None)
        ascending.add(given)
        places.add(count, chunk)
        id_parts.append(ids)
        flag_parts.append(explicit)
        count += len(ids)
        if on_chunk is not None:
            on_chunk(count)
    if not id_parts:
        return Survey(0, pa.array([], pa.string()))
    ids = pa.concat_arrays(id_parts)
    if ascending.holds:  # every example has its own id
        return Survey(count, ids)
    return Survey(count, _rename(ids, pa.concat_arrays(flag_parts), places))


def _distinct(ids: pa.Array) -> bool:
    """Whether no two of ``ids`` are equal (a sort: hashing a million short texts takes
    several times longer)."""
    import pyarrow.compute as pc

    if len(ids) < 2:
        return True
    ordered = ids.take(pc.array_sort_indices(ids))
    return not pc.any(pc.equal(ordered.slice(1), ordered.slice(0, len(ids) - 1))).as_py()


class IdStream:
    """Ids assigned while a one-shot iterator is read, chunk after chunk in dataset order."""

    def __init__(self) -> None:
        self.count = 0
        self._given: dict[str, str] = {}  # explicit id -> where it was
        self._made: dict[str, int] = {}  # content id -> occurrences so far
        self._suffixed: set[str] = set()

    def assign(self, chunk: Chunk, rows: list[dict[str, Any]] | None = None) -> list[str]:
        """The final ids of the next chunk's examples."""
        ids, explicit = chunk_ids(chunk, rows)
        out: list[str] = []
        for offset, (value, given) in enumerate(
            zip(ids.to_pylist(), explicit.to_pylist(), strict=True)
        ):
            where = chunk.location(offset, self.count + offset)
            out.append(self._given_id(value, where) if given else self._made_id(value, where))
        self.count += len(out)
        return out

    def _given_id(self, value: str, where: str) -> str:
        if value in self._given:
            raise _duplicate(value, self._given[value], where)
        if value in self._made or value in self._suffixed:
            raise DatasetError(
                f"example id {value!r} of {where} equals an id made for an earlier example "
                "without one; give that example an id of its own"
            )
        self._given[value] = where
        return value

    def _made_id(self, value: str, where: str) -> str:
        if value in self._given:
            raise DatasetError(
                f"the content id {value!r} of {where} equals the id of "
                f"{self._given[value]}; give that example an id of its own"
            )
        seen = self._made.get(value, 0) + 1
        self._made[value] = seen
        if seen == 1:
            return value
        made = f"{value}~{seen}"
        if made in self._given:
            raise DatasetError(
                f"example id {made!r} is both given and made for a repeated example; "
                "give the repeated examples ids of their own"
            )
        self._suffixed.add(made)
        return made


def assign_all(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ids of a whole in-memory dataset (for tests and tools)."""
    ids: list[str] = survey(list(rows)).ids.to_pylist()
    return ids
