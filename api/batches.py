"""Routes of the batch resource (the OpenAI Batch API's shape): create a batch from an uploaded file, read it, list
them, cancel one.

A file is checked whole before any of it runs: every line as its POST route would judge its body (schema,
storable text, the model's token bounds), `custom_id` unique, `url` one of the two routes (the batch's
`endpoint`, when given). Then every line becomes a queued job of the batch in one transaction; a file with a bad
line makes a failed batch whose `errors` name the lines (the first MAX_ERRORS). The check holds no more than a
part of the file and one chunk of lines at a time: what each checked line's job needs (its parsed body, the token
ids the model's check made for the worker) waits in a temporary file (`api/spool.py`), not in memory, and the jobs
are made from there — the file is read and judged once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.deps import authenticate, close_db, current_key, db, read_db
from api.errors import ApiError, detail, invalid
from api.file_lines import CHECK_CHUNK, MAX_ERRORS, BadLine, bad_body, json_lines
from api.model_inputs import check_fill_masks, check_question_answerings
from api.spool import Spool
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


@dataclass(frozen=True)
class _Ready:
    """What a checked line's job row needs of it."""

    number: int
    custom_id: str
    task: str
    inputs: dict[str, Any]
    parameters: dict[str, Any]
    n_inputs: int
    metadata: dict[str, Any] | None
    token_ids: bytes | None

    @staticmethod
    def of(line: Line, token_ids: bytes | None) -> _Ready:
        inputs, parameters = stored_inputs(line.body)
        return _Ready(line.number, line.custom_id, line.task, inputs, parameters, line.body.n_inputs(),
                      line.body.metadata, token_ids)


def _validate(file_id: str, endpoint: str | None, spool: Spool[_Ready]) -> tuple[int, list[dict[str, Any]]]:
    """The check: how many lines, and the first MAX_ERRORS problems (by line); each good line into `spool`
    (while no line is bad)."""
    seen: set[str] = set()
    total, errors = 0, list[dict[str, Any]]()
    pending: list[Line] = []

    def check_pending() -> None:
        token_ids: dict[int, bytes | None] = {}
        for task, check in CHECKS.items():
            lines = [item for item in pending if item.task == task]
            if lines:
                found = check([item.body for item in lines], served(task), app_state().settings)
                errors.extend(bad_body(item.number, checked.problems, "body").error
                              for item, checked in zip(lines, found, strict=True) if checked.problems)
                token_ids.update((item.number, checked.token_ids) for item, checked in zip(lines, found, strict=True))
        if not errors:
            for item in pending:
                spool.write(_Ready.of(item, token_ids[item.number]))
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


def _job_rows(batch_id: str, api_key_id: str, spool: Spool[_Ready], tasks: set[str]) -> Iterator[dict[str, Any]]:
    """Each checked line's job row, from `spool`; `tasks` gathers the lines' tasks."""
    settings, now = app_state().settings, utcnow()
    for ready in spool.read_all():
        tasks.add(ready.task)
        yield jobs.batch_line(batch_id=batch_id, line=ready.number, custom_id=ready.custom_id, task=ready.task,
                              model=settings.model_id(ready.task), api_key_id=api_key_id, inputs=ready.inputs,
                              parameters=ready.parameters, n_inputs=ready.n_inputs, metadata=ready.metadata,
                              now=now, token_ids=ready.token_ids)


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
    with Spool[_Ready]() as spool:
        return _create(file.id, body, key, spool)


def _create(file_id: str, body: BatchRequest, key: str, spool: Spool[_Ready]) -> Response:
    state = app_state()
    total, errors = _validate(file_id, body.endpoint, spool)
    batch_id = batches.new_batch_id()
    fields: dict[str, Any] = {
        "batch_id": batch_id, "api_key_id": key, "input_file_id": file_id, "endpoint": body.endpoint,
        "completion_window": body.completion_window, "webhook": body.webhook, "metadata": body.metadata,
        "now": utcnow()}
    session = db()
    if errors:
        batch = batches.failed_batch(session, total=total, errors=errors, **fields)
        log.info("batch failed validation", extra={"batch": batch_id, "errors": len(errors)})
        return jsonify(_public(batch))
    tasks: set[str] = set()
    batch = batches.create_batch(session, lines=_job_rows(batch_id, key, spool, tasks), **fields)
    for task in sorted(tasks):
        try:
            wakeups.request(state.celery, state.redis, task)
        except Exception as error:  # the lines are committed: `beat` wakes a worker for them later
            log.warning("waking a worker for batch %s failed (%s); beat will", batch_id, error.__class__.__name__)
    log.info("batch created", extra={"batch": batch_id, "lines": batch.total})
    return jsonify(_public(batch))


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
