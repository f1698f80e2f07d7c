"""Hypermetric's exceptions: one hierarchy, each message says what went wrong and what to do.

::

    HypermetricError
    ├── ConfigError              a setting is missing or malformed
    ├── DefinitionError          a component, eval or runtime is declared wrongly
    │   └── BindingError         an eval parameter cannot be bound to a value
    ├── DatasetError             a dataset cannot be found, read or parsed
    ├── CatalogError             the metadata DB refused or failed an operation
    │   ├── NotFoundError        no evaluation / run / version by that name or id
    │   └── ConflictError        a unique key was hit (a run for that date exists, ...)
    │       └── SupersededError  a newer attempt holds the run: this one may not write
    ├── StorageError             a shard could not be written, moved or read
    ├── EngineError              the distributed engine failed (Ray could not start, ...)
    │   └── RunFailedError       a run ended failed (error budget, timeout, cancel)
    ├── QueryError               a SQL query, comparison or history request failed
    ├── ScheduleError            a cron expression, timezone or date range is invalid
    └── SchedulerError           the scheduler service cannot run (a second one on SQLite, ...)

Third-party exceptions are wrapped into these at the edge of the layer that calls the
library, so a user sees one line that names the thing and the fix.
"""

from __future__ import annotations

__all__ = [
    "BindingError",
    "CatalogError",
    "ConfigError",
    "ConflictError",
    "DatasetError",
    "DefinitionError",
    "EngineError",
    "HypermetricError",
    "NotFoundError",
    "QueryError",
    "RunFailedError",
    "ScheduleError",
    "SchedulerError",
    "StorageError",
    "SupersededError",
]


class HypermetricError(Exception):
    """Base of every error Hypermetric raises on purpose."""


class ConfigError(HypermetricError):
    """A setting is missing or malformed."""


class DefinitionError(HypermetricError):
    """A component, eval or runtime is declared wrongly."""


class BindingError(DefinitionError):
    """An eval parameter cannot be bound to any available value."""


class DatasetError(HypermetricError):
    """A dataset cannot be found, read or parsed."""


class CatalogError(HypermetricError):
    """The metadata DB refused or failed an operation."""


class NotFoundError(CatalogError):
    """No evaluation, run or dataset version matches what was asked for."""


class ConflictError(CatalogError):
    """A unique key was hit: the thing already exists."""


class SupersededError(ConflictError):
    """This attempt of a run was superseded (taken over, queued again or reprocessed): the
    metadata DB refuses its writes, and its process stops without writing anything more."""

    def __init__(self, message: str, run_id: int | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class StorageError(HypermetricError):
    """A shard could not be written, moved or read."""


class EngineError(HypermetricError):
    """The distributed engine failed."""


class RunFailedError(EngineError):
    """A run ended in the failed state; the message says why."""

    def __init__(self, message: str, run_id: int | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class QueryError(HypermetricError):
    """A SQL query, comparison or history request failed."""


class ScheduleError(HypermetricError):
    """A cron expression, timezone or date range is invalid."""


class SchedulerError(HypermetricError):
    """The scheduler service cannot run as asked."""
