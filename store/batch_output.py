"""A batch's output and error files, written while its lines run rather than all at its end.

A file of 10,000 lines took beat 0.5–0.9 s to write at the batch's end (~60 µs a line: the rows, the job objects,
their JSON), after every line had run: a wait that no faster device shortens. So beat writes the files as
the lines end (`write_ready`, asked by the worker after each pass with a batch's lines), and a batch's end writes
only what is left and shows the files (`store.batches.finalize`).

The files are written in the input file's order, a prefix at a time: the lines up to the first one still queued
or running (and no further than the check has reached, while it runs), from `Batch.output_through` on — whole rows
of lines (`store/batch_rows.py`: a row's lines are consecutive, so a row ends where the next begins), each line to
the file of its own status. Every line in that prefix has ended, and an ended line never changes, so the rows
are read outside the transaction that writes (SQLite's one writer is held only for the append). That transaction
first moves `output_through` from what it read — a second beat that wrote the same lines meanwhile makes it move
nothing, and nothing is appended — and takes the batch's row before touching the files, in the order
`store.batches.fail_check` does: a check that fails meanwhile waits for it or is waited for, never deadlocks with
it, and deletes the files (`discard`).

Until the batch ends, its files are partial (`store.files.PARTIAL`): no route shows them, and the batch does not
name them (`store.batches.batch_to_public`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, sessionmaker

from contract.job_json import job_to_public
from core.json_text import json_text
from models.db import each_statement_commits, row_dicts, rowcount, transaction
from models.tables import (
    CANCELLING,
    FINALIZING,
    IN_PROGRESS,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    VALIDATING,
    Batch,
    Job,
)
from store import batch_rows, files
from store.job_text import public_columns

#: Rows of lines read per query (`store/batch_rows.py`).
CHUNK = 500
#: The most lines one `write_ready` writes (and the rest of the row that holds the last): what it holds in memory
#: (~2 KB a fill-mask line's output).
MOST_LINES = 5000
#: While the lines run, fewer ended lines than this wait for more: the files grow by a part of ~1 MB at a time,
#: not by a few lines at each of the worker's passes.
FEWEST_LINES = 500
#: The batch statuses in which its files are written.
WRITING = (VALIDATING, IN_PROGRESS, CANCELLING, FINALIZING)
#: The files: the output file's lines succeeded, the error file's failed or were cancelled.
KINDS = ("output", "error")


def write_ready(sessions: sessionmaker[Session], batch_id: str, now: datetime, fewest: int = FEWEST_LINES) -> int:
    """Appends to the batch's files the lines that have ended since they were last written, when there are at
    least `fewest` (at most MOST_LINES); how far the files moved, in the input's line numbers (blank lines
    included), 0 when they did not (too few ended, or another beat wrote those lines first)."""
    with sessions() as session:
        each_statement_commits(session)
        batch = session.execute(select(Batch.status, Batch.output_through, Batch.api_key_id, Batch.output_file_id,
                                       Batch.error_file_id).where(Batch.id == batch_id)).one_or_none()
        if batch is None or batch.status not in WRITING:
            return 0
        after = batch.output_through
        # The last line queued so far, first: the check queues the file's lines in its order, a chunk a transaction,
        # so every line up to it exists now (a number with no line is a blank line of the file). Read after the
        # look for lines in flight, it could take in a chunk queued in between, whose lines that look never saw —
        # and skip them, written as nothing (each statement reads what is committed when it runs).
        of_batch = select(Job.batch_line).where(Job.batch_id == batch_id)
        # A row's last line: rows hold consecutive lines (`store/batch_rows.py`), and are written whole.
        row_end = select(Job.batch_line + Job.line_count - 1).where(Job.batch_id == batch_id)
        last = session.scalar(row_end.order_by(Job.batch_line.desc()).limit(1)) or 0
        in_flight = session.scalar(of_batch.where(Job.batch_line > after, Job.batch_line <= last,
                                                  Job.status.in_((QUEUED, RUNNING)))
                                   .order_by(Job.batch_line).limit(1))
        until = last if in_flight is None else in_flight - 1
        if until > after + MOST_LINES:  # through the row that holds the MOST_LINES-th line (no row: blank lines)
            until = session.scalar(row_end.where(Job.batch_line > after, Job.batch_line <= after + MOST_LINES)
                                   .order_by(Job.batch_line.desc()).limit(1)) or after + MOST_LINES
        if until - after < max(fewest, 1):
            return 0
        data: dict[str, list[bytes]] = {kind: [] for kind in KINDS}
        for kind, line in _result_lines(session, batch_id, after, until):
            data[kind].append(line)
    fresh = batch.output_file_id is None or batch.error_file_id is None  # these are the batch's first lines
    if fresh:
        ids = {kind: files.new_file_id() for kind in KINDS}
    else:
        ids = {"output": batch.output_file_id, "error": batch.error_file_id}
    with transaction(sessions) as session:
        # The batch's row first (see the module's docstring), and its files' ids with it.
        if not rowcount(session.execute(
                update(Batch).where(Batch.id == batch_id, Batch.output_through == after, Batch.status.in_(WRITING))
                .values(output_through=until, output_file_id=ids["output"], error_file_id=ids["error"],
                        # the lines each file gains: a line for each of the input's lines
                        written_completed=Batch.written_completed + len(data["output"]),
                        written_failed=Batch.written_failed + len(data["error"]))
                .execution_options(synchronize_session=False))):
            return 0
        if fresh:
            _new_files(session, batch.api_key_id, batch_id, ids, now)
        for kind, file_id in ids.items():
            files.append(session, file_id, b"".join(data[kind]))
    return until - after


def publish(session: Session, batch: Batch, now: datetime) -> None:
    """The batch's files shown, in the caller's transaction; made now, empty, when no line was ever written (the
    batch then names them)."""
    if batch.output_file_id is None or batch.error_file_id is None:
        ids = {kind: files.new_file_id() for kind in KINDS}
        _new_files(session, batch.api_key_id, batch.id, ids, now)
        batch.output_file_id, batch.error_file_id = ids["output"], ids["error"]
    files.publish(session, [batch.output_file_id, batch.error_file_id], "batch_output", now)


def discard(session: Session, batch: Batch) -> None:
    """The batch's partial files deleted, and no longer named nor counted, in the caller's transaction (its check
    failed: no line of it shows)."""
    ids = [file_id for file_id in (batch.output_file_id, batch.error_file_id) if file_id is not None]
    if ids:
        files.delete_files(session, ids)
        batch.output_file_id = batch.error_file_id = None
    batch.output_through = batch.written_completed = batch.written_failed = 0


def _new_files(session: Session, api_key_id: str, batch_id: str, ids: dict[str, str], now: datetime) -> None:
    for kind, file_id in ids.items():
        files.new_partial_file(session, file_id=file_id, api_key_id=api_key_id, filename=f"{batch_id}_{kind}.jsonl",
                               now=now)


@functools.cache
def _rows_statement() -> Any:
    """The next CHUNK rows of :batch_id's lines after :after up to :until, by attribute name, in the input's order
    — the JSON ones as their stored text (`store/job_text.py`); built once, run on the session's connection (Core:
    no ORM loading of each row, a fifth of the file's CPU)."""
    table = sa_inspect(Job).columns  # the table's columns by attribute name
    line = table["batch_line"]
    return (select(*public_columns("batch_line"))
            .where(table["batch_id"] == bindparam("batch_id"), line > bindparam("after"), line <= bindparam("until"))
            .order_by(line).limit(CHUNK))


def _result_lines(session: Session, batch_id: str, after: int, until: int) -> Iterator[tuple[str, bytes]]:
    """The output and error files' lines (kind, line) of the input's lines after `after` up to `until` — every one
    of them has ended — CHUNK rows per read, in the input file's order."""
    statement, connection, line = _rows_statement(), session.connection(), after
    while True:
        rows = list(row_dicts(connection.execute(statement, {"batch_id": batch_id, "after": line, "until": until})))
        if not rows:
            return
        for row in rows:
            for public in batch_rows.public_lines(row):
                yield ("output" if public.status == SUCCEEDED else "error"), _result_line(public)
        line = rows[-1]["batch_line"]


def _result_line(line: batch_rows.PublicLine) -> bytes:
    request_id = f"batch_req_{line.job['id']}"
    if line.status == SUCCEEDED:
        body: dict[str, Any] = {"id": request_id, "custom_id": line.custom_id,
                                "response": {"status_code": 200, "body": job_to_public(line.job)}, "error": None}
    else:
        error = line.error or {"code": line.status, "message": f"the line's job {line.status}"}
        body = {"id": request_id, "custom_id": line.custom_id, "response": None,
                "error": {"code": error.get("code"), "message": error.get("message")}}
    # Python's json where orjson refuses (an integer beyond 64 bits in a line's metadata): `core/json_text.py`.
    return json_text(body).encode() + b"\n"
