"""The batch store: a batch's row, its lines as jobs (written by the job store), its progress counted from those
jobs, and its end — the output and error files written once no line is queued or running.

    begin: validating (the API checks its file, a chunk at a time);
    a chunk checked: its lines queued at once, in one transaction with the check's progress (`checked_at`), so
      that they run while the rest of the file is checked — only while the batch is still validating;
    start: validating → in_progress (the whole file passed);
    fail the check: validating → failed, every line deleted, run or not, in one transaction: a file with a bad
      line runs whole or not at all, as far as anyone can see — no output, no count, no job;
    abandoned (beat): validating with no progress for `check_lease_s` (its API process died) → failed, the same way;
    cancel: in_progress → cancelling (queued lines canceled; running ones finish);
    finalize (beat): in_progress → finalizing → completed, cancelling → cancelled, once no line is in flight; the
      output and error files, written as the lines ended (`store/batch_output.py`), shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.clock import unix_seconds
from models.db import each_statement_commits, rowcount, transaction
from models.tables import (
    BATCH_FAILED,
    CANCELED,
    CANCELLED,
    CANCELLING,
    COMPLETED,
    FAILED,
    FINALIZING,
    IN_PROGRESS,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    VALIDATING,
    Batch,
    Job,
)
from store import batch_output
from store.jobs import add_file_lines, cancel_batch_lines, delete_batch_lines
from store.owned import newest_first, own
from webhooks import record_batch_event


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex}"


def begin_batch(session: Session, *, batch_id: str, api_key_id: str, input_file_id: str, endpoint: str | None,
                completion_window: str, webhook: str | None, metadata: dict[str, Any] | None, now: datetime) -> Batch:
    """A batch whose file is being checked (validating), no line yet. Commits."""
    batch = Batch(id=batch_id, api_key_id=api_key_id, input_file_id=input_file_id, endpoint=endpoint,
                  completion_window=completion_window, status=VALIDATING, total=0, webhook=webhook, meta=metadata,
                  created_at=now, checked_at=now, output_through=0, written_completed=0, written_failed=0)
    session.add(batch)
    session.commit()
    return batch


def add_checked_lines(sessions: sessionmaker[Session], batch_id: str, lines: Iterable[dict[str, Any]],
                      checked: int | None, now: datetime) -> bool:
    """The check's progress — `checked` lines so far (None: not known here, as in a check process, which sees one
    chunk), and `lines` (job rows of `store.batch_rows.rows`, maybe none) queued — in one transaction, while the
    batch is still validating; False, adding nothing, once it is not (failed: a bad line, or beat found it
    abandoned)."""
    progress: dict[str, Any] = {"checked_at": now} if checked is None else {"checked_at": now, "total": checked}
    with transaction(sessions) as session:
        if not rowcount(session.execute(
                update(Batch).where(Batch.id == batch_id, Batch.status == VALIDATING)
                .values(**progress).execution_options(synchronize_session=False))):
            return False
        add_file_lines(session, lines)
    return True


def start_batch(session: Session, batch_id: str, total: int, now: datetime) -> bool:
    """validating → in_progress, its `total` lines all queued (and maybe run) by the check. Commits; whether it
    moved (not when beat failed it as abandoned)."""
    moved = rowcount(session.execute(
        update(Batch).where(Batch.id == batch_id, Batch.status == VALIDATING)
        .values(status=IN_PROGRESS, total=total, in_progress_at=now).execution_options(synchronize_session=False)))
    session.commit()
    return bool(moved)


def fail_check(sessions: sessionmaker[Session], batch_id: str, errors: list[dict[str, Any]], now: datetime,
               total: int | None = None) -> bool:
    """validating → failed with `errors` (and `total` lines, when given), and every line the check queued deleted,
    whether it ran or not (a worker's write-back to one then finds no row and keeps nothing), with what beat wrote of
    their output, in one transaction; whether it moved."""
    values: dict[str, Any] = {"status": BATCH_FAILED, "errors": {"object": "list", "data": errors}, "failed_at": now}
    if total is not None:
        values["total"] = total
    with transaction(sessions) as session:
        moved = rowcount(session.execute(update(Batch).where(Batch.id == batch_id, Batch.status == VALIDATING)
                                         .values(**values).execution_options(synchronize_session=False)))
        if moved:
            delete_batch_lines(session, batch_id)
            batch_output.discard(session, session.get_one(Batch, batch_id))
    return bool(moved)


def abandoned_checks(sessions: sessionmaker[Session], stalled_since: datetime, limit: int) -> list[str]:
    """Batches still validating whose check has not moved since `stalled_since`: their API process stopped."""
    with sessions() as session:
        each_statement_commits(session)
        return list(session.scalars(select(Batch.id).where(Batch.status == VALIDATING,
                                                           Batch.checked_at < stalled_since)
                                    .order_by(Batch.created_at).limit(limit)))


def own_batch(session: Session, api_key_id: str, batch_id: str) -> Batch | None:
    return own(session, Batch, api_key_id, batch_id)


def list_batches(session: Session, api_key_id: str, limit: int, after: str | None) -> list[Batch]:
    """The key's batches, newest first; `after`: the id the previous page ended with."""
    return newest_first(session, Batch, api_key_id, limit, after)


def request_counts(session: Session, batch: Batch) -> dict[str, int]:
    """total, completed (succeeded) and failed (failed or canceled) lines: those the batch's files hold, as beat
    counted them when it wrote them (`Batch.written_completed`, `written_failed`), and those ended beyond them,
    counted from their rows — a poll of a batch reads the lines ended since its files were last written, not every
    line it ever ran (a 10,000-line batch half done: 0.53 → 0.16 ms a poll on SQLite, 2.05 → 0.29 on PostgreSQL; at
    50,000 lines, SQLite's 2.68 → 0.16: BENCHMARKS.md, session 28). Both parts come from `batch` as read: the lines
    beat writes meanwhile are counted once, beyond it."""
    ended = {status: (lines, failed) for status, lines, failed in session.execute(
        select(Job.status, func.sum(Job.line_count), func.sum(Job.failed_lines))
        .where(Job.batch_id == batch.id, Job.batch_line > batch.output_through,
               Job.status.in_((SUCCEEDED, FAILED, CANCELED)))
        .group_by(Job.status))}
    # A row that succeeded may hold lines that failed (`store/batch_rows.py`); one failed or cancelled, no other.
    lines, failed_of_those = ended.get(SUCCEEDED, (0, 0))
    failed = failed_of_those + sum(ended.get(status, (0, 0))[0] for status in (FAILED, CANCELED))
    return {"total": batch.total, "completed": batch.written_completed + lines - failed_of_those,
            "failed": batch.written_failed + failed}


def batch_to_public(batch: Batch, counts: dict[str, int]) -> dict[str, Any]:
    """The batch as the OpenAI Batch API shows one (times in Unix seconds); its files once it has ended (before, they
    are partial: `store/batch_output.py`)."""
    ended = batch.status in (COMPLETED, CANCELLED)
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "errors": batch.errors,
        "input_file_id": batch.input_file_id, "completion_window": batch.completion_window, "status": batch.status,
        "output_file_id": batch.output_file_id if ended else None,
        "error_file_id": batch.error_file_id if ended else None,
        "created_at": unix_seconds(batch.created_at), "in_progress_at": unix_seconds(batch.in_progress_at),
        "expires_at": None, "finalizing_at": unix_seconds(batch.finalizing_at),
        "completed_at": unix_seconds(batch.completed_at), "failed_at": unix_seconds(batch.failed_at),
        "expired_at": None,
        "cancelling_at": unix_seconds(batch.cancelling_at), "cancelled_at": unix_seconds(batch.cancelled_at),
        "request_counts": counts, "metadata": batch.meta,
    }


def cancel_batch(session: Session, batch: Batch, now: datetime) -> bool:
    """in_progress → cancelling, its queued lines canceled (running ones finish; beat then finalizes it as
    cancelled). Any other status stays as it is. Commits; whether it moved."""
    moved = rowcount(session.execute(update(Batch).where(Batch.id == batch.id, Batch.status == IN_PROGRESS)
                                     .values(status=CANCELLING, cancelling_at=now)
                                     .execution_options(synchronize_session=False)))
    if moved:
        cancel_batch_lines(session, batch.id, now)
    session.commit()
    session.refresh(batch)
    return bool(moved)


def running_batches(sessions: sessionmaker[Session], limit: int) -> list[str]:
    """Batches whose lines may be running: validating, in progress or cancelling. A read alone."""
    with sessions() as session:
        each_statement_commits(session)
        return list(session.scalars(select(Batch.id).where(Batch.status.in_((VALIDATING, IN_PROGRESS, CANCELLING)))
                                    .order_by(Batch.created_at).limit(limit)))


def due_for_finalizing(sessions: sessionmaker[Session], limit: int) -> list[str]:
    """Batches in progress or cancelling with no line queued or running, and those finalizing (a beat stopped
    while it wrote their files). A read alone: on SQLite it takes no write lock."""
    in_flight = exists().where(Job.batch_id == Batch.id, Job.status.in_((QUEUED, RUNNING)))
    due = select(Batch.id).where(Batch.status.in_((IN_PROGRESS, CANCELLING, FINALIZING)), ~in_flight)
    with sessions() as session:
        each_statement_commits(session)
        return list(session.scalars(due.order_by(Batch.created_at).limit(limit)))


def finalize(sessions: sessionmaker[Session], batch_id: str, clock: Any) -> list[str]:
    """Writes what is left of the batch's output and error files (`store/batch_output.py`: beat wrote the rest as
    the lines ended), then shows them and marks the batch completed (or cancelled), in one transaction that moves it
    only once every line is in its files — a beat stopped halfway leaves the batch finalizing, and the next sweep
    goes on from where the files end. Returns the webhook events recorded."""
    with transaction(sessions) as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.status not in (IN_PROGRESS, CANCELLING, FINALIZING):
            return []
        if batch.status == IN_PROGRESS:
            batch.status, batch.finalizing_at = FINALIZING, clock()
        cancelling = batch.status == CANCELLING
    while batch_output.write_ready(sessions, batch_id, clock(), fewest=1):
        pass
    # The last row's last line (rows hold consecutive lines, in order): one step down the index of its lines.
    last_line = func.coalesce(select(Job.batch_line + Job.line_count - 1).where(Job.batch_id == batch_id)
                              .order_by(Job.batch_line.desc()).limit(1).scalar_subquery(), 0)
    with transaction(sessions) as session:
        now = clock()
        finished = {"status": CANCELLED, "cancelled_at": now} if cancelling else {"status": COMPLETED,
                                                                                  "completed_at": now}
        if not rowcount(session.execute(
                update(Batch).where(Batch.id == batch_id, Batch.status.in_((FINALIZING, CANCELLING)),
                                    Batch.output_through >= last_line)
                .values(**finished).execution_options(synchronize_session=False))):
            return []
        batch = session.get_one(Batch, batch_id)
        batch_output.publish(session, batch, now)
        session.flush()
        event = record_batch_event(session, batch, batch_to_public(batch, request_counts(session, batch)), now)
        return [event] if event else []
