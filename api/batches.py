"""Routes of the batch resource (the OpenAI Batch API's shape): create a batch from an uploaded file, read it, list
them, cancel one.

A file is checked whole: every line as its POST route would judge its body (schema, storable text, the model's
token bounds), `custom_id` unique, `url` one of the two routes (the batch's `endpoint`, when given). The check and
the run overlap: the batch is created `validating`, and each chunk of CHECK_CHUNK lines that passes is queued at
once (with the token ids the model's check made, for the worker), so that workers run the first lines while the
rest of the file is checked — at a GPU's speed the check is as long as the run. At the end the batch is
`in_progress`; or, once a line is bad, nothing more is queued and the check goes on only to name the bad lines
(the first MAX_ERRORS): the batch fails and every line queued is deleted with it, in one transaction, run or not
(`store.batches.fail_check`) — as far as anyone can see, a file with a bad line runs not at all. The check holds
one part of the file and one chunk of lines at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.deps import authenticate, close_db, current_key, db, read_db
from api.errors import ApiError, detail, invalid
from api.file_lines import CHECK_CHUNK, MAX_ERRORS, BadLine, bad_body, json_lines
from api.model_inputs import check_fill_masks, check_question_answerings
from api.state import app_state, served
from api.validation import parse, query_int, read_json_object, unstorable, webhook_problems
from contract.requests import BatchRequest, FillMaskRequest, QuestionAnsweringRequest, stored_inputs
from core import sweep_requests, wakeups
from core.clock import utcnow
from core.tasks import TASK_FILL_MASK, TASK_QUESTION_ANSWERING
from models.tables import Batch
from store import batches, files, jobs

log = logging.getLogger(__name__)

bp = Blueprint("batches", __name__, url_prefix="/v1")
bp.before_request(authenticate)
bp.teardown_request(close_db)

#: route → (task, body schema)
ROUTES: dict[str, tuple[str, Any]] = {
    "/v1/fill-mask": (TASK_FILL_MASK, FillMaskRequest),
    "/v1/question-answering": (TASK_QUESTION_ANSWERING, QuestionAnsweringRequest),
}
#: task → the model's checks of many bodies
CHECKS: dict[str, Any] = {TASK_FILL_MASK: check_fill_masks, TASK_QUESTION_ANSWERING: check_question_answerings}
LINE_KEYS = {"custom_id", "method", "url", "body"}


@dataclass(frozen=True)
class Line:
    number: int
    custom_id: str
    task: str
    body: FillMaskRequest | QuestionAnsweringRequest


def _line(data: dict[str, Any], number: int, endpoint: str | None) -> Line:
    """One line of the file, judged as its route judges a body, but for the model's checks (`_validate` runs them
    on many lines at once); raises BadLine."""
    unknown = sorted(set(data) - LINE_KEYS)
    if unknown:
        raise BadLine(number, f"unknown field {unknown[0]!r}", unknown[0])
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 512:
        raise BadLine(number, "custom_id must be a string of 1 to 512 characters", "custom_id")
    if data.get("method") != "POST":
        raise BadLine(number, "method must be 'POST'", "method")
    url = data.get("url")
    if url not in ROUTES:
        raise BadLine(number, f"url must be one of {', '.join(ROUTES)}", "url")
    if endpoint is not None and url != endpoint:
        raise BadLine(number, f"url must be the batch's endpoint, {endpoint}", "url")
    body = data.get("body")
    if not isinstance(body, dict):
        raise BadLine(number, "body must be a JSON object: the request body of its url", "body")
    task, schema = ROUTES[url]
    problems = unstorable(body)
    if not problems:
        try:
            parsed = parse(schema, body)
        except ApiError as error:
            problems = error.details
        else:
            if parsed.webhook is not None:
                problems = [detail(["webhook"], "a batch's lines have no webhooks of their own: give the batch one")]
    if problems:
        raise bad_body(number, problems, "body")
    return Line(number, custom_id, task, parsed)


def _read(file_id: str, endpoint: str | None) -> Iterator[Line | BadLine]:
    """Every line of the file (blank lines skipped), judged, or what is wrong with it."""
    for item in json_lines(file_id, app_state().settings.max_batch_lines):
        if isinstance(item, BadLine):
            yield item
            continue
        try:
            yield _line(item[1], item[0], endpoint)
        except BadLine as bad:
            yield bad


class _CheckStopped(Exception):
    """The batch is no longer validating: beat failed it as abandoned (its check did not move for
    `check_lease_s`)."""


def _job_row(batch_id: str, api_key_id: str, line: Line, model: str, token_ids: bytes | None,
             now: datetime) -> dict[str, Any]:
    inputs, parameters = stored_inputs(line.body)
    return jobs.batch_line(batch_id=batch_id, line=line.number, custom_id=line.custom_id, task=line.task,
                           model=model, api_key_id=api_key_id, inputs=inputs,
                           parameters=parameters, n_inputs=line.body.n_inputs(), metadata=line.body.metadata,
                           now=now, token_ids=token_ids)


def _check_and_queue(file_id: str, endpoint: str | None, batch_id: str,
                     api_key_id: str) -> tuple[int, list[dict[str, Any]]]:
    """The check: how many lines, and the first MAX_ERRORS problems (by line). Each chunk of lines is judged
    together (one tokenizer call per task) and, while no line is bad, queued as jobs of the batch, a worker woken
    for them; raises _CheckStopped."""
    state = app_state()
    models = {task: state.settings.model_id(task) for task in CHECKS}
    seen: set[str] = set()
    total, errors = 0, list[dict[str, Any]]()
    pending: list[Line] = []

    def check_pending() -> None:
        token_ids: dict[int, bytes | None] = {}
        for task, check in CHECKS.items():
            lines = [item for item in pending if item.task == task]
            if lines:
                found = check([item.body for item in lines], served(task), state.settings)
                errors.extend(bad_body(item.number, checked.problems, "body").error
                              for item, checked in zip(lines, found, strict=True) if checked.problems)
                token_ids.update((item.number, checked.token_ids) for item, checked in zip(lines, found, strict=True))
        now = utcnow()
        rows = [] if errors else [_job_row(batch_id, api_key_id, item, models[item.task], token_ids[item.number],
                                           now) for item in pending]
        if not batches.add_checked_lines(state.sessions, batch_id, rows, total, now):
            raise _CheckStopped
        for task in sorted({item.task for item in pending} if rows else ()):
            try:
                wakeups.request(state.celery, state.redis, task)
            except Exception as error:  # the lines are committed: `beat` wakes a worker for them later
                log.warning("waking a worker for batch %s failed (%s); beat will", batch_id,
                            error.__class__.__name__)
        pending.clear()

    for item in _read(file_id, endpoint):
        if isinstance(item, BadLine):
            errors.append(item.error)
        elif item.custom_id in seen:
            errors.append(BadLine(item.number, f"custom_id {item.custom_id!r} is used by an earlier line",
                                  "custom_id").error)
        else:
            seen.add(item.custom_id)
            total += 1
            pending.append(item)
            if len(pending) == CHECK_CHUNK:
                check_pending()
        if len(errors) >= MAX_ERRORS:
            break
    check_pending()
    if not errors and total == 0:
        errors.append({"code": "empty_file", "message": "the file has no lines", "line": None, "param": None})
    return total, sorted(errors, key=lambda error: error["line"] or 0)[:MAX_ERRORS]


def _public(batch: Batch) -> dict[str, Any]:
    return batches.batch_to_public(batch, batches.request_counts(read_db(), batch))


def own_batch(batch_id: str) -> Batch:
    batch = batches.own_batch(read_db(), current_key().id, batch_id)
    if batch is None:
        raise ApiError(404, "not_found", f"no batch {batch_id}")
    return batch


@bp.post("/batches")
def create() -> Response:
    body = parse(BatchRequest, read_json_object())
    key = current_key().id
    problems = webhook_problems(body.webhook)
    if problems:
        raise invalid(problems)
    file = files.own_file(read_db(), key, body.input_file_id)
    if file is None or file.purpose != "batch":
        raise invalid([detail(["input_file_id"], "names no file of yours uploaded with purpose 'batch'")])
    state, batch_id = app_state(), batches.new_batch_id()
    batches.begin_batch(db(), batch_id=batch_id, api_key_id=key, input_file_id=file.id, endpoint=body.endpoint,
                        completion_window=body.completion_window, webhook=body.webhook, metadata=body.metadata,
                        now=utcnow())
    try:
        total, errors = _check_and_queue(file.id, body.endpoint, batch_id, key)
    except _CheckStopped:
        return _as_it_is_now(batch_id)
    except BaseException:
        # Not left validating for beat to find a minute later (unless the database is what failed).
        try:
            batches.fail_check(state.sessions, batch_id, [{"code": "check_failed", "line": None, "param": None,
                                                           "message": "the check of the file failed; create the "
                                                                      "batch again"}], utcnow())
        except Exception:
            log.exception("batch %s left validating; beat fails it", batch_id)
        raise
    if errors:
        batches.fail_check(state.sessions, batch_id, errors, utcnow(), total)
        log.info("batch failed validation", extra={"batch": batch_id, "errors": len(errors)})
        return _as_it_is_now(batch_id)
    if not batches.start_batch(db(), batch_id, total, utcnow()):
        return _as_it_is_now(batch_id)
    # Its lines may all have run during the check, when no worker could end it (it was not in progress yet).
    sweep_requests.ask(state.redis)
    log.info("batch created", extra={"batch": batch_id, "lines": total})
    return _as_it_is_now(batch_id)


def _as_it_is_now(batch_id: str) -> Response:
    """The batch and its counts as they are now: the request's read transaction (SQLite: a snapshot) began with
    its file's lookup, before the check wrote anything."""
    read_db().rollback()
    return jsonify(_public(own_batch(batch_id)))


@bp.get("/batches/<batch_id>")
def get(batch_id: str) -> Response:
    return jsonify(_public(own_batch(batch_id)))


@bp.get("/batches")
def list_batches() -> Response:
    limit = query_int("limit", 20, 1, 100)
    page = batches.list_batches(read_db(), current_key().id, limit + 1, request.args.get("after"))
    data = [_public(batch) for batch in page[:limit]]
    return jsonify({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": len(page) > limit})


@bp.post("/batches/<batch_id>/cancel")
def cancel(batch_id: str) -> Response:
    session = db()
    batch = batches.own_batch(session, current_key().id, batch_id)
    if batch is None:
        raise ApiError(404, "not_found", f"no batch {batch_id}")
    if batches.cancel_batch(session, batch, utcnow()):
        sweep_requests.ask(app_state().redis)  # with no line running, beat can end it at once
    return jsonify(_public(batch))
