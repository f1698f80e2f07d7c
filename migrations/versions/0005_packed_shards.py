"""Files that mix runs, run-wide retractions and maintenance leases

- ``shard_runs``: the runs a packed shard (``shards.run_id`` NULL) holds rows of, and how
  many, so reading, reprocessing or pruning one run finds every file it is in;
- ``retractions.example_id`` nullable: NULL retracts every example of the run (a reprocess
  or a prune of a run whose rows are packed with other runs' rows);
- ``maintenance_leases``: which scheduler runs background compaction until when.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COUNT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "shard_runs",
        sa.Column("shard_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("rows", _COUNT, nullable=False),
        sa.ForeignKeyConstraint(
            ["shard_id"], ["shards.id"], name="fk_shard_runs_shard_id_shards", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shard_id", "run_id", name="pk_shard_runs"),
    )
    op.create_index("ix_shard_runs_run_id", "shard_runs", ["run_id"])
    with op.batch_alter_table("retractions") as batch:
        batch.alter_column("example_id", existing_type=sa.Text(), nullable=True)
    op.create_table(
        "maintenance_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_maintenance_leases"),
    )


def downgrade() -> None:
    op.drop_table("maintenance_leases")
    op.execute("DELETE FROM retractions WHERE example_id IS NULL")
    with op.batch_alter_table("retractions") as batch:
        batch.alter_column("example_id", existing_type=sa.Text(), nullable=False)
    op.drop_index("ix_shard_runs_run_id", table_name="shard_runs")
    op.drop_table("shard_runs")
