"""Imported runs: ``runs.import_key``, the unique key of the log a run was imported from

A log of another evaluation tool (an Inspect AI eval log, a task of an lm-evaluation-harness
results file) becomes one run; its key is unique across the DB, so importing the same log
twice, or from two processes at once, creates one run.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("import_key", sa.String(length=250), nullable=True))
        batch.create_unique_constraint("uq_runs_import_key", ["import_key"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_import_key", type_="unique")
        batch.drop_column("import_key")
