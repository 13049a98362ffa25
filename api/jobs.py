"""Routes of the job resource: submit fill-mask and QA jobs, read one, list them, cancel one."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select, tuple_, update

from api.deps import authenticate, close_db, current_key, db, own_job, read_db
from api.errors import ApiError, detail, invalid
from api.model_inputs import ServedModel, check_fill_mask, check_question_answering
from api.state import app_state
from api.submission import check_idempotency_key, submit
from api.validation import parse, read_json_object
from api.waiting import requested_wait_s, wait_for_job
from distilq.clock import utcnow
from distilq.metrics import JOBS_FINISHED, JOBS_SUBMITTED
from distilq.queue import job_channel, publish_webhook
from distilq.settings import Settings
from models.db import rowcount
from models.job_view import job_to_public
from models.schemas import FillMaskRequest, QuestionAnsweringRequest
from models.tables import (
    CANCELED,
    EVENT_COMPLETED,
    QUEUED,
    RUNNING,
    STATUSES,
    TASK_FILL_MASK,
    TASK_QUESTION_ANSWERING,
    TASKS,
    TERMINAL_STATUSES,
    Job,
)
from models.webhook_outbox import record_event
from models.webhook_targets import UnsafeTarget, check_target

bp = Blueprint("jobs", __name__, url_prefix="/v1")
bp.before_request(authenticate)
bp.teardown_request(close_db)

#: Page size of GET /v1/jobs when `limit` is absent, and its largest value.
DEFAULT_PAGE, MAX_PAGE = 20, 100

Check = Callable[[Any, ServedModel, Settings], list[dict[str, Any]]]


def _job_response(job: Job, status: int, extra_headers: dict[str, str] | None = None) -> Response:
    response = jsonify(job_to_public(job))
    response.status_code = status
    for name, value in (extra_headers or {}).items():
        response.headers[name] = value
    return response


def _create(task: str, schema: type[FillMaskRequest] | type[QuestionAnsweringRequest], check: Check) -> Response:
    raw = read_json_object()
    body = parse(schema, raw)
    state = app_state()
    try:
        served = state.served_model(task)
    except Exception as error:
        raise ApiError(503, "model_unavailable", f"the {task} model's tokenizer could not be loaded: {error}",
                       headers={"Retry-After": "30"}) from None
    problems = check(body, served, state.settings)
    if body.webhook is not None:
        try:
            check_target(body.webhook, state.settings.webhook_allow_private)
        except UnsafeTarget as error:
            problems.append(detail(["webhook"], str(error)))
    if problems:
        raise invalid(problems)
    idempotency_key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    wait_s = requested_wait_s(request.headers.get("Prefer"))

    session = db()
    job, created = submit(state, session, task, current_key().id, body, raw, idempotency_key)
    if created:
        JOBS_SUBMITTED.labels(task).inc()
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if wait_s is not None:
        headers["Preference-Applied"] = f"wait={wait_s}"
        if job.status not in TERMINAL_STATUSES:
            job = wait_for_job(state.read_sessions, state.completions, job.id, wait_s) or job
    return _job_response(job, 200 if job.status in TERMINAL_STATUSES else 202, headers)


@bp.post("/fill-mask")
def create_fill_mask() -> Response:
    return _create(TASK_FILL_MASK, FillMaskRequest, check_fill_mask)


@bp.post("/question-answering")
def create_question_answering() -> Response:
    return _create(TASK_QUESTION_ANSWERING, QuestionAnsweringRequest, check_question_answering)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    return _job_response(own_job(job_id, read_db()), 200)


def _encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created_at), str(job_id)
    except (ValueError, TypeError, binascii.Error):
        raise invalid([detail(["query", "cursor"], "is not a cursor this API returned")]) from None


def _query_int(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise invalid([detail(["query", name], f"must be a whole number from {low} to {high}")])
    return int(value)


@bp.get("/jobs")
def list_jobs() -> Response:
    query = select(Job).where(Job.api_key_id == current_key().id)
    status, task = request.args.get("status"), request.args.get("task")
    if status is not None:
        if status not in STATUSES:
            raise invalid([detail(["query", "status"], f"must be one of {', '.join(STATUSES)}")])
        query = query.where(Job.status == status)
    if task is not None:
        if task not in TASKS:
            raise invalid([detail(["query", "task"], f"must be one of {', '.join(TASKS)}")])
        query = query.where(Job.task == task)
    limit = _query_int("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    cursor = request.args.get("cursor")
    if cursor:
        created_at, job_id = _decode_cursor(cursor)
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(created_at, job_id))
    jobs = list(read_db().scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    next_cursor = _encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return jsonify({"data": [job_to_public(job) for job in jobs[:limit]], "next_cursor": next_cursor})


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    job = own_job(job_id)
    session = db()
    now = utcnow()
    # Compare-and-set: a worker finishing at the same moment wins or loses cleanly, never half-way.
    changed = rowcount(
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status.in_((QUEUED, RUNNING)))
            .values(status=CANCELED, completed_at=now, lease_until=None)
        )
    )
    event = record_event(session, job.id, EVENT_COMPLETED, now) if changed else None
    session.commit()
    if changed:
        JOBS_FINISHED.labels(job.task, CANCELED).inc()
        state = app_state()
        try:
            state.redis.publish(job_channel(job.id), CANCELED)
            if event:
                publish_webhook(state.celery, event)
        except Exception:  # waiters re-read the row every second; `beat` publishes the event
            pass
    session.refresh(job)
    return _job_response(job, 200)
