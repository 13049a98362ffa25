"""Routes of the job resource: submit fill-mask and QA jobs, read one, list them, cancel one."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.deps import authenticate, close_db, current_key, db, no_such_job, own_job, read_db
from api.errors import ApiError, detail, invalid
from api.model_inputs import Checked, ServedModel, check_fill_mask, check_question_answering
from api.state import app_state, served
from api.validation import may_be_id, parse, query_choice, query_int, read_json_object, webhook_problems
from api.waiting import requested_wait_s, wait_for_job
from contract.job_json import job_to_public
from contract.requests import FillMaskRequest, QuestionAnsweringRequest
from core import wakeups
from core.clock import utcnow
from core.metrics import JOBS_FINISHED, JOBS_SUBMITTED
from core.queue import announcement, publish_webhook, waiter_channel
from core.settings import Settings
from core.tasks import TASK_FILL_MASK, TASK_QUESTION_ANSWERING, TASKS
from models.tables import CANCELED, STATUSES, TERMINAL_STATUSES, Job
from store import batch_rows, job_reads, jobs
from store.jobs import JobAttributes

log = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__, url_prefix="/v1")
bp.before_request(authenticate)
bp.teardown_request(close_db)

#: Page size of GET /v1/jobs when `limit` is absent, and its largest value.
DEFAULT_PAGE, MAX_PAGE = 20, 100
#: A page with outputs (`include=output`) ends before the job that would take it past this many bytes of output
#: (it always holds one job); `next_cursor` goes on from there.
MAX_PAGE_OUTPUT_BYTES = 8_000_000
#: Idempotency keys longer than this are refused.
MAX_IDEMPOTENCY_KEY_LEN = 255

Check = Callable[[Any, ServedModel, Settings], Checked]


def _job_response(job: Job | JobAttributes | str, status: int, extra_headers: dict[str, str] | None = None) -> Response:
    """The job (a row, its attributes, or its JSON text as announced) as the response body."""
    if isinstance(job, str):
        response = Response(job, status=status, mimetype="application/json")
    else:
        response = jsonify(job_to_public(job))
        response.status_code = status
    for name, value in (extra_headers or {}).items():
        response.headers[name] = value
    return response


def _idempotency_key(key: str | None) -> str | None:
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LEN:
        raise ApiError(400, "invalid_idempotency_key",
                       f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters")
    return key


def _submit(task: str, body: FillMaskRequest | QuestionAnsweringRequest, raw: dict[str, Any],
            idempotency_key: str | None, job_id: str, token_ids: bytes | None,
            held_by: str | None) -> tuple[JobAttributes, bool]:
    """Stores the job (or finds the one this Idempotency-Key made) and wakes a worker for a new one. `held_by`: this
    process's announcement token when it holds the request (`Job.held_by`)."""
    state = app_state()
    try:
        job, created = jobs.submit(
            state.engine, task=task, model=state.settings.model_name(task), api_key_id=current_key().id, body=body,
            raw_body=raw, idempotency_key=idempotency_key, idempotency_ttl_s=state.settings.idempotency_ttl_s,
            max_in_flight=state.settings.max_jobs_in_flight, now=utcnow(), job_id=job_id, token_ids=token_ids,
            held_by=held_by,
        )
    except jobs.IdempotencyKeyReused:
        raise ApiError(409, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request body") from None
    except jobs.TooManyJobsInFlight as error:
        raise ApiError(429, "too_many_jobs_in_flight",
                       f"this API key has {error.in_flight} jobs queued or running, the most it may; retry when "
                       "some finish", headers={"Retry-After": "5"}) from None
    if created:
        JOBS_SUBMITTED.labels(task).inc()
        try:
            wakeups.request(state.celery, state.redis, task)
        except Exception as error:  # the row is committed: `beat` wakes a worker for it later
            log.warning("waking a worker for job %s failed (%s); beat will", job["id"], error.__class__.__name__)
    return job, created


def _create(task: str, schema: type[FillMaskRequest] | type[QuestionAnsweringRequest], check: Check) -> Response:
    raw = read_json_object()
    body = parse(schema, raw)
    state = app_state()
    checked = check(body, served(task), state.settings)
    problems = checked.problems + webhook_problems(body.webhook, state.settings.webhook_allow_private)
    if problems:
        raise invalid(problems)
    idempotency_key = _idempotency_key(request.headers.get("Idempotency-Key"))
    wait_s = requested_wait_s(request.headers.get("Prefer"))

    with ExitStack() as held:
        # A held request takes its wait slot and starts watching for the job's announcement before the job is
        # committed: a fast worker cannot then finish it unseen, and the wait needs no first read of the row.
        may_wait = wait_s is not None and held.enter_context(state.wait_slots.slot(current_key().id))
        job_id = str(uuid.uuid4())
        watch = held.enter_context(state.announcements.watching(job_id)) if may_wait else None
        heard = state.announcements.subscribed.is_set()  # else announcements made now may be missed
        job, created = _submit(task, body, raw, idempotency_key, job_id, checked.token_ids,
                               state.announcements.token if may_wait else None)
        headers = {"Location": f"/v1/jobs/{job['id']}"}
        if wait_s is not None and may_wait:  # else the key holds its most waits already: the job as it is, at once
            headers["Preference-Applied"] = f"wait={wait_s}"
            if job["status"] not in TERMINAL_STATUSES:
                # An idempotent replay answers with an older job, which this watch is not of.
                finished = wait_for_job(state.read_sessions, state.announcements, job["id"], wait_s,
                                        watch if created else None, read_first=not (created and heard),
                                        announced_here=job["held_by"] == state.announcements.token)
                if finished is not None:
                    return _job_response(finished, 200, headers)
    return _job_response(job, 200 if job["status"] in TERMINAL_STATUSES else 202, headers)


@bp.post("/fill-mask")
def create_fill_mask() -> Response:
    return _create(TASK_FILL_MASK, FillMaskRequest, check_fill_mask)


@bp.post("/question-answering")
def create_question_answering() -> Response:
    return _create(TASK_QUESTION_ANSWERING, QuestionAnsweringRequest, check_question_answering)


@bp.get("/jobs/<id:job_id>")
def get_job(job_id: str) -> Response:
    engine, key_id = app_state().engine, current_key().id
    # A batch's line by its id's shape (`{row id}-{index}`), which no job's id has: one read either way.
    reads = job_reads.own_line_json if batch_rows.parse_line_id(job_id) else job_reads.own_job_json
    job = reads(engine, key_id, job_id)
    if job is None:
        raise no_such_job(job_id)
    return Response(job, status=200, mimetype="application/json")


def _encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(job_id, str) or not may_be_id(job_id):
            raise ValueError(job_id)
        return datetime.fromisoformat(created_at), job_id
    except (ValueError, TypeError, binascii.Error):
        raise invalid([detail(["query", "cursor"], "is not a cursor this API returned")]) from None


@bp.get("/jobs")
def list_jobs() -> Response:
    status, task = query_choice("status", STATUSES), query_choice("task", TASKS)
    include_output = query_choice("include", ("output",)) == "output"
    limit = query_int("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    cursor = request.args.get("cursor")
    page = job_reads.list_jobs(read_db(), current_key().id, status=status, task=task, limit=limit + 1,
                          before=_decode_cursor(cursor) if cursor else None)
    data: list[dict[str, Any]] = []
    output_bytes = 0
    for job in page[:limit]:
        if include_output:
            output_bytes += len(json.dumps(job.output, ensure_ascii=False)) if job.output is not None else 0
            if output_bytes > MAX_PAGE_OUTPUT_BYTES and data:
                break
        data.append(job_to_public(job, include_output))
    more = len(page) > len(data)
    next_cursor = _encode_cursor(page[len(data) - 1]) if more and data else None
    return jsonify({"data": data, "next_cursor": next_cursor})


@bp.post("/jobs/<id:job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    if job_reads.own_line_json(app_state().engine, current_key().id, job_id) is not None:
        raise ApiError(409, "batch_line", "a batch's line is cancelled with its batch: POST /v1/batches/{id}/cancel")
    job = own_job(job_id)
    session = db()
    changed, event = jobs.cancel(session, job.id, utcnow())
    if changed:
        JOBS_FINISHED.labels(job.task, CANCELED).inc()
        state = app_state()
        try:
            if job.held_by:
                state.redis.publish(waiter_channel(job.held_by), announcement(job.id, CANCELED))
            if event:
                publish_webhook(state.celery, event)
        except Exception:  # waiters re-read the row every second; `beat` publishes the event
            pass
    session.refresh(job)
    return _job_response(job, 200)
