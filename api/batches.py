"""Routes of the batch resource (the OpenAI Batch API's shape): create a batch from an uploaded file, read it, list
them, cancel one.

A file is checked whole: every line as its POST route would judge its body (schema, storable text, the model's
token bounds), `custom_id` unique, `url` one of the two routes (the batch's `endpoint`, when given). The check and
the run overlap: the batch is created `validating`, and each chunk of CHECK_CHUNK lines that passes is queued at
once (with the token ids the model's check made, for the worker), so that workers run the first lines while the
rest of the file is checked — at a GPU's speed the check is as long as the run. At the end the batch is
`in_progress`; or, once a line is bad, nothing more is queued and the check goes on only to name the bad lines
(the first MAX_ERRORS): the batch fails and every line queued is deleted with it, in one transaction, run or not
(`store.batches.fail_check`) — as far as anyone can see, a file with a bad line runs not at all. The chunks are
judged (`api/batch_lines.py`) in check processes beside this one where there are some (`api/check_pool.py`), or
in the request's thread; the check holds one part of the file and a few chunks of lines at a time (two for each
check process, or one; each of at most CHECK_CHUNK lines and about CHECK_CHUNK_BYTES).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import redis
from flask import Blueprint, Response, jsonify

from api.batch_lines import LineChunk
from api.check_pool import JudgedChunk
from api.deps import authenticate, close_db, current_key, db, read_db
from api.errors import ApiError, detail, invalid
from api.file_lines import CHECK_CHUNK, MAX_ERRORS, BadLine, raw_lines
from api.pages import page
from api.state import app_state, served
from api.validation import parse, read_json_object, webhook_problems
from contract.requests import BatchRequest
from core import sweep_requests, wakeups
from core.clock import utcnow
from core.presence import ready_workers
from core.tasks import TASKS
from models.tables import Batch
from store import batch_rows, batches, files

log = logging.getLogger(__name__)

#: A chunk of lines ends sooner when its lines hold this many bytes: a check holds a few chunks at once.
CHECK_CHUNK_BYTES = 4_000_000

bp = Blueprint("batches", __name__, url_prefix="/v1")
bp.before_request(authenticate)
bp.teardown_request(close_db)


class _CheckStopped(Exception):
    """The batch is no longer validating: beat failed it as abandoned (its check did not move for
    `check_lease_s`)."""


def _row_inputs() -> dict[str, int]:
    """The most inputs a row of each task's lines holds (`store.batch_rows.row_inputs`), from what the workers'
    presence says of their passes now; without Redis, as where no worker has timed a pass yet."""
    state = app_state()
    try:
        workers = ready_workers(state.redis)
    except redis.RedisError as error:
        log.warning("reading the workers' presence failed (%s): a batch's rows sized without it",
                    error.__class__.__name__)
        workers = []
    return {task: batch_rows.row_inputs(task, workers, state.settings.batch_row_inputs,
                                        state.settings.lines_pass_ms) for task in TASKS}


def _chunks(file_id: str, endpoint: str | None, batch_id: str,
            api_key_id: str) -> Iterator[LineChunk | BadLine]:
    """The file's lines in chunks of CHECK_CHUNK lines (or CHECK_CHUNK_BYTES), and — last — a BadLine that ends
    the reading (a line too long, too many lines)."""
    state = app_state()
    row_inputs = _row_inputs()
    lines: list[tuple[int, bytes]] = []
    size = 0
    for item in raw_lines(state.read_sessions, state.settings, file_id):
        if isinstance(item, BadLine):
            if lines:
                yield LineChunk(lines, endpoint, batch_id, api_key_id, utcnow(), row_inputs)
            yield item
            return
        lines.append(item)
        size += len(item[1])
        if len(lines) == CHECK_CHUNK or size >= CHECK_CHUNK_BYTES:
            yield LineChunk(lines, endpoint, batch_id, api_key_id, utcnow(), row_inputs)
            lines, size = [], 0
    if lines:
        yield LineChunk(lines, endpoint, batch_id, api_key_id, utcnow(), row_inputs)


def _check_and_queue(file_id: str, endpoint: str | None, batch_id: str,
                     api_key_id: str) -> tuple[int, list[dict[str, Any]]]:
    """The check: how many lines, and the first MAX_ERRORS problems (by line). Chunks of lines are judged a few at
    once (`api/check_pool.py`), their verdicts taken in the file's order; while no line is bad, each chunk's lines
    are queued as jobs of the batch, a worker woken for them. Raises _CheckStopped."""
    state = app_state()
    pool = state.check_pool
    seen: set[str] = set()
    total, errors = 0, list[dict[str, Any]]()
    judging: deque[Future[JudgedChunk]] = deque()

    def take_oldest() -> None:
        nonlocal total
        judged = pool.result(judging.popleft())  # queued where it was judged, or not at all
        for verdict in judged.verdicts:
            if len(errors) >= MAX_ERRORS:
                break
            if verdict.custom_id is not None:
                if verdict.custom_id in seen:
                    errors.append(BadLine(verdict.number, f"custom_id {verdict.custom_id!r} is used by an earlier "
                                                          "line", "custom_id").error)
                    continue
                seen.add(verdict.custom_id)
                total += 1
            if verdict.error is not None:
                errors.append(verdict.error)
        if not batches.add_checked_lines(state.sessions, batch_id, [], total, utcnow()):
            raise _CheckStopped
        for task in sorted(judged.tasks if judged.queued and not errors else ()):
            try:
                wakeups.request(state.celery, state.redis, task)
            except Exception as error:  # the lines are committed: `beat` wakes a worker for them later
                log.warning("waking a worker for batch %s failed (%s); beat will", batch_id,
                            error.__class__.__name__)

    try:
        for item in _chunks(file_id, endpoint, batch_id, api_key_id):
            if isinstance(item, BadLine):
                while judging and len(errors) < MAX_ERRORS:
                    take_oldest()
                errors.append(item.error)
                break
            judging.append(pool.submit(replace(item, queue=not errors), served, state.sessions))
            while len(judging) >= pool.in_flight or (judging and judging[0].done()):
                take_oldest()
            if len(errors) >= MAX_ERRORS:
                break
        while judging and len(errors) < MAX_ERRORS:
            take_oldest()
    finally:
        for left in judging:
            left.cancel()
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
    state, key = app_state(), current_key().id
    problems = webhook_problems(body.webhook, state.settings.webhook_allow_private)
    if problems:
        raise invalid(problems)
    file = files.own_file(read_db(), key, body.input_file_id)
    if file is None or file.purpose != "batch":
        raise invalid([detail(["input_file_id"], "names no file of yours uploaded with purpose 'batch'")])
    batch_id = batches.new_batch_id()
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


@bp.get("/batches/<id:batch_id>")
def get(batch_id: str) -> Response:
    return jsonify(_public(own_batch(batch_id)))


@bp.get("/batches")
def list_batches() -> Response:
    return page(lambda limit, after: batches.list_batches(read_db(), current_key().id, limit, after), _public)


@bp.post("/batches/<id:batch_id>/cancel")
def cancel(batch_id: str) -> Response:
    session = db()
    batch = batches.own_batch(session, current_key().id, batch_id)
    if batch is None:
        raise ApiError(404, "not_found", f"no batch {batch_id}")
    if batches.cancel_batch(session, batch, utcnow()):
        sweep_requests.ask(app_state().redis)  # with no line running, beat can end it at once
    return jsonify(_public(batch))
