"""Fenced attempts and their history, retries that retract superseded rows, 64-bit counters

- ``runs.attempt_base`` and ``runs.redo_from``: the retry budget of the current round, and
  which committed units a retry drives again;
- ``unit_commits.attempt`` and ``unit_commits.failed``: who last committed a unit, and its
  failed examples (what a retry drives again and retracts);
- ``retractions``: row-level deletes, live between two dataset versions like shards;
- ``run_attempts``: each attempt of a run, how it began and how and why it ended;
- row and byte counters as BIGINT on PostgreSQL (a compacted ``calls`` shard of LLM prompts
  passes 2 GiB). SQLite's INTEGER is 64-bit already, so its tables are not rebuilt.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
#: (table, column, nullable) of the counters widened to BIGINT on PostgreSQL
_COUNTERS = (
    ("runs", "examples_total", True),
    ("runs", "rows_count", False),
    ("runs", "calls_count", False),
    ("runs", "errors_count", False),
    ("runs", "examples_done", False),
    ("shards", "rows", False),
    ("shards", "bytes", False),
)


def _widen(to: sa.types.TypeEngine, from_: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite stores every INTEGER in up to 8 bytes
    for table, column, nullable in _COUNTERS:
        op.alter_column(table, column, type_=to, existing_type=from_, existing_nullable=nullable)


def upgrade() -> None:
    op.add_column(
        "runs", sa.Column("attempt_base", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("runs", sa.Column("redo_from", sa.Integer(), nullable=True))
    op.add_column(
        "unit_commits", sa.Column("attempt", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column("unit_commits", sa.Column("failed", _JSON, nullable=True))
    op.create_table(
        "retractions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("example_id", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("added_version_id", sa.Integer(), nullable=False),
        sa.Column("removed_version_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["added_version_id"],
            ["dataset_versions.id"],
            name="fk_retractions_added_version_id_dataset_versions",
        ),
        sa.ForeignKeyConstraint(
            ["removed_version_id"],
            ["dataset_versions.id"],
            name="fk_retractions_removed_version_id_dataset_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_retractions"),
    )
    op.create_index(
        "ix_retractions_dataset_removed_version_id_added_version_id",
        "retractions",
        ["dataset", "removed_version_id", "added_version_id"],
    )
    op.create_index("ix_retractions_run_id", "retractions", ["run_id"])
    op.create_table(
        "run_attempts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_attempts_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "attempt", name="pk_run_attempts"),
    )
    _widen(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _widen(sa.Integer(), sa.BigInteger())
    op.drop_table("run_attempts")
    op.drop_index("ix_retractions_run_id", table_name="retractions")
    op.drop_index(
        "ix_retractions_dataset_removed_version_id_added_version_id", table_name="retractions"
    )
    op.drop_table("retractions")
    op.drop_column("unit_commits", "failed")
    op.drop_column("unit_commits", "attempt")
    op.drop_column("runs", "redo_from")
    op.drop_column("runs", "attempt_base")
