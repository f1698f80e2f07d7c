"""The call cache: component outputs as small JSON files under ``cache/`` of the storage root,
one per key, so every node and every later run that reads the same store shares them.

``cache/<component>/<key[:2]>/<key>.json``: the component's name is percent-encoded, so
``hypermetric cache clear --component NAME`` deletes one folder. The cache is not a dataset:
no version references it and ``clean`` leaves it alone.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.fs as pafs

from hypermetric.api.calls import MISS
from hypermetric.errors import StorageError
from hypermetric.storage.files import ShardStore, masked

__all__ = ["CACHE_DIR", "MISS", "StoreCache"]

CACHE_DIR = "cache"


def _folder(component: str) -> str:
    return f"{CACHE_DIR}/{quote(component, safe='-_')}"


class StoreCache:
    """Cached outputs in a shard store (a local folder or an object store)."""

    def __init__(self, store: ShardStore) -> None:
        self.store = store
        self.local = store.is_local

    def _path(self, component: str, key: str) -> str:
        return self.store.full_path(f"{_folder(component)}/{key[:2]}/{key}.json")

    def get(self, component: str, key: str) -> Any:
        """The output stored under ``key``, or :data:`MISS`."""
        path = self._path(component, key)
        try:
            if self.local:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            else:
                with self.store.fs.open_input_stream(path) as f:
                    text = f.read().decode()
        except FileNotFoundError:
            return MISS
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(masked(f"cannot read the call cache at {path}: {exc}")) from exc
        try:
            return json.loads(text)
        except ValueError:
            return MISS  # a torn write of a crashed process: call again and write it anew

    def put(self, component: str, key: str, text: str) -> None:
        """Store an output's JSON text under ``key`` (last writer wins: same key, same text)."""
        path = self._path(component, key)
        try:
            if self.local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, path)  # readers see the whole file or none
            else:
                with self.store.fs.open_output_stream(path) as f:  # an object put is atomic
                    f.write(text.encode())
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(masked(f"cannot write the call cache at {path}: {exc}")) from exc

    def clear(self, component: str | None = None) -> int:
        """Delete the cached outputs of ``component`` (default: all); returns the files gone."""
        folder = self.store.full_path(_folder(component) if component else CACHE_DIR)
        selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
        try:
            count = sum(
                1 for i in self.store.fs.get_file_info(selector) if i.type == pafs.FileType.File
            )
            if count or self.store.fs.get_file_info(folder).type == pafs.FileType.Directory:
                self.store.fs.delete_dir(folder)
        except FileNotFoundError:
            return 0
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(masked(f"cannot clear the call cache at {folder}: {exc}")) from exc
        return count
