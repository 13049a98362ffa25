"""Routes of the webhook resource: the calling key's signing secret and its rotation, a job's delivery log, and
sending an event again by hand. What they do lives in the `webhooks` package; this is its HTTP face."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.deps import authenticate, close_db, current_key, db, own_job, read_db
from api.errors import ApiError
from api.state import app_state
from core.clock import isoformat, utcnow
from core.queue import publish_webhook
from store import keys
from webhooks import job_deliveries, retry_now, rotate_secret

bp = Blueprint("webhooks", __name__, url_prefix="/v1")
bp.before_request(authenticate)
bp.teardown_request(close_db)


@bp.get("/webhooks/secret")
def get_secret() -> Response:
    return jsonify({"secret": keys.webhook_secret(read_db(), current_key().id)})


@bp.post("/webhooks/secret/rotate")
def rotate() -> Response:
    session = db()
    secret, expires = rotate_secret(session, current_key().id, utcnow())
    session.commit()
    return jsonify({"secret": secret, "previous_secret_expires_at": isoformat(expires)})


@bp.get("/jobs/<id:job_id>/deliveries")
def list_deliveries(job_id: str) -> Response:
    session = read_db()
    return jsonify({"data": job_deliveries(session, own_job(job_id, session).id)})


@bp.post("/jobs/<id:job_id>/deliveries/<id:event_id>/retry")
def retry_delivery(job_id: str, event_id: str) -> Response:
    """Sends the event again now, under the same webhook-id, whatever became of it before."""
    job = own_job(job_id)
    view = retry_now(db(), job.id, event_id)
    if view is None:
        raise ApiError(404, "not_found", f"no delivery {event_id} for job {job_id}")
    try:
        publish_webhook(app_state().celery, event_id)
    except Exception:  # `beat` publishes it within its republish window
        pass
    response = jsonify(view)
    response.status_code = 202
    return response
