"""Writing shards safely: a temporary name first, then a move to the final name.

A shard's path in the registry is relative to the storage root, so a store can be moved
or mounted elsewhere. Nothing here registers anything: the catalog does that after the
move, and a file it never registered is never read (and is swept by ``clean``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hypermetric.catalog.records import ShardFile
from hypermetric.config import Settings, get_settings
from hypermetric.errors import StorageError
from hypermetric.masking import masked as mask_secrets
from hypermetric.storage.schemas import fingerprint

__all__ = ["ShardStore", "StoredFile", "masked", "store_for"]

TMP_DIR = "_tmp"


@dataclass(frozen=True)
class StoredFile:
    """A file found under the storage root."""

    path: str
    size: int
    mtime: datetime | None


#: columns whose values repeat across rows
_DICTIONARY = frozenset({"evaluation", "version", "component", "metric", "error"})
#: JSON text columns: their min and max prune nothing, and computing them costs a sixth of
#: a shard's write
_NO_STATISTICS = frozenset({"inputs", "output", "fields"})


@dataclass(frozen=True)
class ShardStore:
    """A storage root on a pyarrow filesystem."""

    uri: str
    fs: pafs.FileSystem
    root: str

    @property
    def shown(self) -> str:
        """The URI for messages and logs: credentials in it are masked."""
        return masked(self.uri)

    @property
    def is_local(self) -> bool:
        """True when shards are plain local files (DuckDB can read them directly)."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def full_path(self, path: str) -> str:
        """The filesystem path of a registry path."""
        return f"{self.root.rstrip('/')}/{path}"

    def write(self, dataset: str, run_id: int | None, table: pa.Table, label: str) -> ShardFile:
        """Write ``table`` as a new shard of ``dataset``; returns what to register."""
        name = f"{label}-{uuid.uuid4().hex[:12]}.parquet"
        folder = f"{dataset}/run_id={run_id}" if run_id is not None else f"{dataset}/compacted"
        final = f"{folder}/{name}"
        tmp = f"{TMP_DIR}/{uuid.uuid4().hex}.parquet"
        try:
            self.fs.create_dir(self.full_path(TMP_DIR), recursive=True)
            self.fs.create_dir(self.full_path(folder), recursive=True)
            pq.write_table(
                table,
                self.full_path(tmp),
                filesystem=self.fs,
                compression="zstd",
                # dictionaries where values repeat (names, labels, error texts); ids and
                # JSON are near-unique: a dictionary there costs time and grows the file
                use_dictionary=[f.name for f in table.schema if f.name in _DICTIONARY],
                write_statistics=[f.name for f in table.schema if f.name not in _NO_STATISTICS],
                row_group_size=256 * 1024,
            )
            self.fs.move(self.full_path(tmp), self.full_path(final))
            size = self.fs.get_file_info(self.full_path(final)).size or 0
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(
                masked(f"cannot write shard {final} under {self.uri}: {exc}")
            ) from exc
        return ShardFile(
            dataset=dataset,
            path=final,
            rows=table.num_rows,
            bytes=int(size),
            schema_fingerprint=fingerprint(table.schema),
            stats=_stats(table),
        )

    def read(self, path: str) -> pa.Table:
        """Read a registered shard."""
        try:
            return pq.read_table(self.full_path(path), filesystem=self.fs)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(masked(f"cannot read shard {path} under {self.uri}: {exc}")) from exc

    def delete(self, path: str) -> None:
        """Delete a file (missing files are fine: deletion is idempotent)."""
        try:
            self.fs.delete_file(self.full_path(path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(masked(f"cannot delete {path} under {self.uri}: {exc}")) from exc

    def files(self) -> Iterator[StoredFile]:
        """Every file under the root (registry-relative paths), temporary ones included."""
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        prefix = self.root.rstrip("/") + "/"
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            mtime = info.mtime
            if mtime is not None and mtime.tzinfo is None:
                mtime = mtime.replace(tzinfo=UTC)
            yield StoredFile(path=info.path[len(prefix) :], size=info.size or 0, mtime=mtime)


def _stats(table: pa.Table) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    if "created_at" in table.column_names and table.num_rows:
        # numpy, not pyarrow.compute: importing that costs a worker a quarter of a second
        stamps = table["created_at"].to_numpy()
        bounds = (stamps.min(), stamps.max())
        stats["created_at"] = [
            None if np.isnat(v) else np.datetime_as_string(v, unit="us") + "+00:00" for v in bounds
        ]
    if "error" in table.column_names:
        stats["errors"] = table.num_rows - table["error"].null_count
    return stats


def masked(uri: str) -> str:
    """``uri`` with its credentials masked (``s3://***@bucket``): see :mod:`hypermetric.masking`."""
    return mask_secrets(uri)


def store_for(settings: Settings | None = None) -> ShardStore:
    """The shard store of the configured ``storage`` (a local path or a URI)."""
    uri = (settings or get_settings()).storage
    try:
        if "://" in uri:
            fs, root = pafs.FileSystem.from_uri(uri)
        else:
            from pathlib import Path

            fs, root = pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise StorageError(
            masked(f"HYPERMETRIC_STORAGE={uri!r} is not a usable path or filesystem URI: {exc}")
        ) from exc
    return ShardStore(uri=uri, fs=fs, root=root)
