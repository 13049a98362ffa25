"""evaluations: examples run as jobs of the evaluation, metrics computed from them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("api_key_id", sa.String(36), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("input_file_id", sa.String(40), sa.ForeignKey("files.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("metric_names", JSON, nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=True),
        sa.Column("output_file_id", sa.String(40), nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("webhook", sa.Text(), nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_evaluations_api_key_created", "evaluations", ["api_key_id", "created_at"])
    op.create_index("ix_evaluations_status", "evaluations", ["status"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("evaluation_id", sa.String(40),
                                   sa.ForeignKey("evaluations.id", name="fk_jobs_evaluation_id"), nullable=True))
        batch.create_index("ix_jobs_evaluation_line", ["evaluation_id", "batch_line"])
        batch.create_index("ix_jobs_evaluation_status", ["evaluation_id", "status"])
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("evaluation_id", sa.String(40),
                                   sa.ForeignKey("evaluations.id", name="fk_webhook_events_evaluation_id"),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("evaluation_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_evaluation_status")
        batch.drop_index("ix_jobs_evaluation_line")
        batch.drop_column("evaluation_id")
    op.drop_table("evaluations")
