"""the metadata DB: evaluations, runs, shards, unit ledger, dataset versions, schedulers

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("import_path", sa.String(length=500), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("schedule", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("catchup", sa.Boolean(), nullable=False),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_active_runs", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("retry_delay_s", sa.Float(), nullable=False),
        sa.Column("retry_exponential", sa.Boolean(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("max_error_rate", sa.Float(), nullable=False),
        sa.Column(
            "params", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("version_label", sa.String(length=200), nullable=True),
        sa.Column("code_version", sa.String(length=64), nullable=True),
        sa.Column("next_logical_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sa.UniqueConstraint("name", name="uq_evaluations_name"),
    )
    op.create_index("ix_evaluations_paused_next_due_at", "evaluations", ["paused", "next_due_at"])

    op.create_table(
        "scheduler_instances",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduler_instances"),
    )
    op.create_index(
        "ix_scheduler_instances_state_heartbeat_at",
        "scheduler_instances",
        ["state", "heartbeat_at"],
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(length=250), nullable=False),
        sa.Column("logical_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_interval_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("data_interval_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_type", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("version_label", sa.String(length=200), nullable=True),
        sa.Column("code_version", sa.String(length=64), nullable=True),
        sa.Column(
            "versions", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column(
            "params", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("dataset", sa.String(length=1000), nullable=True),
        sa.Column("unit_size", sa.Integer(), nullable=True),
        sa.Column("examples_total", sa.Integer(), nullable=True),
        sa.Column("units_total", sa.Integer(), nullable=True),
        sa.Column("rows_count", sa.Integer(), nullable=False),
        sa.Column("calls_count", sa.Integer(), nullable=False),
        sa.Column("errors_count", sa.Integer(), nullable=False),
        sa.Column("examples_done", sa.Integer(), nullable=False),
        sa.Column("shard_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name="fk_runs_evaluation_id_evaluations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint(
            "evaluation_id", "logical_date", name="uq_runs_evaluation_id_logical_date"
        ),
        sa.UniqueConstraint("evaluation_id", "run_key", name="uq_runs_evaluation_id_run_key"),
    )
    op.create_index(
        "ix_runs_evaluation_id_state_run_type", "runs", ["evaluation_id", "state", "run_type"]
    )
    op.create_index("ix_runs_state_evaluation_id", "runs", ["state", "evaluation_id"])

    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("expired", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_dataset_versions_run_id_runs", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_versions"),
    )
    op.create_table(
        "shards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("dataset", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("stats", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("schema_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("added_version_id", sa.Integer(), nullable=False),
        sa.Column("removed_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["added_version_id"],
            ["dataset_versions.id"],
            name="fk_shards_added_version_id_dataset_versions",
        ),
        sa.ForeignKeyConstraint(
            ["removed_version_id"],
            ["dataset_versions.id"],
            name="fk_shards_removed_version_id_dataset_versions",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_shards_run_id_runs", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_shards"),
        sa.UniqueConstraint("path", name="uq_shards_path"),
    )
    op.create_index(
        "ix_shards_dataset_removed_version_id_added_version_id",
        "shards",
        ["dataset", "removed_version_id", "added_version_id"],
    )
    op.create_index("ix_shards_run_id", "shards", ["run_id"])

    op.create_table(
        "unit_commits",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("scores_shard_id", sa.Integer(), nullable=True),
        sa.Column("calls_shard_id", sa.Integer(), nullable=True),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("failed_examples", sa.Integer(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calls_shard_id"],
            ["shards.id"],
            name="fk_unit_commits_calls_shard_id_shards",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_unit_commits_run_id_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["scores_shard_id"],
            ["shards.id"],
            name="fk_unit_commits_scores_shard_id_shards",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("run_id", "unit_id", name="pk_unit_commits"),
    )


def downgrade() -> None:
    op.drop_table("unit_commits")
    op.drop_index("ix_shards_run_id", table_name="shards")
    op.drop_index("ix_shards_dataset_removed_version_id_added_version_id", table_name="shards")

    op.drop_table("shards")
    op.drop_table("dataset_versions")
    op.drop_index("ix_runs_state_evaluation_id", table_name="runs")
    op.drop_index("ix_runs_evaluation_id_state_run_type", table_name="runs")

    op.drop_table("runs")
    op.drop_index("ix_scheduler_instances_state_heartbeat_at", table_name="scheduler_instances")

    op.drop_table("scheduler_instances")
    op.drop_index("ix_evaluations_paused_next_due_at", table_name="evaluations")

    op.drop_table("evaluations")
