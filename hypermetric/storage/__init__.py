"""Shard files: Parquet on a pyarrow filesystem (local paths or URIs such as ``s3://``)."""

from hypermetric.storage.files import ShardStore, store_for
from hypermetric.storage.schemas import CALLS_SCHEMA, SCHEMAS, SCORES_SCHEMA

__all__ = ["CALLS_SCHEMA", "SCHEMAS", "SCORES_SCHEMA", "ShardStore", "store_for"]
