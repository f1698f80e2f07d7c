"""The Alembic chain: up to head and back to base on both DBs, and it matches the models."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from hypermetric.catalog import migrate
from hypermetric.catalog.db import SCHEMA_REVISION, Database, database
from hypermetric.catalog.models import Base
from hypermetric.config import load_settings


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_models_and_migration_agree(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(db: Database) -> None:
    expected = {t.name for t in Base.metadata.sorted_tables}
    assert _tables(db) == expected
    migrate.downgrade(db, "base")
    assert _tables(db) == set()
    assert migrate.current_revision(db) is None
    migrate.upgrade(db)
    assert _tables(db) == expected
    assert migrate.current_revision(db) == migrate.head_revision()


def test_alembic_from_the_repository_root_uses_hypermetric_config(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "HYPERMETRIC_HOME": str(tmp_path / "home")}
    env.pop("HYPERMETRIC_DB_URL", None)
    alembic = Path(sys.executable).with_name("alembic")
    done = subprocess.run(
        [str(alembic), "upgrade", "head"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    db = tmp_path / "home" / "hypermetric.db"
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {t.name for t in Base.metadata.sorted_tables} <= tables


def test_the_schema_revision_the_code_opens_without_alembic_is_alembics_head() -> None:
    """A new migration must move SCHEMA_REVISION too: a database at the old head would
    otherwise be opened as current and never upgraded."""
    assert migrate.head_revision() == SCHEMA_REVISION


def _schema(db: Database) -> dict[str, object]:
    """Every table's columns, keys, indexes and constraints, as SQLAlchemy reads them."""
    seen = inspect(db.engine)
    return {
        table: (
            # by name: a migration adds its columns at the end, the models say where
            sorted(
                (c["name"], str(c["type"]), c["nullable"], c["default"])
                for c in seen.get_columns(table)
            ),
            seen.get_pk_constraint(table),
            sorted(str(fk) for fk in seen.get_foreign_keys(table)),
            sorted(str(ix) for ix in seen.get_indexes(table)),
            sorted(str(uq) for uq in seen.get_unique_constraints(table)),
        )
        for table in sorted(seen.get_table_names())
    }


def test_a_fresh_sqlite_catalog_is_the_migrated_one_and_migrates_down(tmp_path: Path) -> None:
    """A new SQLite catalog is made from the models at once (no Alembic on a first run):
    the same schema as the migrations build, recorded at head, and the chain runs down
    from it and up again."""
    from hypermetric.catalog.db import _create

    fresh = database(load_settings({"HYPERMETRIC_HOME": str(tmp_path / "fresh")}))
    assert fresh.dialect.name == "sqlite"
    migrated = _create(f"sqlite:///{tmp_path / 'migrated.db'}")
    migrate.upgrade(migrated)
    assert _schema(fresh) == _schema(migrated)
    assert migrate.current_revision(fresh) == migrate.head_revision()
    migrate.downgrade(fresh, "base")
    assert _tables(fresh) == set()
    migrate.upgrade(fresh)
    assert _schema(fresh) == _schema(migrated)
