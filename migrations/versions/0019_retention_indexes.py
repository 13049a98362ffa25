"""indexes retention reads by: whether a batch or an evaluation names a file, and a batch's or an evaluation's events

Beat deletes what has outlived DISTILQ_RETENTION_S (`store/retention.py`): a file's row once no batch or evaluation
names it as its input, and a batch's or an evaluation's webhook events with it. Without these, each of those reads
scanned its table. The events' indexes hold only the rows of a batch or an evaluation: a job's event writes none.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_batches_input_file", "batches", ["input_file_id"])
    op.create_index("ix_evaluations_input_file", "evaluations", ["input_file_id"])
    for name, column in (("ix_webhook_events_batch", "batch_id"), ("ix_webhook_events_evaluation", "evaluation_id")):
        condition = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "webhook_events", [column], sqlite_where=condition, postgresql_where=condition)


def downgrade() -> None:
    op.drop_index("ix_webhook_events_evaluation", "webhook_events")
    op.drop_index("ix_webhook_events_batch", "webhook_events")
    op.drop_index("ix_evaluations_input_file", "evaluations")
    op.drop_index("ix_batches_input_file", "batches")
