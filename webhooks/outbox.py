"""Recording job, batch and evaluation events for webhooks, inside the transaction that changes the status (an
outbox: the event exists exactly when the status change does)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.job_json import job_to_public
from core.clock import isoformat
from core.json_text import json_text
from models.tables import (
    EVENT_BATCH_COMPLETED,
    EVENT_EVALUATION_COMPLETED,
    EVENT_FOR_FILTER,
    PENDING,
    Batch,
    Evaluation,
    Job,
    WebhookEvent,
)


def record_event(session: Session, job_id: str, event_type: str, now: datetime) -> str | None:
    """Adds the event for `job_id` if the job has a webhook that wants it; returns the event id (the
    `webhook-id` of every attempt) or None. The body holds the job as GET /v1/jobs/{id} shows it now."""
    job = session.execute(select(Job).where(Job.id == job_id).execution_options(populate_existing=True)).scalar_one()
    wanted = {EVENT_FOR_FILTER[name] for name in job.webhook_events_filter}
    if job.webhook is None or event_type not in wanted:
        return None
    event_id = f"msg_{uuid.uuid4().hex}"
    payload = json_text({"type": event_type, "timestamp": isoformat(now), "data": job_to_public(job)})
    session.add(WebhookEvent(id=event_id, job_id=job.id, api_key_id=job.api_key_id, type=event_type,
                             url=job.webhook, payload=payload, status=PENDING, attempts=0, next_attempt_at=now,
                             # The caller puts it on the queue once the transaction commits; should that be lost,
                             # `beat` puts it there again after the republish window.
                             published_at=now, created_at=now))
    return event_id


def record_batch_event(session: Session, batch: Batch, public: dict[str, Any], now: datetime) -> str | None:
    """Adds `batch.completed` for a batch with a webhook (`public`: the batch as GET /v1/batches/{id} shows it);
    returns the event id or None."""
    return _record_end(session, EVENT_BATCH_COMPLETED, batch, public, now, batch_id=batch.id)


def record_evaluation_event(session: Session, evaluation: Evaluation, public: dict[str, Any],
                            now: datetime) -> str | None:
    """Adds `evaluation.completed` for an evaluation with a webhook (`public`: as GET /v1/evaluations/{id} shows
    it); returns the event id or None."""
    return _record_end(session, EVENT_EVALUATION_COMPLETED, evaluation, public, now, evaluation_id=evaluation.id)


def _record_end(session: Session, event_type: str, owner: Batch | Evaluation, public: dict[str, Any], now: datetime,
                **about: str) -> str | None:
    if owner.webhook is None:
        return None
    event_id = f"msg_{uuid.uuid4().hex}"
    payload = json_text({"type": event_type, "timestamp": isoformat(now), "data": public})
    session.add(WebhookEvent(id=event_id, api_key_id=owner.api_key_id, type=event_type, url=owner.webhook,
                             payload=payload, status=PENDING, attempts=0, next_attempt_at=now, published_at=now,
                             created_at=now, **about))
    return event_id
