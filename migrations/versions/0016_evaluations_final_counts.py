"""evaluations: an ended evaluation's examples by status, stored once at its end

Its answers counted every example by status at each read — a list page of 20 ended evaluations of 50,000 examples
each counted a million rows. An ended evaluation's examples no longer change, so beat stores their counts when it
ends one (`store.evaluations.finalize`); existing ended evaluations get theirs here.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("final_counts", sa.JSON(), nullable=True))
    evaluations = sa.table("evaluations", sa.column("id", sa.String()), sa.column("completed_at", sa.DateTime()),
                           sa.column("final_counts", sa.JSON()))
    jobs = sa.table("jobs", sa.column("evaluation_id", sa.String()), sa.column("status", sa.String()))
    connection = op.get_bind()
    ended = connection.execute(sa.select(evaluations.c.id).where(evaluations.c.completed_at.is_not(None))).scalars()
    for evaluation_id in list(ended):
        counts: dict[str, int] = dict(connection.execute(sa.select(jobs.c.status, sa.func.count())
                                                         .where(jobs.c.evaluation_id == evaluation_id)
                                                         .group_by(jobs.c.status)).all())
        connection.execute(evaluations.update().where(evaluations.c.id == evaluation_id)
                           .values(final_counts=counts))


def downgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN on both (SQLite's since 3.35): no copy of the table.
    op.drop_column("evaluations", "final_counts")
