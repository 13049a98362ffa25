"""Recording job and batch events for webhooks, inside the transaction that changes the job's status (an outbox: the
event exists exactly when the status change does)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.job_json import job_to_public
from core.clock import isoformat
from models.tables import EVENT_BATCH_COMPLETED, EVENT_FOR_FILTER, PENDING, Batch, Job, WebhookEvent


def record_event(session: Session, job_id: str, event_type: str, now: datetime) -> str | None:
    """Adds the event for `job_id` if the job has a webhook that wants it; returns the event id (the
    `webhook-id` of every attempt) or None. The body holds the job as GET /v1/jobs/{id} shows it now."""
    job = session.execute(select(Job).where(Job.id == job_id).execution_options(populate_existing=True)).scalar_one()
    wanted = {EVENT_FOR_FILTER[name] for name in job.webhook_events_filter}
    if job.webhook is None or event_type not in wanted:
        return None
    event_id = f"msg_{uuid.uuid4().hex}"
    payload = json.dumps({"type": event_type, "timestamp": isoformat(now), "data": job_to_public(job)},
                         separators=(",", ":"), ensure_ascii=False)
    session.add(WebhookEvent(id=event_id, job_id=job.id, api_key_id=job.api_key_id, type=event_type,
                             url=job.webhook, payload=payload, status=PENDING, attempts=0, next_attempt_at=now,
                             # The caller puts it on the queue once the transaction commits; should that be lost,
                             # `beat` puts it there again after the republish window.
                             published_at=now, created_at=now))
    return event_id


def record_batch_event(session: Session, batch: Batch, public: dict[str, Any], now: datetime) -> str | None:
    """Adds `batch.completed` for a batch with a webhook (`public`: the batch as GET /v1/batches/{id} shows it);
    returns the event id or None."""
    if batch.webhook is None:
        return None
    event_id = f"msg_{uuid.uuid4().hex}"
    payload = json.dumps({"type": EVENT_BATCH_COMPLETED, "timestamp": isoformat(now), "data": public},
                         separators=(",", ":"), ensure_ascii=False)
    session.add(WebhookEvent(id=event_id, batch_id=batch.id, api_key_id=batch.api_key_id, type=EVENT_BATCH_COMPLETED,
                             url=batch.webhook, payload=payload, status=PENDING, attempts=0, next_attempt_at=now,
                             published_at=now, created_at=now))
    return event_id
