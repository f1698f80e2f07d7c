"""``hypermetric db``: migrate the metadata DB with Alembic."""

from __future__ import annotations

import click

from hypermetric.catalog import migrate
from hypermetric.catalog.db import database

__all__ = ["register"]


@click.group("db")
def db_group() -> None:
    """Create, upgrade and inspect the metadata DB schema."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Upgrade the metadata DB to REVISION (default: head)."""
    db = database(migrate=False)
    migrate.upgrade(db, revision)
    click.echo(f"metadata DB at {migrate.current_revision(db) or 'base'} ({db.dialect.name})")


@db_group.command("downgrade")
@click.argument("revision", default="-1")
@click.confirmation_option(prompt="Downgrading can drop tables and their rows. Continue?")
def downgrade(revision: str) -> None:
    """Downgrade the metadata DB to REVISION (default: one step; 'base' drops everything)."""
    db = database(migrate=False)
    migrate.downgrade(db, revision)
    click.echo(f"metadata DB at {migrate.current_revision(db) or 'base'} ({db.dialect.name})")


@db_group.command("current")
def current() -> None:
    """Show the revision the metadata DB is at, and the newest one this code knows."""
    db = database(migrate=False)
    now, head = migrate.current_revision(db), migrate.head_revision()
    status = "up to date" if now == head else "run `hypermetric db upgrade`"
    click.echo(f"current: {now or 'base'}  head: {head}  ({status}; {db.dialect.name})")


def register(root: click.Group) -> None:
    """Add ``db`` to the root command."""
    root.add_command(db_group)
