"""Storing a submitted job: one row, committed before its id is published; Idempotency-Key honoured through a
unique constraint, so that concurrent copies of one request make one job."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.state import AppState
from distilq.clock import utcnow
from distilq.queue import publish_job
from models.schemas import FillMaskRequest, QuestionAnsweringRequest
from models.tables import QUEUED, RUNNING, ApiKey, Job

log = logging.getLogger(__name__)

#: Idempotency keys longer than this are refused.
MAX_IDEMPOTENCY_KEY_LEN = 255


def request_hash(task: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([task, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LEN:
        raise ApiError(400, "invalid_idempotency_key",
                       f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters")
    return key


def _new_job(
    task: str, model: str, api_key_id: str, body: FillMaskRequest | QuestionAnsweringRequest
) -> Job:
    n_inputs = (
        len(body.inputs.input_string) if isinstance(body, FillMaskRequest) else len(body.inputs.question)
    )
    return Job(
        id=str(uuid.uuid4()),
        api_key_id=api_key_id,
        task=task,
        model=model,
        status=QUEUED,
        input=body.inputs.model_dump(),
        parameters=body.parameters.model_dump(exclude_none=True),
        n_inputs=n_inputs,
        created_at=utcnow(),
        attempts=0,
        webhook=body.webhook,
        webhook_events_filter=list(body.webhook_events_filter),
        meta=body.metadata,
    )


def _existing(session: Session, api_key_id: str, idempotency_key: str, digest: str) -> Job | None:
    """The live job stored under this key; 409 when it was made from another body."""
    job = session.scalars(
        select(Job).where(Job.api_key_id == api_key_id, Job.idempotency_key == idempotency_key)
    ).one_or_none()
    if job is None:
        return None
    if job.idempotency_expires_at is not None and job.idempotency_expires_at <= utcnow():
        # Expired: free the key for this new request.
        session.execute(update(Job).where(Job.id == job.id).values(idempotency_key=None))
        session.commit()
        return None
    if job.request_hash != digest:
        raise ApiError(409, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request body")
    return job


def _check_in_flight(session: Session, api_key_id: str, cap: int) -> None:
    """429 when the key already has `cap` jobs queued or running. The key's row is locked first (PostgreSQL;
    SQLite serialises writers anyway), so concurrent submissions of one key count one after another."""
    session.execute(select(ApiKey.id).where(ApiKey.id == api_key_id).with_for_update())
    in_flight = session.scalar(
        select(func.count()).select_from(Job).where(Job.api_key_id == api_key_id, Job.status.in_((QUEUED, RUNNING)))
    )
    if (in_flight or 0) >= cap:
        session.rollback()
        raise ApiError(429, "too_many_jobs_in_flight",
                       f"this API key has {in_flight} jobs queued or running, the most it may; retry when some finish",
                       headers={"Retry-After": "5"})


def submit(
    state: AppState,
    session: Session,
    task: str,
    api_key_id: str,
    body: FillMaskRequest | QuestionAnsweringRequest,
    raw_body: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Stores and publishes the job; returns it and whether it is new (False: an idempotent replay)."""
    digest = request_hash(task, raw_body)
    if idempotency_key is not None:
        found = _existing(session, api_key_id, idempotency_key, digest)
        if found is not None:
            return found, False
    _check_in_flight(session, api_key_id, state.settings.max_jobs_in_flight)
    job = _new_job(task, state.model_id(task), api_key_id, body)
    if idempotency_key is not None:
        job.idempotency_key = idempotency_key
        job.request_hash = digest
        job.idempotency_expires_at = job.created_at + timedelta(seconds=state.settings.idempotency_ttl_s)
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        # Another copy of this request committed first: answer with its job.
        session.rollback()
        assert idempotency_key is not None
        found = _existing(session, api_key_id, idempotency_key, digest)
        if found is None:
            raise
        return found, False
    try:
        publish_job(state.celery, job.id, task)
    except Exception as error:  # the row is committed: `beat` publishes it again later
        log.warning("publishing job %s failed (%s); beat will re-publish it", job.id, error.__class__.__name__)
    return job, True
