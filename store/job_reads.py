"""Reads of the jobs table for the API's routes: one key's job, one key's jobs a page at a time, and the jobs in
flight across keys (the metrics). The writes, and the reads the worker and `beat` make, are `store/jobs.py`'s."""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, and_, bindparam, func, select, tuple_
from sqlalchemy.orm import Session

from contract.job_json import job_to_public
from core.json_text import json_text
from models.db import each_statement_commits, row_dicts
from models.tables import (
    CANCELLING,
    EVAL_CANCELED,
    EVAL_QUEUED,
    IN_PROGRESS,
    INTERACTIVE,
    INTERACTIVE_PRIORITY,
    QUEUED,
    RUNNING,
    VALIDATING,
    Batch,
    Evaluation,
    Job,
)
from store import batch_rows
from store.job_text import embed_json, public_columns


def own_job(session: Session, api_key_id: str, job_id: str) -> Job | None:
    """The key's job (not a row of a batch's lines); another key's is as absent as a missing one."""
    return session.scalars(select(Job).where(Job.id == job_id, Job.api_key_id == api_key_id,
                                             Job.batch_id.is_(None))).one_or_none()


def own_job_json(engine: Engine, api_key_id: str, job_id: str) -> bytes | None:
    """The key's job as its public JSON (`job_to_public`), or None (another key's is as absent as a missing one):
    what a client's poll reads — one statement on a connection of its own (on SQLite outside any transaction: no
    BEGIN and ROLLBACK around it), no ORM session or object, the stored JSON embedded as it is
    (`store/job_text.py`). The ORM's read and Flask's JSON made a poll cost more of the API's CPU than a
    submission (BENCHMARKS.md, session 27)."""
    with engine.connect() as connection:
        each_statement_commits(connection)
        rows = row_dicts(connection.execute(_own_job_statement(), {"job_id": job_id, "api_key_id": api_key_id}))
        row = next(rows, None)
    return None if row is None else orjson.dumps(job_to_public(embed_json(row)))


def own_line_json(engine: Engine, api_key_id: str, line_id: str) -> bytes | None:
    """The key's batch line (`store.batch_rows.line_id`) as its public JSON — its output line's `response.body` —
    or None, as `own_job_json`."""
    parsed = batch_rows.parse_line_id(line_id)
    if parsed is None:
        return None
    row_id, index = parsed
    with engine.connect() as connection:
        each_statement_commits(connection)
        row = next(row_dicts(connection.execute(_own_row_statement(), {"row_id": row_id, "api_key_id": api_key_id})),
                   None)
    if row is None or index >= row["line_count"]:
        return None
    line = next(itertools.islice(batch_rows.public_lines(row), index, None))
    return json_text(job_to_public(line.job)).encode()


@functools.cache
def _own_job_statement() -> Any:
    """A job by its id — not a row of a batch's lines, whose lines are its jobs (`own_line_json`)."""
    return select(*public_columns()).where(Job.id == bindparam("job_id"), Job.api_key_id == bindparam("api_key_id"),
                                           Job.batch_id.is_(None))


@functools.cache
def _own_row_statement() -> Any:
    return select(*public_columns("batch_line", "line_count")).where(
        Job.id == bindparam("row_id"), Job.api_key_id == bindparam("api_key_id"), Job.batch_id.is_not(None))



def list_jobs(session: Session, api_key_id: str, *, status: str | None, task: str | None, limit: int,
              before: tuple[datetime, str] | None) -> list[Job]:
    """Up to `limit` of the key's jobs, newest first, older than `before` (created_at, id) when given. A batch's
    lines and an evaluation's examples are not listed (their output files hold them)."""
    query = select(Job).where(Job.api_key_id == api_key_id, Job.priority == INTERACTIVE_PRIORITY)
    if status is not None:
        query = query.where(Job.status == status)
    if task is not None:
        query = query.where(Job.task == task)
    if before is not None:
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(*before))
    return list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))


def in_flight_counts(session: Session) -> dict[tuple[str, str], int]:
    """Jobs queued or running, by (task, status), across all keys: a row of a batch's lines counts as its lines."""
    rows = session.execute(
        select(Job.task, Job.status, func.sum(Job.line_count)).where(Job.status.in_((QUEUED, RUNNING)))
        .group_by(Job.task, Job.status)
    ).all()
    return {(task, status): count for task, status, count in rows}


def key_activity(session: Session, api_key_id: str, since: datetime) -> tuple[int, int, int]:
    """The key's jobs queued and running now (batch and evaluation lines included), and those finished since
    `since` — counted among the jobs created in the hour before it, so that the count walks the key's recent jobs
    (the (api_key_id, created_at) index), not all of them. Those in flight are counted where their index holds
    them: the interactive ones among the key's (`models.tables.INTERACTIVE`), a file's lines in each of the key's
    batches and evaluations that may still run some."""
    whose = [and_(Job.api_key_id == api_key_id, INTERACTIVE)]
    whose += [Job.batch_id == batch_id for batch_id in session.scalars(
        select(Batch.id).where(Batch.status.in_((VALIDATING, IN_PROGRESS, CANCELLING)),
                               Batch.api_key_id == api_key_id))]
    whose += [Job.evaluation_id == evaluation_id for evaluation_id in session.scalars(
        select(Evaluation.id).where(Evaluation.status.in_((EVAL_QUEUED, EVAL_CANCELED)),
                                    Evaluation.completed_at.is_(None), Evaluation.api_key_id == api_key_id))]
    by_status: Counter[str] = Counter()
    for which in whose:
        by_status.update(dict(session.execute(select(Job.status, func.sum(Job.line_count))
                                              .where(which, Job.status.in_((QUEUED, RUNNING)))
                                              .group_by(Job.status)).all()))
    finished = session.scalar(select(func.sum(Job.line_count)).where(
        Job.api_key_id == api_key_id, Job.created_at >= since - timedelta(hours=1), Job.completed_at >= since,
        Job.status.not_in((QUEUED, RUNNING))))
    return by_status[QUEUED], by_status[RUNNING], int(finished or 0)
