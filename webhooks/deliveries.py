"""A job's delivery log as the API shows it, sending an event again by hand, and deleting events with what they
are about."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.clock import isoformat, utcnow
from models.tables import PENDING, WebhookAttempt, WebhookEvent


def _event_view(event: WebhookEvent, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "url": event.url,
        "status": event.status,
        "created_at": isoformat(event.created_at),
        "delivered_at": isoformat(event.delivered_at),
        "next_attempt_at": isoformat(event.next_attempt_at) if event.status == PENDING else None,
        "attempts": [
            {"attempt": a.attempt, "started_at": isoformat(a.started_at), "duration_ms": round(a.duration_ms, 1),
             "response_status": a.response_status, "error": a.error}
            for a in sorted(attempts, key=lambda a: a.attempt)
        ],
    }


def job_deliveries(session: Session, job_id: str) -> list[dict[str, Any]]:
    """Every event of the job, oldest first, each with every attempt. The caller has checked the job's owner."""
    events = list(session.scalars(select(WebhookEvent).where(WebhookEvent.job_id == job_id)
                                  .order_by(WebhookEvent.created_at, WebhookEvent.id)))
    attempts = list(session.scalars(select(WebhookAttempt).where(WebhookAttempt.event_id.in_([e.id for e in events]))))
    return [_event_view(e, [a for a in attempts if a.event_id == e.id]) for e in events]


def retry_now(session: Session, job_id: str, event_id: str) -> dict[str, Any] | None:
    """Makes the job's event due now, whatever became of it before, and commits; returns its view, or None when
    the job has no such event. The caller puts it on the queue (under the same webhook-id)."""
    event = session.scalars(select(WebhookEvent).where(WebhookEvent.id == event_id,
                                                       WebhookEvent.job_id == job_id)).one_or_none()
    if event is None:
        return None
    now = utcnow()
    session.execute(update(WebhookEvent).where(WebhookEvent.id == event.id).values(
        status=PENDING, next_attempt_at=now, locked_until=None, published_at=now))
    session.commit()
    session.refresh(event)
    attempts = list(session.scalars(select(WebhookAttempt).where(WebhookAttempt.event_id == event.id)))
    return _event_view(event, attempts)


def delete_events(session: Session, about: Any) -> None:
    """Deletes the events `about` selects (a condition on WebhookEvent: of some jobs, of a batch…) with their
    attempts, in the caller's transaction: what goes with the jobs, batches and evaluations they are about."""
    events = select(WebhookEvent.id).where(about)
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.event_id.in_(events)))
    session.execute(delete(WebhookEvent).where(about))
