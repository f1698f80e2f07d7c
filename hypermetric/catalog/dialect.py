"""Everything that differs between SQLite and PostgreSQL, in one place.

The rest of the catalog asks a :class:`Dialect` for capabilities and for the few statements
that differ, never ``if dialect == ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

__all__ = ["Dialect", "dialect_for"]

#: the advisory lock that orders dataset-version creation (any constant, ours alone)
_SNAPSHOT_LOCK = 0x68_6D_76


@dataclass(frozen=True)
class Dialect:
    """Capabilities and dialect-specific statements of one metadata DB backend."""

    name: str
    #: ``SELECT ... FOR UPDATE SKIP LOCKED`` works, so several schedulers may share the DB
    supports_skip_locked: bool
    #: several processes may run a scheduler against this DB at once
    allows_many_schedulers: bool

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_engine``."""
        if self.name == "sqlite":
            return {"connect_args": {"timeout": 60, "check_same_thread": False}}
        return {"pool_size": 5, "max_overflow": 10, "pool_pre_ping": True}

    def configure(self, engine: Engine) -> None:
        """Install per-connection set-up (WAL, busy timeout, FK checks, write locking)."""
        if self.name != "sqlite":
            return

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Manage transactions ourselves so every one starts with BEGIN IMMEDIATE: a
            # deferred transaction that later writes can fail with "database is locked"
            # however long the busy timeout is.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def for_update(self, stmt: Select[Any], *, skip_locked: bool = False) -> Select[Any]:
        """Lock the selected rows for this transaction where the backend can."""
        if self.name == "sqlite":
            return stmt  # BEGIN IMMEDIATE already holds the database's write lock
        return stmt.with_for_update(skip_locked=skip_locked and self.supports_skip_locked)

    def lock_snapshots(self, session: Session) -> None:
        """Serialise dataset-version creation so version ids follow commit order."""
        if self.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SNAPSHOT_LOCK})


def dialect_for(engine: Engine) -> Dialect:
    """The :class:`Dialect` of an engine's backend."""
    name = engine.dialect.name
    if name == "sqlite":
        return Dialect(name=name, supports_skip_locked=False, allows_many_schedulers=False)
    if name == "postgresql":
        return Dialect(name=name, supports_skip_locked=True, allows_many_schedulers=True)
    return Dialect(name=name, supports_skip_locked=False, allows_many_schedulers=False)
