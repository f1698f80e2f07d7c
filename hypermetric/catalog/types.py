"""Portable column types: timezone-aware UTC datetimes and JSON on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["BigCount", "JSONType", "UTCDateTime", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns timezone-aware UTC; refuses naive datetimes.

    SQLite keeps no zone, so values are stored as naive UTC there (its ISO strings then sort
    in time order); PostgreSQL uses ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Hypermetric stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType: Any = JSON().with_variant(JSONB(), "postgresql")

#: A count that may pass 2**31 (rows of a run, bytes of a compacted shard of LLM prompts):
#: BIGINT on PostgreSQL; on SQLite every INTEGER is 64-bit already, and declaring it as such
#: keeps SQLite tables from being rebuilt by a migration.
BigCount: Any = BigInteger().with_variant(Integer(), "sqlite")
