"""batches: how many of the lines their files hold succeeded and failed, so that a poll counts only the lines ended
since

`request_counts` counted every line of the batch by status at each poll: O(lines) — a 50,000-line batch's poll read
50,000 index entries (and on PostgreSQL, the rows just written being not yet all-visible, their heap too). beat now
adds the lines it writes to the files to these counts (`store.batch_output.write_ready`), and a poll counts only the
lines ended beyond `output_through` — by the index of a batch's lines by status, which now holds their line numbers
too (so that it reads those lines alone). Existing batches get the counts of the lines their files already hold.
On PostgreSQL the index is built anew (a table read; writers wait meanwhile).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_OF_BATCH = "batch_id IS NOT NULL"


def upgrade() -> None:
    # Constant defaults: catalog changes on PostgreSQL (no rewrite of the table).
    op.add_column("batches", sa.Column("written_completed", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("batches", sa.Column("written_failed", sa.Integer(), nullable=False, server_default="0"))
    written = ("(SELECT count(*) FROM jobs WHERE jobs.batch_id = batches.id "
               "AND jobs.batch_line <= batches.output_through AND jobs.status IN ({}))")
    completed, failed = written.format("'succeeded'"), written.format("'failed', 'canceled'")
    op.execute(f"UPDATE batches SET written_completed = {completed}, written_failed = {failed} "
               "WHERE output_through > 0")
    _index(["batch_id", "status", "batch_line"])


def _index(columns: list[str]) -> None:
    op.drop_index("ix_jobs_batch_status", table_name="jobs")
    op.create_index("ix_jobs_batch_status", "jobs", columns, sqlite_where=sa.text(_OF_BATCH),
                    postgresql_where=sa.text(_OF_BATCH))


def downgrade() -> None:
    _index(["batch_id", "status"])
    # A plain ALTER TABLE … DROP COLUMN on both (SQLite's since 3.35): no copy of the table.
    op.drop_column("batches", "written_failed")
    op.drop_column("batches", "written_completed")
