"""The evaluation store: an evaluation's examples are jobs of the evaluation (`store.jobs.evaluation_example`, at the
files' lower priority); its progress is counted from them, and its end — metrics and the output file of scored
lines — computed from them once none is queued or running. Every example's job is written back once (the job
store's compare-and-set), and the scores are computed from the rows at the end, so a worker killed mid-evaluation
loses no example and scores none twice.

    create: queued (every example a queued job, one transaction) | failed (a bad line: no job at all);
    cancel: queued → canceled (queued examples canceled; running ones finish);
    finalize (beat): once no example is in flight, the metrics and the output file; queued → succeeded (failed
    when every example failed), canceled stays canceled; `completed_at` marks the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.clock import unix_seconds
from core.json_text import json_text
from evaluations import Totals, score
from models.db import each_statement_commits, rowcount, transaction
from models.tables import (
    CANCELED,
    EVAL_CANCELED,
    EVAL_FAILED,
    EVAL_QUEUED,
    EVAL_SUCCEEDED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Evaluation,
    Job,
)
from store.files import write_file
from store.jobs import add_file_lines, cancel_evaluation_examples
from store.owned import newest_first, own
from webhooks import record_evaluation_event

#: Job rows read per query while the output is written.
CHUNK = 500


def new_evaluation_id() -> str:
    return f"eval_{uuid.uuid4().hex}"


def create_evaluation(session: Session, *, examples: Iterator[dict[str, Any]], **fields: Any) -> Evaluation:
    """A queued evaluation whose examples (job rows of `store.jobs.evaluation_example`) are queued, in one
    transaction: an evaluation runs whole or not at all. `fields`: the Evaluation's columns. Commits."""
    evaluation = Evaluation(status=EVAL_QUEUED, total=0, **fields)
    session.add(evaluation)
    session.flush()
    evaluation.total = add_file_lines(session, examples)
    session.commit()
    return evaluation


def failed_evaluation(session: Session, *, error: dict[str, Any], **fields: Any) -> Evaluation:
    """An evaluation whose file failed validation: no example runs. Commits."""
    evaluation = Evaluation(status=EVAL_FAILED, total=0, error=error, completed_at=fields["created_at"],
                            final_counts={}, **fields)
    session.add(evaluation)
    session.commit()
    return evaluation


def own_evaluation(session: Session, api_key_id: str, evaluation_id: str) -> Evaluation | None:
    return own(session, Evaluation, api_key_id, evaluation_id)


def list_evaluations(session: Session, api_key_id: str, limit: int, after: str | None) -> list[Evaluation]:
    """The key's evaluations, newest first; `after`: the id the previous page ended with."""
    return newest_first(session, Evaluation, api_key_id, limit, after)


def counts(session: Session, evaluation: Evaluation) -> dict[str, int]:
    """By status of the examples' jobs: {status: count} — counted while it runs, as stored once it has ended."""
    if evaluation.final_counts is not None:
        return dict(evaluation.final_counts)
    return _counted(session, evaluation.id)


def _counted(session: Session, evaluation_id: str) -> dict[str, int]:
    return dict(session.execute(select(Job.status, func.count()).where(Job.evaluation_id == evaluation_id)
                                .group_by(Job.status)).all())


def evaluation_to_public(evaluation: Evaluation, by_status: dict[str, int]) -> dict[str, Any]:
    """The evaluation as GET /v1/evaluations/{id} shows it (times in Unix seconds, as for batches). A queued
    evaluation shows `running` once a worker has started on an example."""
    status = evaluation.status
    if status == EVAL_QUEUED and any(by_status.get(s, 0) for s in (RUNNING, SUCCEEDED, FAILED, CANCELED)):
        status = "running"
    return {
        "id": evaluation.id, "object": "evaluation", "task": evaluation.task, "model": evaluation.model,
        "input_file_id": evaluation.input_file_id, "status": status,
        "result_counts": {"total": evaluation.total,
                          "done": by_status.get(SUCCEEDED, 0) + by_status.get(FAILED, 0) + by_status.get(CANCELED, 0),
                          "failed": by_status.get(FAILED, 0) + by_status.get(CANCELED, 0)},
        "metrics": evaluation.metrics, "metric_names": evaluation.metric_names, "config": evaluation.config,
        "output_file_id": evaluation.output_file_id, "error": evaluation.error,
        "created_at": unix_seconds(evaluation.created_at), "canceled_at": unix_seconds(evaluation.canceled_at),
        "completed_at": unix_seconds(evaluation.completed_at), "metadata": evaluation.meta,
    }


def cancel_evaluation(session: Session, evaluation: Evaluation, now: datetime) -> bool:
    """queued → canceled, its queued examples canceled (running ones finish; beat then writes the metrics of what
    ran). Any other status stays as it is. Commits; whether it moved."""
    moved = rowcount(session.execute(update(Evaluation)
                                     .where(Evaluation.id == evaluation.id, Evaluation.status == EVAL_QUEUED)
                                     .values(status=EVAL_CANCELED, canceled_at=now)
                                     .execution_options(synchronize_session=False)))
    if moved:
        cancel_evaluation_examples(session, evaluation.id, now)
    session.commit()
    session.refresh(evaluation)
    return bool(moved)


def due_for_finalizing(sessions: sessionmaker[Session], limit: int) -> list[str]:
    """Evaluations not yet ended (queued or canceled, no `completed_at`) with no example queued or running. A read
    alone: on SQLite it takes no write lock."""
    in_flight = exists().where(Job.evaluation_id == Evaluation.id, Job.status.in_((QUEUED, RUNNING)))
    due = select(Evaluation.id).where(Evaluation.status.in_((EVAL_QUEUED, EVAL_CANCELED)),
                                      Evaluation.completed_at.is_(None), ~in_flight)
    with sessions() as session:
        each_statement_commits(session)
        return list(session.scalars(due.order_by(Evaluation.created_at).limit(limit)))


def finalize(sessions: sessionmaker[Session], evaluation_id: str, clock: Any) -> list[str]:
    """Scores every example from its job, writes the output file (a scored line per example, in the file's
    order) and the metrics, and ends the evaluation. The file is written in its own transaction first and the
    evaluation names it in the last one, so a beat stopped halfway leaves only a file nothing names; the next
    sweep scores again from the same rows. Returns the webhook events recorded."""
    with sessions() as session:
        evaluation = session.get(Evaluation, evaluation_id)
        if evaluation is None or evaluation.completed_at is not None:
            return []
        key, task, names = evaluation.api_key_id, evaluation.task, list(evaluation.metric_names)
    totals = Totals()
    with transaction(sessions) as session:  # reads the jobs in the transaction that writes (SQLite: one writer)
        file = write_file(session, api_key_id=key, purpose="evaluation_output",
                          filename=f"{evaluation_id}_output.jsonl",
                          parts=_scored_lines(session, evaluation_id, task, totals), max_bytes=None, now=clock())
        file_id = file.id
    with transaction(sessions) as session:
        now = clock()
        evaluation = session.get(Evaluation, evaluation_id)
        if evaluation is None or evaluation.completed_at is not None:
            return []
        status = evaluation.status
        if status == EVAL_QUEUED:
            status = EVAL_FAILED if totals.failed == evaluation.total else EVAL_SUCCEEDED
        error = ({"code": "every_example_failed", "message": "no example of the file could be run; see the output "
                                                            "file's errors"} if status == EVAL_FAILED else None)
        # No example is in flight (`due_for_finalizing`): these counts are final.
        moved = rowcount(session.execute(
            update(Evaluation).where(Evaluation.id == evaluation_id, Evaluation.completed_at.is_(None))
            .values(status=status, metrics=totals.metrics(names), output_file_id=file_id, completed_at=now,
                    error=error, final_counts=_counted(session, evaluation_id))
            .execution_options(synchronize_session=False)))
        if not moved:
            return []
        session.refresh(evaluation)
        event = record_evaluation_event(session, evaluation, evaluation_to_public(evaluation,
                                                                                  counts(session, evaluation)), now)
        return [event] if event else []


def _scored_lines(session: Session, evaluation_id: str, task: str, totals: Totals) -> Iterator[bytes]:
    """The output file's lines, CHUNK jobs per read, in the input file's order, each added to `totals`."""
    line = 0
    while True:
        jobs = list(session.scalars(select(Job).where(Job.evaluation_id == evaluation_id, Job.batch_line > line)
                                    .order_by(Job.batch_line).limit(CHUNK)))
        if not jobs:
            return
        out = []
        for job in jobs:
            scored = score(task, job.batch_line or 0, job.input, job.meta, job.output, job.error)
            totals.add(scored)
            out.append(json_text(scored).encode("utf-8") + b"\n")
            session.expunge(job)  # written out: the session need not hold a whole evaluation
        yield b"".join(out)
        line = jobs[-1].batch_line or 0
