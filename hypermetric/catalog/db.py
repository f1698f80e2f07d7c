"""Connections to the metadata DB and its migrations (Alembic)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hypermetric.catalog.dialect import Dialect, dialect_for
from hypermetric.config import Settings, get_settings
from hypermetric.errors import CatalogError, ConfigError
from hypermetric.masking import masked

__all__ = ["SCHEMA_REVISION", "Database", "database", "dispose", "dispose_all", "migrations_dir"]

#: the newest migration, which this code's models match (a test holds it to Alembic's head).
#: A database already there is opened without loading Alembic (a tenth of a second of
#: every process that opens the catalog: each command, each run)
SCHEMA_REVISION = "0006"


@dataclass(frozen=True)
class Database:
    """An open metadata DB: its engine, a session factory and its dialect's capabilities."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    dialect: Dialect

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session


_lock = threading.Lock()
_open: dict[str, Database] = {}


def _create(url: str) -> Database:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            masked(f"HYPERMETRIC_DB_URL {url!r} is not a SQLAlchemy URL; ")
            + "use e.g. sqlite:///path.db or postgresql+psycopg://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        probe = create_engine(parsed)
        dialect = dialect_for(probe)
        probe.dispose()
        engine = create_engine(parsed, **dialect.engine_options())
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"no database driver for {parsed.drivername!r} ({exc}); "
            'for PostgreSQL install the extra: pip install "hypermetric[postgres]"'
        ) from None
    dialect.configure(engine)
    return Database(
        url=url,
        engine=engine,
        sessions=sessionmaker(engine, expire_on_commit=False),
        dialect=dialect,
    )


def database(settings: Settings | None = None, *, migrate: bool = True) -> Database:
    """The metadata DB of these settings, opened once per process.

    On SQLite (the embedded default) the schema is created or upgraded on first use; on a
    server database the schema must be at head already (``hypermetric db upgrade``).
    """
    settings = settings or get_settings()
    with _lock:
        db = _open.get(settings.db_url)
        if db is None:
            db = _open[settings.db_url] = _create(settings.db_url)
            if migrate:
                _ensure_schema(db)
    return db


def dispose(url: str) -> None:
    """Close the engine of one database URL, if open."""
    with _lock:
        db = _open.pop(url, None)
    if db is not None:
        db.engine.dispose()


def dispose_all() -> None:
    """Close every open engine (tests, forked processes)."""
    with _lock:
        for db in _open.values():
            db.engine.dispose()
        _open.clear()


def migrations_dir() -> Path:
    """The Alembic script directory: shipped in the wheel, or at the repository root."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise CatalogError("Hypermetric's migrations are missing from this installation; reinstall it")


def _stored_revision(db: Database) -> str | None:
    """The revision recorded in ``alembic_version`` (None when there is no such table)."""
    try:
        with db.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise CatalogError(
            masked(f"cannot connect to the metadata DB {db.engine.url!r}: ")
            + masked(str(exc).splitlines()[0])
        ) from None


def _create_fresh(db: Database) -> bool:
    """Create an empty SQLite catalog from the models and record it at SCHEMA_REVISION,
    in one transaction; False when the database holds tables already (another process
    made it first: BEGIN IMMEDIATE holds the write lock over the check and the creation).

    The models are the migrations' result (a test holds the two to the same schema, and
    the chain downgrades from a catalog made so), and creating them at once spares a
    first run Alembic's import and the replay of every migration."""
    from hypermetric.catalog.models import Base

    with db.engine.begin() as conn:
        if inspect(conn).get_table_names():
            return False
        Base.metadata.create_all(conn)
        # the table Alembic keeps its revision in, as Alembic makes it
        conn.execute(
            text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
        )
        conn.execute(
            text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": SCHEMA_REVISION}
        )
    return True


def _ensure_schema(db: Database) -> None:
    current = _stored_revision(db)
    if current == SCHEMA_REVISION:
        return
    if current is None and db.dialect.name == "sqlite" and _create_fresh(db):
        return
    from hypermetric.catalog import migrate

    if current == migrate.head_revision():
        return
    if db.dialect.name == "sqlite":
        migrate.upgrade(db)
        return
    has_tables = bool(inspect(db.engine).get_table_names())
    hint = "run `hypermetric db upgrade`"
    state = f"at revision {current}" if current else ("not ours" if has_tables else "empty")
    raise CatalogError(f"the metadata DB {db.engine.url!r} is {state}; {hint}")
