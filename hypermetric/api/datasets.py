"""Datasets: where examples come from, streamed in chunks, each example with a stable id.

A dataset is an iterable of dicts, a pyarrow Table, a path or URI to Parquet, JSONL or CSV
(a file or a folder of files), or a callable that takes the run's :class:`RunContext` and
returns one of these. It is read lazily, a chunk at a time, never whole.
"""

from __future__ import annotations

import itertools
import json
import pickle
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.fs as pafs

from hypermetric.api.context import RunContext
from hypermetric.errors import DatasetError

if TYPE_CHECKING:
    import pyarrow.dataset as pads

__all__ = [
    "Chunk",
    "OpenedPath",
    "check_path",
    "count_hint",
    "example_bytes",
    "iter_chunks",
    "open_path",
    "resolve_source",
]

_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass(frozen=True)
class Chunk:
    """The raw examples of one work unit, decoded in the worker that runs them.

    ``ids`` are the examples' final ids (see :mod:`hypermetric.api.identity`), set by the
    process that cuts the dataset; ``positions``, for a retry that drives some examples of a
    unit again, their positions in the unit.
    """

    kind: str  # "rows" | "arrow" | "jsonl"
    data: Any
    #: for JSONL, the line number of the first line (for parse errors)
    first_line: int = 0
    source: str = ""
    #: for JSONL with blank lines between examples, each example's line number
    line_numbers: tuple[int, ...] | None = None
    ids: list[str] | None = None
    positions: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return self.data.num_rows if self.kind == "arrow" else len(self.data)

    def __reduce__(self) -> Any:
        if self.kind != "arrow":
            return (
                Chunk,
                (
                    self.kind,
                    self.data,
                    self.first_line,
                    self.source,
                    self.line_numbers,
                    self.ids,
                    self.positions,
                ),
            )
        # A batch read from Parquet is a slice of its whole row group, and pickling a slice
        # copies every buffer it points into (megabytes for a few kilobytes of examples).
        # The IPC stream writes only the rows of the slice.
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.data.schema) as writer:
            writer.write_batch(self.data)
        return (_arrow_chunk, (sink.getvalue(), self.source, self.ids, self.positions))

    def with_ids(self, ids: list[str]) -> Chunk:
        """This chunk carrying its examples' ids."""
        return replace(self, ids=ids)

    def slice(self, start: int, stop: int) -> Chunk:
        """The examples from ``start`` to ``stop`` (in this chunk), with their ids."""
        ids = self.ids[start:stop] if self.ids is not None else None
        if self.kind == "arrow":
            return Chunk("arrow", self.data.slice(start, stop - start), source=self.source, ids=ids)
        numbers = self.line_numbers[start:stop] if self.line_numbers else None
        first = self._line(start) if self.kind == "jsonl" else 0
        return Chunk(self.kind, self.data[start:stop], first, self.source, numbers, ids)

    def subset(self, positions: tuple[int, ...]) -> Chunk:
        """The examples at ``positions`` (in this chunk) only, with their ids and positions."""
        ids = [self.ids[p] for p in positions] if self.ids is not None else None
        if self.kind == "arrow":
            data: Any = self.data.take(pa.array(positions, pa.int64()))
        else:
            data = [self.data[p] for p in positions]
        numbers = None
        if self.kind == "jsonl":
            numbers = tuple(self._line(p) for p in positions)
        return Chunk(self.kind, data, 0, self.source, numbers, ids, positions)

    def locator(self) -> Chunk:
        """What :meth:`location` needs, without the examples."""
        return Chunk(self.kind, [], self.first_line, self.source, self.line_numbers)

    def _line(self, offset: int) -> int:
        return self.line_numbers[offset] if self.line_numbers else self.first_line + offset

    def location(self, offset: int, position: int | None = None) -> str:
        """Where the example at ``offset`` is, for messages: a file and line for JSONL,
        else its row number in the dataset (``position``, counted from 0 as Python does)."""
        if self.kind == "jsonl":
            return f"{self.source} line {self._line(offset)}"
        row = offset if position is None else position
        return f"row {row} of {self.source or 'the dataset'}"

    def rows(self) -> list[dict[str, Any]]:
        """The examples as dicts."""
        if self.kind == "rows":
            return list(self.data)
        if self.kind == "arrow":
            return list(self.data.to_pylist())
        out: list[dict[str, Any]] = []
        add, fast = out.append, orjson.loads
        for offset, line in enumerate(self.data):
            try:
                row = fast(line)  # several times faster than the standard decoder
            except orjson.JSONDecodeError:
                # what it refuses (NaN...) the standard one may take, and says best what
                # is wrong otherwise
                row = self._standard(offset, line)
            else:
                if type(row) is dict and _huge(row):
                    row = self._standard(offset, line)
            if type(row) is not dict:
                raise DatasetError(
                    f"{self.location(offset)} is a JSON "
                    f"{type(row).__name__}, not an object; each line must be one example"
                )
            add(row)
        return out

    def _standard(self, offset: int, line: bytes) -> Any:
        try:
            return json.loads(line)
        except ValueError as exc:
            raise DatasetError(
                f"{self.location(offset)} is not valid JSON ({exc}); fix the line or remove it"
            ) from None


def _arrow_chunk(
    data: pa.Buffer, source: str, ids: list[str] | None, positions: tuple[int, ...] | None
) -> Chunk:
    batch = pa.ipc.open_stream(data).read_next_batch()
    return Chunk("arrow", batch, 0, source, None, ids, positions)


def resolve_source(source: Any, context: RunContext) -> Any:
    """A callable source called with the run's context, a path opened (once, for counting
    and reading), anything else as it is."""
    if callable(source) and not isinstance(source, (str, Path, pa.Table, OpenedPath)):
        try:
            source = source(context)
        except DatasetError:
            raise
        except Exception as exc:
            name = getattr(source, "__name__", repr(source))
            raise DatasetError(
                f"dataset callable {name} raised {type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(source, (str, Path)):
        return open_path(str(source))
    return _frame_table(source)


def _frame_table(source: Any) -> Any:
    """A data frame as a pyarrow Table: a pandas one without its index, or anything that
    speaks Arrow's stream interface (a polars frame, a DuckDB relation, a record batch
    reader); anything else as it is. A pandas frame whose columns Arrow cannot type (an
    object column of mixed values) is read as its rows' dicts instead."""
    if isinstance(source, (pa.Table, list, tuple, Mapping, OpenedPath)):
        return source
    kind = type(source)
    if kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas"):
        try:
            return pa.Table.from_pandas(source, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError):
            return source.to_dict(orient="records")
    if hasattr(source, "__arrow_c_stream__"):
        try:
            return pa.table(source)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DatasetError(
                f"a {kind.__name__} dataset cannot be read as Arrow: {str(exc).splitlines()[0]}"
                "; give a list of dicts or a pyarrow Table"
            ) from None
    return source


def _format_of(path: str) -> str:
    suffix = Path(path.rstrip("/")).suffix.lower()
    if suffix in _FORMATS:
        return _FORMATS[suffix]
    raise DatasetError(
        f"dataset {path!r}: cannot tell its format from the name; "
        "use a .parquet, .jsonl or .csv file (or a folder of them)"
    )


def _open_path(path: str) -> tuple[pafs.FileSystem, list[pafs.FileInfo], str]:
    """The filesystem, the dataset's files (a file, or a folder's files of its format in name
    order: a README or a _SUCCESS marker beside them is not data) and the format."""
    try:
        if "://" in path:
            fs, inner = pafs.FileSystem.from_uri(path)
        else:
            fs, inner = pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.Directory:
            found = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise DatasetError(f"dataset {path!r} cannot be opened: {exc}") from None
    if info.type == pafs.FileType.NotFound:
        raise DatasetError(
            f"dataset {path!r} does not exist (looked at {inner}); give an existing file or folder"
        )
    if info.type != pafs.FileType.Directory:
        return fs, [info], _format_of(path)
    kinds = {
        f.path: _FORMATS.get(Path(f.path).suffix.lower())
        for f in found
        if f.type == pafs.FileType.File
    }
    formats = set(kinds.values()) - {None}
    if len(formats) != 1:
        raise DatasetError(
            f"dataset folder {path!r} must hold files of one format (.parquet, .jsonl or .csv)"
        )
    fmt = formats.pop()
    files = sorted((f for f in found if kinds.get(f.path) == fmt), key=lambda f: f.path)
    return fs, files, str(fmt)


@dataclass(frozen=True)
class OpenedPath:
    """A dataset path opened once for a run: its files, its format and, for Parquet and CSV,
    the pyarrow dataset over them (listed once, however many reads follow)."""

    path: str
    fs: pafs.FileSystem
    files: tuple[pafs.FileInfo, ...]
    fmt: str
    dataset: pads.Dataset | None  # None for JSONL, which is read line by line


def open_path(path: str) -> OpenedPath:
    """Open ``path`` as a run reads it; DatasetError if it is missing or not its format."""
    fs, files, fmt = _open_path(path)
    if fmt == "jsonl":
        return OpenedPath(path, fs, tuple(files), fmt, None)
    try:
        dataset = _parquet([f.path for f in files], fs, fmt)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"dataset {path!r} cannot be parsed as {fmt}: {exc}") from None
    return OpenedPath(path, fs, tuple(files), fmt, dataset)


def _examples(stream: Any) -> Iterator[tuple[int, bytes]]:
    """The example lines of a JSONL stream with their line numbers (blank lines are not
    examples, but count as lines)."""
    return ((n, line) for n, line in enumerate(_iter_lines(stream), 1) if line.strip())


def _jsonl_chunks(source: OpenedPath, size: int) -> Iterator[Chunk]:
    for file in source.files:
        label = source.path if len(source.files) == 1 else file.path
        with source.fs.open_input_stream(file.path) as raw:
            numbered = _examples(raw)
            while True:
                block = list(itertools.islice(numbered, size))
                if not block:
                    break
                first, last = block[0][0], block[-1][0]
                gaps = last - first + 1 != len(block)  # blank lines between examples
                yield Chunk(
                    "jsonl",
                    [line for _, line in block],
                    first_line=first,
                    source=label,
                    line_numbers=tuple(n for n, _ in block) if gaps else None,
                )


def _iter_lines(stream: Any) -> Iterator[bytes]:
    pending = b""
    while True:
        block = stream.read(1 << 20)
        if not block:
            break
        pending += block
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _parquet(paths: list[str], fs: pafs.FileSystem, fmt: str) -> pads.Dataset:
    # imported here: pyarrow.dataset imports pandas, a third of a second that the driver and
    # evaluator processes, which never open a dataset, would pay at every start
    import pyarrow.dataset as pads

    return pads.dataset(paths, filesystem=fs, format=fmt)


def _arrow_chunks(
    source: pads.Dataset | pa.Table, label: str, size: int, columns: list[str] | None = None
) -> Iterator[Chunk]:
    try:
        batches = (
            source.to_batches(max_chunksize=size)
            if isinstance(source, pa.Table)
            else source.to_batches(batch_size=size, columns=columns)
        )
        for batch in batches:
            if batch.num_rows:
                yield Chunk("arrow", batch, source=label)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(
            f"dataset {label} cannot be parsed: {str(exc).splitlines()[0]}"
        ) from None


def check_path(path: str) -> OpenedPath:
    """Open a dataset path as a run will, so that a bad one fails before the run starts,
    and return it opened for the run: a Parquet dataset's footer is read (decoding a row
    group would cost more than the check is worth); a CSV or JSONL dataset's first example
    is parsed."""
    opened = open_path(path)
    if opened.fmt != "parquet":
        next(iter_chunks(opened, 1), None)
    return opened


#: orjson reads an integer outside [-2**63, 2**64) as a float: one of this size or more may
#: be such an integer, which the standard decoder keeps exact
_HUGE = float(2**63)


def _huge(value: Any) -> bool:
    """Whether a decoded JSON value holds a float of magnitude 2**63 or more."""
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is float:
            if not -_HUGE < item < _HUGE:
                return True
        elif (kind is dict or kind is list) and _huge(item):
            return True
    return False


def iter_id_chunks(source: OpenedPath, size: int) -> Iterator[Chunk] | None:
    """The chunks :func:`iter_chunks` reads from a Parquet or CSV dataset with an ``id``
    column, holding that column only (the rest is not decoded); None for other datasets."""
    if source.dataset is None or "id" not in source.dataset.schema.names:
        return None
    return _arrow_chunks(source.dataset, source.path, size, columns=["id"])


def iter_chunks(source: Any, size: int) -> Iterator[Chunk]:
    """Stream ``source`` (already resolved) in chunks of at most ``size`` examples."""
    if isinstance(source, pa.Table):
        yield from _arrow_chunks(source, "the table", size)
        return
    if isinstance(source, (str, Path)):
        source = open_path(str(source))
    if isinstance(source, OpenedPath):
        if source.dataset is None:
            yield from _jsonl_chunks(source, size)
        else:
            yield from _arrow_chunks(source.dataset, source.path, size)
        return
    if isinstance(source, Mapping) or not isinstance(source, Iterable):
        raise DatasetError(
            "a dataset must be a list/iterable of dicts, a pyarrow Table, a data frame, a path "
            f"or a callable; got {type(source).__name__}"
        )
    iterator = iter(source)
    while True:
        block = list(itertools.islice(iterator, size))
        if not block:
            return
        if set(map(type, block)) != {dict}:  # dicts go as they are: a unit ships a copy
            block = [_as_dict(row) for row in block]
        yield Chunk("rows", block, source="the dataset")


def _as_dict(row: Any) -> dict[str, Any]:
    if type(row) is dict:
        return row
    if not isinstance(row, Mapping):
        raise DatasetError(f"dataset items must be dicts; got {type(row).__name__}: {row!r:.80}")
    return dict(row)


#: JSONL and CSV datasets up to this size are counted before a run (one extra read); a
#: larger one is cut into units of the configured size, which already keep every actor busy
COUNT_BYTES = 64 * 1024 * 1024


def count_hint(source: Any) -> int | None:
    """The number of examples when it is cheap to know: lists, tables, Parquet metadata,
    and JSONL or CSV files of at most :data:`COUNT_BYTES`."""
    if isinstance(source, pa.Table):
        return source.num_rows
    if isinstance(source, (list, tuple)):
        return len(source)
    try:
        if isinstance(source, (str, Path)):
            source = open_path(str(source))
        if not isinstance(source, OpenedPath):
            return None
        if source.fmt == "parquet" and source.dataset is not None:
            return int(source.dataset.count_rows())
        if sum(f.size or 0 for f in source.files) > COUNT_BYTES:
            return None
        if source.dataset is not None:  # CSV
            return int(source.dataset.count_rows())
        total = 0
        for file in source.files:
            with source.fs.open_input_stream(file.path) as raw:
                total += sum(1 for _ in _examples(raw))
        return total
    except (DatasetError, OSError, pa.ArrowException):
        return None


#: examples read to estimate the size of a dataset's examples
SAMPLE = 64


def example_bytes(source: Any) -> tuple[float | None, Any]:
    """The bytes an example of ``source`` (already resolved) takes as a unit ships it, on
    average over its first :data:`SAMPLE`, and the source to read from now on: a one-shot
    iterator with its sampled examples put back in front. None when there is nothing to
    sample or it cannot be read (the run's own reading then says what is wrong)."""
    if isinstance(source, (pa.Table, str, Path, OpenedPath)):
        try:
            chunk = next(iter_chunks(source, SAMPLE), None)
        except (DatasetError, OSError, pa.ArrowException):
            return None, source
        if chunk is None:
            return None, source
    elif isinstance(source, Iterable) and not isinstance(source, Mapping):
        if isinstance(source, (list, tuple)):
            sample = list(source[:SAMPLE])
        else:
            iterator = iter(source)
            sample = list(itertools.islice(iterator, SAMPLE))
            if iterator is source:  # one-shot: what was sampled goes back in front
                source = itertools.chain(sample, iterator)
        if not sample:
            return None, source
        chunk = Chunk("rows", sample)
    else:
        return None, source
    try:
        size = len(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # an example that cannot be pickled fails the run where it is read
        return None, source
    return size / len(chunk), source
