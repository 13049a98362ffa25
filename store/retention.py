"""Retention: what has outlived `DISTILQ_RETENTION_S` is deleted, by beat, a bounded amount a sweep.

- An interactive job, once it has ended, that long after it was created — with its webhook events and their attempts.
- A batch or an evaluation that long after it ended — with its lines (their job rows), its events, and its output and
  error files.
- An uploaded file that long after it was uploaded. One that a batch or an evaluation still names as its input (a
  foreign key) loses its bytes and is marked deleted, as `DELETE /v1/files/{id}` leaves one; its row goes once
  nothing names it, as does the row of a file deleted by hand. An output file goes with its batch or evaluation.

What is queued or running stays, however old — a batch that runs for longer keeps its lines, a job its row — and so
does what has a webhook event still to deliver, until it is delivered or given up. Each step deletes in transactions
of at most CHUNK of what it reads, so that a writer (SQLite has one) is never held up for long, and goes on while
there is more and the sweep's time allows.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from core.tasks import TASKS
from models.db import transaction
from models.tables import (
    BATCH_FAILED,
    CANCELLED,
    COMPLETED,
    INTERACTIVE_PRIORITY,
    PENDING,
    TERMINAL_STATUSES,
    Batch,
    Evaluation,
    File,
    Job,
    WebhookEvent,
)
from store import files
from webhooks import delete_events

#: Rows read, and deleted, a transaction (jobs, a batch's lines, files): on SQLite 7–22 ms of the one writer's lock,
#: 10,000 jobs a second of sweeps; on PostgreSQL 10–11 ms, 13,000 a second (`python -m bench.retention`).
CHUNK = 200
#: The most time one sweep spends deleting, in seconds: the rest waits for the next sweep.
SWEEP_BUDGET_S = 1.0


def delete_expired(sessions: sessionmaker[Session], now: datetime, retention: timedelta) -> dict[str, int]:
    """Deletes what has outlived `retention` (made, or ended, before `now` less it) as far as SWEEP_BUDGET_S allows;
    how many of each kind went."""
    cutoff, deadline = now - retention, time.monotonic() + SWEEP_BUDGET_S
    counts = {"jobs_expired": 0, "batches_expired": 0, "evaluations_expired": 0, "files_expired": 0}
    steps = (("jobs_expired", _jobs), ("batches_expired", _batch), ("evaluations_expired", _evaluation),
             ("files_expired", _files))
    for name, step in steps:
        more = True
        while more and time.monotonic() < deadline:
            with transaction(sessions) as session:
                done, more = step(session, cutoff, now)
            counts[name] += done
    return counts


def _sending(about: Any) -> Any:
    """Whether an event `about` selects is still to be delivered: what it is about waits for it (the sender
    records each attempt under its event)."""
    return exists().where(about, WebhookEvent.status == PENDING)


def _jobs(session: Session, cutoff: datetime, now: datetime) -> tuple[int, bool]:
    """A chunk of ended interactive jobs made before `cutoff`, with their events: (how many, whether there may be
    more). The statuses, tasks and priority named make the read a few ranges of
    `ix_jobs_status_task_priority_created`, not a scan of the table."""
    ids = list(session.scalars(select(Job.id).where(
        Job.status.in_(TERMINAL_STATUSES), Job.task.in_(TASKS), Job.priority == INTERACTIVE_PRIORITY,
        Job.created_at < cutoff, ~_sending(WebhookEvent.job_id == Job.id)).limit(CHUNK)))
    if ids:
        delete_events(session, WebhookEvent.job_id.in_(ids))
        session.execute(delete(Job).where(Job.id.in_(ids)))
    return len(ids), len(ids) == CHUNK


def _batch(session: Session, cutoff: datetime, now: datetime) -> tuple[int, bool]:
    ended = func.coalesce(Batch.completed_at, Batch.failed_at, Batch.cancelled_at)
    return _group(session, Batch, (Batch.status.in_((COMPLETED, BATCH_FAILED, CANCELLED)), ended < cutoff),
                  Job.batch_id, WebhookEvent.batch_id, (Batch.output_file_id, Batch.error_file_id))


def _evaluation(session: Session, cutoff: datetime, now: datetime) -> tuple[int, bool]:
    return _group(session, Evaluation, (Evaluation.completed_at < cutoff,), Job.evaluation_id,
                  WebhookEvent.evaluation_id, (Evaluation.output_file_id,))


def _group(session: Session, model: type[Batch] | type[Evaluation], ended: tuple[Any, ...], jobs_of: Any,
           events_of: Any, outputs: tuple[Any, ...]) -> tuple[int, bool]:
    """A chunk of the job rows of a batch or an evaluation (`model`) that has `ended`, or, once none is left, it with
    its event and its output files: (how many went, whether there may be more). A batch of 50,000 lines goes in many
    transactions, not in one that holds SQLite's writer for a second. `jobs_of` and `events_of`: the columns naming
    it."""
    found = session.execute(select(model.id, *outputs).where(*ended, ~_sending(events_of == model.id))
                            .limit(1)).first()
    if found is None:
        return 0, False
    group_id, *written = found
    rows = list(session.scalars(select(Job.id).where(jobs_of == group_id).limit(CHUNK)))
    if rows:
        session.execute(delete(Job).where(Job.id.in_(rows)))
        return 0, True
    delete_events(session, events_of == group_id)
    session.execute(delete(model).where(model.id == group_id))
    files.delete_files(session, [file_id for file_id in written if file_id])
    return 1, True


def _files(session: Session, cutoff: datetime, now: datetime) -> tuple[int, bool]:
    """A chunk of uploads made before `cutoff`, or deleted by hand: the rows nothing names go, the bytes of those a
    batch or an evaluation names as its input go and their rows are marked. (How many, whether there may be more.)
    Output files are not this step's: they go with their batch or evaluation (`_group`), which shows them until it
    goes — one kept for its webhook event still names them."""
    named = or_(exists().where(Batch.input_file_id == File.id), exists().where(Evaluation.input_file_id == File.id))
    due = (File.purpose.in_(files.UPLOAD_PURPOSES), or_(File.created_at < cutoff, File.deleted_at.is_not(None)))
    unnamed = list(session.scalars(select(File.id).where(*due, ~named).limit(CHUNK)))
    if unnamed:
        files.delete_files(session, unnamed)
    # Those still named: the bytes only, once (a marked file is not read again).
    marked = list(session.scalars(select(File.id).where(*due, File.deleted_at.is_(None), named)
                                  .limit(CHUNK - len(unnamed))))
    if marked:
        files.delete_bytes(session, marked, now)
    done = len(unnamed) + len(marked)
    return done, done == CHUNK
