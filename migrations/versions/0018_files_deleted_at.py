"""files: when a file was deleted (`DELETE /v1/files/{id}`)

A deleted file's bytes go at once; its row stays, marked, since batches and evaluations name their input file by a
foreign key and show its id. No route shows a deleted file again.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: a catalog change on both databases, no rewrite of the table.
    op.add_column("files", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # A deleted file's bytes are gone, and its row may be a batch's input: down again, it shows as an empty file.
    files = sa.table("files", sa.column("bytes", sa.Integer()), sa.column("deleted_at", sa.DateTime()))
    op.get_bind().execute(files.update().where(files.c.deleted_at.is_not(None)).values(bytes=0))
    with op.batch_alter_table("files") as batch:
        batch.drop_column("deleted_at")
