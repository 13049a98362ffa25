"""jobs: the index of a key's jobs in flight holds interactive jobs only, the Idempotency-Keys' index only the rows
that hold a key

A batch's line and an evaluation's example are not counted against their key's jobs in flight and hold no
Idempotency-Key, yet each of their rows wrote entries into both indexes — on PostgreSQL at every change of a status
too (a row's new version gets an entry in every index whose condition it meets). As partial indexes
(`models.tables.INTERACTIVE`, `_KEY_HELD`) they hold only the rows looked up through them; the unique constraint
on (api_key_id, idempotency_key) becomes a unique index over the rows with a key (rows without one never
conflicted). On PostgreSQL each index is built anew (a table read per index; writers wait meanwhile); on SQLite the
constraint is part of the table, which is rebuilt to drop it (Alembic's batch mode: the rows are copied).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_KEY_HELD = "idempotency_key IS NOT NULL"
_INTERACTIVE = "priority = 0"


def upgrade() -> None:
    op.drop_index("ix_jobs_api_key_status_priority", table_name="jobs")
    op.create_index("ix_jobs_api_key_status_interactive", "jobs", ["api_key_id", "status"],
                    sqlite_where=sa.text(_INTERACTIVE), postgresql_where=sa.text(_INTERACTIVE))
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_api_key_idempotency_key", type_="unique")
    op.create_index("uq_jobs_api_key_idempotency_key", "jobs", ["api_key_id", "idempotency_key"], unique=True,
                    sqlite_where=sa.text(_KEY_HELD), postgresql_where=sa.text(_KEY_HELD))


def downgrade() -> None:
    op.drop_index("uq_jobs_api_key_idempotency_key", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.create_unique_constraint("uq_jobs_api_key_idempotency_key", ["api_key_id", "idempotency_key"])
    op.drop_index("ix_jobs_api_key_status_interactive", table_name="jobs")
    op.create_index("ix_jobs_api_key_status_priority", "jobs", ["api_key_id", "status", "priority"])
