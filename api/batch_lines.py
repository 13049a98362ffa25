"""Judging a batch file's lines, a chunk at a time: each line as its POST route would judge its body (schema,
storable text, the model's token bounds), its `url` one of the two routes (the batch's `endpoint`, when given) —
and, for a line that passes, the line as it is queued.

Pure: what a chunk's verdicts are depends on its lines, the settings and the served models alone, never on the
request or the database, so that a chunk is judged alike in the API process or in a check process of its own
(`api/check_pool.py`). Whether a `custom_id` was used by an earlier line is the caller's to know: it sees the
whole file, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.errors import ApiError, detail
from api.file_lines import BadLine, bad_body, parse_line
from api.model_inputs import ServedModel, check_fill_masks, check_question_answerings
from api.validation import parse, unstorable
from contract.requests import FillMaskRequest, QuestionAnsweringRequest, stored_inputs
from core.settings import Settings
from core.tasks import TASK_FILL_MASK, TASK_QUESTION_ANSWERING
from store.batch_rows import BatchLine

#: route → (task, body schema)
ROUTES: dict[str, tuple[str, Any]] = {
    "/v1/fill-mask": (TASK_FILL_MASK, FillMaskRequest),
    "/v1/question-answering": (TASK_QUESTION_ANSWERING, QuestionAnsweringRequest),
}
#: task → the model's checks of many bodies
CHECKS: dict[str, Any] = {TASK_FILL_MASK: check_fill_masks, TASK_QUESTION_ANSWERING: check_question_answerings}
LINE_KEYS = {"custom_id", "method", "url", "body"}


@dataclass(frozen=True)
class LineChunk:
    """Lines of one batch's file to judge together (one tokenizer call per task), and what their job rows share."""

    lines: list[tuple[int, bytes]]
    endpoint: str | None
    batch_id: str
    api_key_id: str
    now: datetime
    #: The most inputs a row of each task's lines holds (`store.batch_rows.row_inputs`), sized once a batch.
    row_inputs: dict[str, int]
    #: Whether the chunk's lines, if they all pass, are to be queued where they are judged (`api/check_pool.py`):
    #: not once an earlier line failed the batch, when the check goes on only to name the bad lines.
    queue: bool = True


@dataclass(frozen=True)
class Verdict:
    """One line judged. `custom_id` is None where the line fails before the model's checks (not JSON, a field
    missing, unknown or invalid, a body its route refuses): such a line counts as no request, and its custom_id
    as unused. `error` is what is wrong (the first problem found); `line` the line as it is queued
    (`store.batch_rows.BatchLine`), of a line with none."""

    number: int
    custom_id: str | None
    error: dict[str, Any] | None = None
    line: BatchLine | None = None


@dataclass(frozen=True)
class _Line:
    number: int
    custom_id: str
    task: str
    body: FillMaskRequest | QuestionAnsweringRequest


def _line(data: dict[str, Any], number: int, endpoint: str | None, storable: bool) -> _Line:
    """One line of the file, judged as its route judges a body, but for the model's checks (`judge` runs them on a
    chunk's lines at once); `storable`: whether the line's text showed nothing in it is unstorable
    (`api.validation.read_storable`); raises BadLine."""
    unknown = sorted(set(data) - LINE_KEYS)
    if unknown:
        raise BadLine(number, f"unknown field {unknown[0]!r}", unknown[0])
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 512:
        raise BadLine(number, "custom_id must be a string of 1 to 512 characters", "custom_id")
    if data.get("method") != "POST":
        raise BadLine(number, "method must be 'POST'", "method")
    url = data.get("url")
    if not isinstance(url, str) or url not in ROUTES:  # (a list or an object is no key of ROUTES: TypeError)
        raise BadLine(number, f"url must be one of {', '.join(ROUTES)}", "url")
    if endpoint is not None and url != endpoint:
        raise BadLine(number, f"url must be the batch's endpoint, {endpoint}", "url")
    body = data.get("body")
    if not isinstance(body, dict):
        raise BadLine(number, "body must be a JSON object: the request body of its url", "body")
    task, schema = ROUTES[url]
    problems = [] if storable else unstorable(body)
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
    return _Line(number, custom_id, task, parsed)


def judge(chunk: LineChunk, settings: Settings, served: Callable[[str], ServedModel]) -> list[Verdict]:
    """A verdict on each of the chunk's lines, in their order. `served`: the model of a task (raises what the
    caller makes of a model that cannot be loaded)."""
    verdicts: dict[int, Verdict] = {}
    lines: list[_Line] = []
    for number, raw in chunk.lines:
        parsed = parse_line(number, raw)
        if isinstance(parsed, BadLine):
            verdicts[number] = Verdict(number, None, parsed.error)
            continue
        try:
            lines.append(_line(parsed[1], number, chunk.endpoint, parsed[2]))
        except BadLine as bad:
            verdicts[number] = Verdict(number, None, bad.error)
    for task, check in CHECKS.items():
        of_task = [line for line in lines if line.task == task]
        if not of_task:
            continue
        model_name = settings.model_name(task)
        for line, checked in zip(of_task, check([line.body for line in of_task], served(task), settings),
                                 strict=True):
            if checked.problems:
                verdicts[line.number] = Verdict(line.number, line.custom_id,
                                                bad_body(line.number, checked.problems, "body").error)
                continue
            inputs, parameters = stored_inputs(line.body)
            verdicts[line.number] = Verdict(line.number, line.custom_id, line=BatchLine(
                line.number, line.custom_id, line.task, model_name, inputs, parameters, line.body.n_inputs(),
                line.body.metadata, checked.token_ids))
    return [verdicts[number] for number, _ in chunk.lines]
