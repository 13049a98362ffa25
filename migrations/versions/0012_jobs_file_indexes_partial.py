"""jobs: the indexes that find a batch's lines and an evaluation's examples hold only those rows

An interactive job has neither a batch nor an evaluation, a batch's line no evaluation, an example no batch: each
wrote entries of NULL keys into indexes no query of it reads — two to four index entries on every insert, and again
on every status change (the claim, the write-back). As partial indexes (`models.tables.OF_BATCH`, `OF_EVALUATION`)
they hold only the rows they find; every query of them names its batch or evaluation, which implies the condition.
On PostgreSQL each index is built anew (a table read per index; writers wait meanwhile).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: name → (columns, the condition its rows meet)
_INDEXES = {
    "ix_jobs_batch_status": (["batch_id", "status"], "batch_id IS NOT NULL"),
    "ix_jobs_batch_line": (["batch_id", "batch_line"], "batch_id IS NOT NULL"),
    "ix_jobs_evaluation_line": (["evaluation_id", "batch_line"], "evaluation_id IS NOT NULL"),
    "ix_jobs_evaluation_status": (["evaluation_id", "status"], "evaluation_id IS NOT NULL"),
}


def upgrade() -> None:
    for name, (columns, condition) in _INDEXES.items():
        op.drop_index(name, table_name="jobs")
        op.create_index(name, "jobs", columns, sqlite_where=sa.text(condition), postgresql_where=sa.text(condition))


def downgrade() -> None:
    for name, (columns, _) in _INDEXES.items():
        op.drop_index(name, table_name="jobs")
        op.create_index(name, "jobs", columns)
