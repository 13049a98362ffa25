"""A worker's hold on jobs, all by compare-and-set on the job row: claim `queued → running` (attempt + 1,
lease), renew the lease while the batch runs, and write the outcome only while the claim still holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from models.db import rowcount, transaction
from models.tables import EVENT_COMPLETED, EVENT_STARTED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job
from models.webhook_outbox import record_event


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    task: str
    input: dict[str, Any]
    parameters: dict[str, Any]
    created_at: datetime
    claimed_at: datetime
    n_inputs: int
    webhook: str | None = None


@dataclass(frozen=True)
class Outcome:
    claim: Claim
    output: list[Any] | None = None
    error: dict[str, str] | None = None


_RETURNING = (Job.id, Job.attempts, Job.task, Job.input, Job.parameters, Job.created_at, Job.n_inputs, Job.webhook)

#: What a claim or a write-back hands on: the claims or written jobs, and the webhook events it recorded.
Events = list[str]


def _claim_where(session: Session, condition: Any, now: datetime, lease_s: int) -> tuple[list[Claim], Events]:
    rows = session.execute(
        update(Job)
        .where(condition, Job.status == QUEUED)
        .values(
            status=RUNNING,
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            lease_until=now + timedelta(seconds=lease_s),
        )
        .returning(*_RETURNING)
        .execution_options(synchronize_session=False)
    ).all()
    claims = [Claim(r[0], r[1], r[2], r[3], r[4], r[5], now, r[6], r[7]) for r in rows]
    # `job.started` once per job: a retry after a lost worker is not a new start.
    events = [record_event(session, c.job_id, EVENT_STARTED, now) for c in claims if c.webhook and c.attempt == 1]
    return claims, [e for e in events if e]


def claim_job(
    sessions: sessionmaker[Session], job_id: str, now: datetime, lease_s: int
) -> tuple[Claim | None, Events]:
    """Claims one job if it is still queued; a duplicate or late message claims nothing."""
    with transaction(sessions) as session:
        claims, events = _claim_where(session, Job.id == job_id, now, lease_s)
    return (claims[0] if claims else None), events


def claim_more(
    sessions: sessionmaker[Session], task: str, max_inputs: int, now: datetime, lease_s: int
) -> tuple[list[Claim], Events]:
    """Claims the oldest queued jobs of `task` whose inputs fit in `max_inputs`. On PostgreSQL the candidate rows
    are locked with SKIP LOCKED so that workers claiming at once take disjoint jobs; SQLite serialises writers."""
    if max_inputs <= 0:
        return [], []
    with transaction(sessions) as session:
        candidates = session.execute(
            select(Job.id, Job.n_inputs)
            .where(Job.status == QUEUED, Job.task == task)
            .order_by(Job.created_at)
            .limit(max_inputs)
            .with_for_update(skip_locked=True)
        ).all()
        chosen, budget = [], max_inputs
        for job_id, n_inputs in candidates:
            if n_inputs > budget:
                break
            chosen.append(job_id)
            budget -= n_inputs
        if not chosen:
            return [], []
        return _claim_where(session, Job.id.in_(chosen), now, lease_s)


def renew_leases(sessions: sessionmaker[Session], claims: list[Claim], now: datetime, lease_s: int) -> int:
    with transaction(sessions) as session:
        return rowcount(
            session.execute(
                update(Job)
                .where(tuple_(Job.id, Job.attempts).in_([(c.job_id, c.attempt) for c in claims]),
                       Job.status == RUNNING)
                .values(lease_until=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False)
            )
        )


def finish(
    sessions: sessionmaker[Session], outcomes: list[Outcome], now: datetime, batch_size: int, inference_ms: float
) -> tuple[list[tuple[str, str]], Events]:
    """Writes every outcome in one transaction; returns (job id, status) of those whose claim still held (a job
    canceled or handed to another worker meanwhile keeps what it has), and their `job.completed` events."""
    written: list[tuple[str, str]] = []
    events: Events = []
    with transaction(sessions) as session:
        for outcome in outcomes:
            claim = outcome.claim
            status = FAILED if outcome.error is not None else SUCCEEDED
            changed = rowcount(
                session.execute(
                    update(Job)
                    .where(Job.id == claim.job_id, Job.status == RUNNING, Job.attempts == claim.attempt)
                    .values(
                        status=status,
                        output=outcome.output,
                        error=outcome.error,
                        completed_at=now,
                        lease_until=None,
                        queue_ms=(claim.claimed_at - claim.created_at).total_seconds() * 1000,
                        inference_ms=inference_ms,
                        batch_size=batch_size,
                    )
                    .execution_options(synchronize_session=False)
                )
            )
            if changed:
                written.append((claim.job_id, status))
                event = record_event(session, claim.job_id, EVENT_COMPLETED, now) if claim.webhook else None
                if event:
                    events.append(event)
    return written, events
