"""A file's lines as each database stores them: on PostgreSQL by COPY (`models.db.CopyRows`), on SQLite by an
executemany INSERT — a line read back is the line given, whatever characters its text and its bytes hold (COPY's
text form escapes tabs, newlines and backslashes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_session_factory
from models.tables import Job
from store import batch_rows, batches
from store.batch_rows import BatchLine
from tests.batch_rows import validating_batch

#: Text no line of a real file would hold, all of it allowed: COPY's separators and escapes, NUL-free.
ODD = "tab\there, line\nbreak, back\\slash, \\N, quote \" and ' , émoji 🙂, \r return"


@pytest.fixture()
def sessions(backend: tuple[str, str]) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(backend[0])
    yield make_session_factory(engine)
    engine.dispose()


@pytest.mark.parametrize("row_inputs", [1, 4])
def test_lines_are_stored_as_given(sessions: sessionmaker[Session], row_inputs: int) -> None:
    """A row a line, and rows of up to 4 lines (each line's token ids framed in the row's, some lines with none):
    each line comes back as it was given."""
    now = datetime.now(UTC).replace(microsecond=123456)
    api_key_id, batch_id = validating_batch(sessions, now)
    lines = [BatchLine(i + 1, f"{ODD} {i}", "fill-mask", "m", {"input_string": [f"{ODD} [MASK] {i}"]},
                       {"top_k": i + 1}, 1, {"note": ODD, "n": i} if i % 2 else None,
                       bytes(range(256)) if i % 3 else None)
             for i in range(6)]
    rows = list(batch_rows.rows(lines, batch_id=batch_id, api_key_id=api_key_id, now=now,
                                row_inputs={"fill-mask": row_inputs}))
    assert batches.add_checked_lines(sessions, batch_id, rows, len(lines), now)
    with sessions() as session:
        stored = session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.batch_line)).all()
        assert [(job.id, job.input, job.parameters, job.meta, job.token_ids, job.created_at, job.status,
                 job.priority, job.batch_line, job.line_count, job.webhook_events_filter, job.idempotency_key)
                for job in stored] == [
            (row["id"], row["input"], {}, None, row["token_ids"], now, "queued", 1, row["batch_line"],
             row["line_count"], [], None)
            for row in rows]
    assert [len(row["input"]["lines"]) for row in rows] == ([1] * 6 if row_inputs == 1 else [4, 2])
    given = [(line.custom_id, line.inputs, line.parameters, line.metadata, line.token_ids) for line in lines]
    read = [(line["custom_id"], line["input"], line["parameters"], line["metadata"], ids)
            for job in stored for line, (_, _, ids) in zip(job.input["lines"],
                                                           batch_rows.line_parts(job.input, job.token_ids),
                                                           strict=True)]
    assert read == given
