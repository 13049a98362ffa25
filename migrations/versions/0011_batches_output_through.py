"""batches: how far the output and error files are written, so that beat writes them as the lines end

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: a catalog change on PostgreSQL (no rewrite of the table). A batch running at the upgrade
    # has written nothing yet: 0 is where its files begin.
    op.add_column("batches", sa.Column("output_through", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("output_through")
