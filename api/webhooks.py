"""Routes of the webhook resource: the calling key's signing secret and its rotation, a job's delivery log, and
sending an event again by hand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import select, update

from api.deps import authenticate, close_db, current_key, db, own_job, read_db
from api.errors import ApiError
from api.state import app_state
from distilq.clock import isoformat, utcnow
from distilq.keys import new_webhook_secret
from distilq.queue import publish_webhook
from models.tables import PENDING, ApiKey, WebhookAttempt, WebhookEvent

bp = Blueprint("webhooks", __name__, url_prefix="/v1")
bp.before_request(authenticate)
bp.teardown_request(close_db)

#: After a rotation, the old secret signs beside the new one for this long.
ROTATION_OVERLAP = timedelta(hours=24)


@bp.get("/webhooks/secret")
def get_secret() -> Response:
    return jsonify({"secret": current_key().webhook_secret})


@bp.post("/webhooks/secret/rotate")
def rotate_secret() -> Response:
    session = db()
    key = session.get_one(ApiKey, current_key().id)  # read again under the write lock: rotations in turn
    secret, expires = new_webhook_secret(), utcnow() + ROTATION_OVERLAP
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(
        webhook_secret=secret, previous_webhook_secret=key.webhook_secret, previous_secret_expires_at=expires))
    session.commit()
    return jsonify({"secret": secret, "previous_secret_expires_at": isoformat(expires)})


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


@bp.get("/jobs/<job_id>/deliveries")
def list_deliveries(job_id: str) -> Response:
    session = read_db()
    job = own_job(job_id, session)
    events = list(session.scalars(select(WebhookEvent).where(WebhookEvent.job_id == job.id)
                                  .order_by(WebhookEvent.created_at, WebhookEvent.id)))
    attempts = list(session.scalars(select(WebhookAttempt).where(WebhookAttempt.event_id.in_([e.id for e in events]))))
    return jsonify({"data": [_event_view(e, [a for a in attempts if a.event_id == e.id]) for e in events]})


@bp.post("/jobs/<job_id>/deliveries/<event_id>/retry")
def retry_delivery(job_id: str, event_id: str) -> Response:
    """Sends the event again now, under the same webhook-id, whatever became of it before."""
    job = own_job(job_id)
    session = db()
    event = session.scalars(select(WebhookEvent).where(WebhookEvent.id == event_id,
                                                       WebhookEvent.job_id == job.id)).one_or_none()
    if event is None:
        raise ApiError(404, "not_found", f"no delivery {event_id} for job {job_id}")
    session.execute(update(WebhookEvent).where(WebhookEvent.id == event.id).values(
        status=PENDING, next_attempt_at=utcnow(), locked_until=None, published_at=utcnow()))
    session.commit()
    try:
        publish_webhook(app_state().celery, event.id)
    except Exception:  # `beat` publishes it within its republish window
        pass
    session.refresh(event)
    attempts = list(session.scalars(select(WebhookAttempt).where(WebhookAttempt.event_id == event.id)))
    response = jsonify(_event_view(event, attempts))
    response.status_code = 202
    return response
