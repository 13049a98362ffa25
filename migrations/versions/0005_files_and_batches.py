"""files and batches: uploaded files in parts, batches whose lines run as jobs of a lower priority

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("api_key_id", sa.String(36), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_files_api_key_created", "files", ["api_key_id", "created_at"])
    op.create_table(
        "file_parts",
        sa.Column("file_id", sa.String(40), sa.ForeignKey("files.id"), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("api_key_id", sa.String(36), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("input_file_id", sa.String(40), sa.ForeignKey("files.id"), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=True),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output_file_id", sa.String(40), nullable=True),
        sa.Column("error_file_id", sa.String(40), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("errors", JSON, nullable=True),
        sa.Column("webhook", sa.Text(), nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *[sa.Column(f"{name}_at", sa.DateTime(timezone=True), nullable=True)
          for name in ("in_progress", "finalizing", "completed", "failed", "cancelling", "cancelled")],
    )
    op.create_index("ix_batches_api_key_created", "batches", ["api_key_id", "created_at"])
    op.create_index("ix_batches_status", "batches", ["status"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("batch_id", sa.String(40), sa.ForeignKey("batches.id", name="fk_jobs_batch_id"),
                                   nullable=True))
        batch.add_column(sa.Column("batch_line", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("custom_id", sa.Text(), nullable=True))
        # Claims take interactive jobs first; the per-key cap counts interactive jobs only.
        batch.drop_index("ix_jobs_status_task_created")
        batch.create_index("ix_jobs_status_task_priority_created", ["status", "task", "priority", "created_at"])
        batch.drop_index("ix_jobs_api_key_status")
        batch.create_index("ix_jobs_api_key_status_priority", ["api_key_id", "status", "priority"])
        batch.create_index("ix_jobs_batch_status", ["batch_id", "status"])
        batch.create_index("ix_jobs_batch_line", ["batch_id", "batch_line"])
    with op.batch_alter_table("webhook_events") as batch:
        batch.alter_column("job_id", existing_type=sa.String(36), nullable=True)
        batch.add_column(sa.Column("batch_id", sa.String(40),
                                   sa.ForeignKey("batches.id", name="fk_webhook_events_batch_id"), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("batch_id")
        batch.alter_column("job_id", existing_type=sa.String(36), nullable=False)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_batch_line")
        batch.drop_index("ix_jobs_batch_status")
        batch.drop_index("ix_jobs_api_key_status_priority")
        batch.create_index("ix_jobs_api_key_status", ["api_key_id", "status"])
        batch.drop_index("ix_jobs_status_task_priority_created")
        batch.create_index("ix_jobs_status_task_created", ["status", "task", "created_at"])
        batch.drop_column("custom_id")
        batch.drop_column("batch_line")
        batch.drop_column("batch_id")
        batch.drop_column("priority")
    op.drop_table("batches")
    op.drop_table("file_parts")
    op.drop_table("files")
