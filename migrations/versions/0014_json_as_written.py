"""PostgreSQL: every JSON column `json` (the text as written) rather than `jsonb`

`jsonb` parses a value when it is stored and prints it again when it is read; no query looks inside these columns,
and a job's output — most of what is stored — is written once and read whole (a poll, a batch's output file), so
both were work for nothing: a 2 KB fill-mask output's write-back 28.1 → 19.6 wall-µs a row, its read as text
11.8 → 6.1 (BENCHMARKS.md, session 28). And `jsonb` orders an object's keys by length: outputs and metadata came
back from PostgreSQL in another order than they were written, and than SQLite gives. On PostgreSQL each table is
rewritten (writers wait meanwhile); SQLite stores JSON as text already: nothing changes there.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: table → its JSON columns
_COLUMNS = {
    "jobs": ("input", "parameters", "output", "error", "webhook_events_filter", "metadata"),
    "batches": ("errors", "metadata"),
    "evaluations": ("metric_names", "config", "metrics", "error", "metadata"),
}


def _retype(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in _COLUMNS.items():
        # One ALTER TABLE a table: one rewrite of it, whatever the number of columns.
        op.execute(f"ALTER TABLE {table} " + ", ".join(f'ALTER COLUMN "{column}" TYPE {to} USING "{column}"::{to}'
                                                      for column in columns))


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")
