"""jobs: index of the idempotency keys still held, by expiry, for beat's sweep that frees them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_HELD = sa.text("idempotency_key IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_jobs_idempotency_expires", "jobs", ["idempotency_expires_at"], sqlite_where=_HELD,
                    postgresql_where=_HELD)


def downgrade() -> None:
    op.drop_index("ix_jobs_idempotency_expires", table_name="jobs")
