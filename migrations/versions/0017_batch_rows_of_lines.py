"""jobs: a batch's consecutive lines share a job row (`store/batch_rows.py`)

A row held one line: its insert, claim, write-back and output-file read cost as much for one line as for sixteen,
and on a GPU those, not the device, bounded a batch. A batch's row now holds `line_count` consecutive lines from
`batch_line` on, their bodies and custom_ids in `input` (`{"lines": [...]}`), their results in `output`, and
`failed_lines` counts the lines that failed; `custom_id` goes. Existing rows of batches become rows of one line,
their token ids framed as a row's are; a line's job id, once `{id}`, is now `{id}-0` (an output file written before
names the old one). Down again only while every row holds one line (a batch of many-line rows must end first).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

import struct
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

#: Rows converted per read.
_CHUNK = 500
_LENGTH = struct.Struct("<I")  # a framed part's length, as `store.batch_rows` writes it
_ABSENT = 0xFFFFFFFF

_JOBS = sa.table("jobs", sa.column("id", sa.String()), sa.column("batch_id", sa.String()),
                 sa.column("status", sa.String()), sa.column("input", sa.JSON()), sa.column("parameters", sa.JSON()),
                 sa.column("metadata", sa.JSON()), sa.column("output", sa.JSON()), sa.column("error", sa.JSON()),
                 sa.column("custom_id", sa.Text()), sa.column("token_ids", sa.LargeBinary()),
                 sa.column("line_count", sa.Integer()), sa.column("failed_lines", sa.Integer()))


def _batch_rows(connection: sa.Connection, *columns: str) -> Any:
    """The rows of batches, `_CHUNK` at a time, by id."""
    after = ""
    while True:
        chunk = connection.execute(sa.select(*[_JOBS.c[name] for name in ("id", *columns)])
                                   .where(_JOBS.c.batch_id.is_not(None), _JOBS.c.id > after)
                                   .order_by(_JOBS.c.id).limit(_CHUNK)).all()
        if not chunk:
            return
        yield from chunk
        after = chunk[-1].id


def upgrade() -> None:
    # Constant defaults: catalog changes on PostgreSQL (no rewrite of the table).
    op.add_column("jobs", sa.Column("line_count", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("jobs", sa.Column("failed_lines", sa.Integer(), nullable=False, server_default="0"))
    connection = op.get_bind()
    # Each read of `_CHUNK` rows is whole before they are changed: the rows are never all in memory.
    for row in _batch_rows(connection, "status", "input", "parameters", "metadata", "output", "custom_id",
                           "token_ids"):
        values: dict[str, Any] = {
            "input": {"lines": [{"custom_id": row.custom_id, "input": row.input, "parameters": row.parameters,
                                 "metadata": row.metadata}]},
            "parameters": {}, "metadata": None,
            "token_ids": None if row.token_ids is None else _LENGTH.pack(len(row.token_ids)) + bytes(row.token_ids)}
        if row.status == "succeeded":
            values["output"] = [{"output": row.output}]
        connection.execute(_JOBS.update().where(_JOBS.c.id == row.id).values(**values))
    # A plain ALTER TABLE … DROP COLUMN on both (SQLite's since 3.35): no copy of the table.
    op.drop_column("jobs", "custom_id")


def downgrade() -> None:
    connection = op.get_bind()
    many = connection.scalar(sa.select(sa.func.count()).select_from(_JOBS).where(_JOBS.c.line_count > 1))
    if many:
        raise RuntimeError(f"{many} job rows hold more than one batch line: let their batches end first")
    op.add_column("jobs", sa.Column("custom_id", sa.Text(), nullable=True))
    for row in _batch_rows(connection, "status", "input", "output", "error", "token_ids"):
        [line] = row.input["lines"]
        values: dict[str, Any] = {"custom_id": line["custom_id"], "input": line["input"],
                                  "parameters": line["parameters"], "metadata": line["metadata"], "token_ids": None}
        if row.token_ids is not None:
            (length,) = _LENGTH.unpack_from(row.token_ids)
            values["token_ids"] = None if length == _ABSENT else bytes(row.token_ids)[_LENGTH.size:]
        if row.status == "succeeded":
            [result] = row.output
            if "error" in result:  # the line failed: as the row of one line, the job failed
                values.update(status="failed", output=None, error=result["error"])
            else:
                values["output"] = result["output"]
        connection.execute(_JOBS.update().where(_JOBS.c.id == row.id).values(**values))
    op.drop_column("jobs", "failed_lines")
    op.drop_column("jobs", "line_count")
