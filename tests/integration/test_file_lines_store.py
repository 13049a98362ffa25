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
from store import batches, jobs
from tests.batch_rows import validating_batch

#: Text no line of a real file would hold, all of it allowed: COPY's separators and escapes, NUL-free.
ODD = "tab\there, line\nbreak, back\\slash, \\N, quote \" and ' , émoji 🙂, \r return"


@pytest.fixture()
def sessions(backend: tuple[str, str]) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(backend[0])
    yield make_session_factory(engine)
    engine.dispose()


def test_lines_are_stored_as_given(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC).replace(microsecond=123456)
    api_key_id, batch_id = validating_batch(sessions, now)
    rows = [jobs.batch_line(batch_id=batch_id, line=i + 1, custom_id=f"{ODD} {i}", task="fill-mask", model="m",
                            api_key_id=api_key_id, inputs={"input_string": [f"{ODD} [MASK] {i}"]},
                            parameters={"top_k": i + 1}, n_inputs=1,
                            metadata={"note": ODD, "n": i} if i % 2 else None, now=now,
                            token_ids=bytes(range(256)) if i % 3 else None)
            for i in range(6)]
    assert batches.add_checked_lines(sessions, batch_id, rows, len(rows), now)
    with sessions() as session:
        stored = session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.batch_line)).all()
        assert [(job.id, job.custom_id, job.input, job.parameters, job.meta, job.token_ids, job.created_at,
                 job.status, job.priority, job.batch_line, job.webhook_events_filter, job.idempotency_key)
                for job in stored] == [
            (row["id"], row["custom_id"], row["input"], row["parameters"], row["metadata"], row["token_ids"], now,
             "queued", 1, row["batch_line"], [], None)
            for row in rows]
