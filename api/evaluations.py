"""Routes of the evaluation resource: score the served model on a file of labelled examples, asynchronously.

The file (uploaded with `purpose=evaluation`) is checked whole first — each line against its task's schema and the
model's tokenizer (a labelled fill-mask text holds one mask and its label is one token of the vocabulary; a plain
text holds none and fits the model; a QA pair is bounded as the POST route bounds it) — and a bad line fails the
evaluation naming it. Then every example becomes a queued job of the evaluation in one transaction (a seeded sample
of `config.max_samples` of them, when asked), made from what the check wrote of each into a temporary file
(`api/spool.py`): the file is read and judged once. `beat` scores them once none is left.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from api.deps import authenticate, close_db, current_key, db, read_db
from api.errors import ApiError, detail, invalid
from api.file_lines import CHECK_CHUNK, MAX_ERRORS, BadLine, bad_body, json_lines
from api.model_inputs import ServedModel, check_question_answerings
from api.pages import page
from api.spool import Spool
from api.state import app_state, served
from api.validation import parse, read_json_object, unstorable, webhook_problems
from contract.evaluations import EXAMPLES, LABELLED_METRICS, METRICS, SCORE_PSEUDO_LOG_LIKELIHOOD, EvaluationRequest
from contract.requests import QuestionAnsweringRequest
from core import sweep_requests, wakeups
from core.clock import utcnow
from core.tasks import TASK_FILL_MASK
from models.tables import Evaluation
from store import evaluations, files, jobs

log = logging.getLogger(__name__)

bp = Blueprint("evaluations", __name__, url_prefix="/v1")
bp.before_request(authenticate)
bp.teardown_request(close_db)

class _Example:
    """A line that passed its schema: its number, its fields, and what its model check found."""

    def __init__(self, number: int, fields: dict[str, Any]) -> None:
        self.number, self.fields = number, fields
        #: Rows through the model (a plain text: one per token and one for the MLM loss), once checked.
        self.n_inputs = 1
        self.label_id: int | None = None


def _schema_checked(task: str, file_id: str) -> Iterator[_Example | BadLine]:
    schema: type[BaseModel] = EXAMPLES[task]
    for item in json_lines(app_state().read_sessions, app_state().settings, file_id):
        if isinstance(item, BadLine):
            yield item
            continue
        number, data, storable = item
        problems = [] if storable else unstorable(data)
        if not problems:
            try:
                fields = parse(schema, data).model_dump(exclude_none=True)
            except ApiError as error:
                problems = error.details
        if problems:
            yield bad_body(number, problems)
            continue
        too_long = [name for name in ("text", "question", "context")
                    if len(fields.get(name, "")) > app_state().settings.max_chars_per_input]
        if too_long:
            yield BadLine(number, f"{too_long[0]} has more than {app_state().settings.max_chars_per_input} "
                                  "characters (DISTILQ_MAX_CHARS_PER_INPUT)", too_long[0])
            continue
        yield _Example(number, fields)


def _check_fill_mask(examples: list[_Example], model: ServedModel) -> Iterator[BadLine]:
    """A labelled text holds exactly one mask and its label is one token of the vocabulary (the rank is that
    token's); a plain text holds no mask; both fit the model. Sets each example's label id and size."""
    vocab = model.tokenizer.get_vocab(with_added_tokens=True)
    encodings = model.tokenizer.encode_batch_fast([example.fields["text"] for example in examples])
    for example, encoding in zip(examples, encodings, strict=True):
        masks = encoding.ids.count(model.mask_id) if model.mask_id is not None else 0
        real = sum(1 for special in encoding.special_tokens_mask if not special)
        label = example.fields.get("label")
        if len(encoding.ids) > model.max_tokens:
            yield BadLine(example.number, f"text has {len(encoding.ids)} tokens; the model takes at most "
                                          f"{model.max_tokens}", "text")
        elif label is not None and masks != 1:
            yield BadLine(example.number, f"text has {masks} mask tokens; a labelled line holds exactly one "
                                          f"{model.mask_token}", "text")
        elif label is not None and label not in vocab:
            yield BadLine(example.number, f"label {label!r} is not one token of the model's vocabulary, so no "
                                          "prediction can equal it", "label")
        elif label is None and masks:
            yield BadLine(example.number, f"text has a mask token: a line without a label is plain text, scored "
                                          f"token by token; give the {model.mask_token}'s word as `label`", "text")
        elif label is None and real == 0:
            yield BadLine(example.number, "text has no tokens", "text")
        else:
            example.label_id = vocab[label] if label is not None else None
            example.n_inputs = 1 if label is not None else real + 1


def _qa_body(example: _Example) -> QuestionAnsweringRequest:
    return QuestionAnsweringRequest.model_validate({"inputs": {"question": [example.fields["question"]],
                                                               "context": [example.fields["context"]]}})


def _check_question_answering(examples: list[_Example], model: ServedModel) -> Iterator[BadLine]:
    found = check_question_answerings([_qa_body(example) for example in examples], model, app_state().settings)
    for example, checked in zip(examples, found, strict=True):
        if checked.problems:
            yield bad_body(example.number, [{**checked.problems[0], "loc": checked.problems[0]["loc"][1:2]}])


def _checked(task: str, file_id: str, metric_names: list[str]) -> Iterator[_Example | BadLine]:
    """Every line judged whole, CHECK_CHUNK lines per tokenizer call; a fill-mask line whose kind gives none of the
    metrics asked for is left out (no error: it needs no run)."""
    model = served(task)
    check = _check_fill_mask if task == TASK_FILL_MASK else _check_question_answering
    wants_ranked = any(name in LABELLED_METRICS for name in metric_names)
    wants_plain = any(name not in LABELLED_METRICS for name in metric_names)
    pending: list[_Example] = []

    def flush() -> Iterator[_Example | BadLine]:
        bad = {line.error["line"]: line for line in check(pending, model)}
        for example in pending:
            yield bad.get(example.number, example)
        pending.clear()

    for item in _schema_checked(task, file_id):
        if isinstance(item, BadLine):
            yield item
            continue
        if task == TASK_FILL_MASK and not (wants_ranked if "label" in item.fields else wants_plain):
            continue
        pending.append(item)
        if len(pending) == CHECK_CHUNK:
            yield from flush()
    yield from flush()


def _validate(task: str, file_id: str, metric_names: list[str],
              spool: Spool[_Example]) -> tuple[int, list[dict[str, Any]]]:
    """The check: how many examples, and the first MAX_ERRORS problems (by line); each good example into `spool`
    (while none is bad)."""
    total, errors = 0, list[dict[str, Any]]()
    for item in _checked(task, file_id, metric_names):
        if isinstance(item, BadLine):
            errors.append(item.error)
            if len(errors) >= MAX_ERRORS:
                break
        else:
            total += 1
            if not errors:
                spool.write(item)
    if not errors and total == 0:
        errors.append({"code": "empty_file", "message": "the file has no example to evaluate for the metrics asked",
                       "line": None, "param": None})
    return total, sorted(errors, key=lambda error: error["line"] or 0)[:MAX_ERRORS]


def _example_rows(body: EvaluationRequest, evaluation_id: str, api_key_id: str, spool: Spool[_Example],
                  chosen: set[int] | None) -> Iterator[dict[str, Any]]:
    """Each (sampled: `chosen`, by the example's place among them, from 1) checked example's job row, from
    `spool`."""
    settings, now, config = app_state().settings, utcnow(), body.config
    qa_parameters = _qa_parameters()
    for index, item in enumerate(spool.read_all(), start=1):
        if chosen is not None and index not in chosen:
            continue
        fields = item.fields
        common: dict[str, Any] = {"evaluation_id": evaluation_id, "line": item.number, "task": body.task,
                  "model": settings.model_name(body.task), "api_key_id": api_key_id, "n_inputs": item.n_inputs,
                  "now": now}
        if body.task != TASK_FILL_MASK:
            yield jobs.evaluation_example(
                inputs={"question": [fields["question"]], "context": [fields["context"]]}, parameters=qa_parameters,
                gold={"answers": fields["answers"], **({"id": fields["id"]} if "id" in fields else {})}, **common)
        elif item.label_id is not None:
            yield jobs.evaluation_example(inputs={"input_string": [fields["text"]]},
                                          parameters={"top_k": config.top_k},
                                          gold={"label": fields["label"], "label_id": item.label_id}, **common)
        else:
            scored = {"top_k": 1, "score": SCORE_PSEUDO_LOG_LIKELIHOOD, "seed": config.seed, "line": item.number}
            yield jobs.evaluation_example(inputs={"input_string": [fields["text"]]}, parameters=scored, gold={},
                                          **common)


def _qa_parameters() -> dict[str, Any]:
    """The QA route's defaults, as a job stores them."""
    body = QuestionAnsweringRequest.model_validate({"inputs": {"question": ["q"], "context": ["c"]}})
    return body.parameters.model_dump(exclude_none=True)


def _public(evaluation: Evaluation) -> dict[str, Any]:
    return evaluations.evaluation_to_public(evaluation, evaluations.counts(read_db(), evaluation))


def own_evaluation(evaluation_id: str) -> Evaluation:
    evaluation = evaluations.own_evaluation(read_db(), current_key().id, evaluation_id)
    if evaluation is None:
        raise ApiError(404, "not_found", f"no evaluation {evaluation_id}")
    return evaluation


@bp.post("/evaluations")
def create() -> Response:
    body = parse(EvaluationRequest, read_json_object())
    state, key = app_state(), current_key().id
    served_model = state.settings.model_name(body.task)
    problems = webhook_problems(body.webhook, state.settings.webhook_allow_private)
    if body.model is not None and body.model != served_model:
        problems.append(detail(["model"], f"this service serves {served_model} for {body.task}"))
    file = files.own_file(read_db(), key, body.input_file_id)
    if file is None or file.purpose != "evaluation":
        problems.append(detail(["input_file_id"], "names no file of yours uploaded with purpose 'evaluation'"))
    if problems:
        raise invalid(problems)
    metric_names = body.metrics or list(METRICS[body.task])
    with Spool[_Example]() as spool:
        return _create(body, key, served_model, metric_names, spool)


def _create(body: EvaluationRequest, key: str, served_model: str, metric_names: list[str],
            spool: Spool[_Example]) -> Response:
    state = app_state()
    total, errors = _validate(body.task, body.input_file_id, metric_names, spool)
    fields: dict[str, Any] = {
        "id": evaluations.new_evaluation_id(), "api_key_id": key, "task": body.task, "model": served_model,
        "input_file_id": body.input_file_id, "metric_names": metric_names, "config": body.config.model_dump(),
        "webhook": body.webhook, "meta": body.metadata, "created_at": utcnow()}
    if errors:
        evaluation = evaluations.failed_evaluation(db(), error={
            "code": "invalid_file", "message": f"{len(errors)} line(s) of the file are not valid examples "
                                               f"of {body.task}; nothing was run", "lines": errors}, **fields)
        log.info("evaluation failed validation", extra={"evaluation": evaluation.id, "errors": len(errors)})
        return jsonify(_public(evaluation))
    samples = body.config.max_samples
    chosen = (set(random.Random(body.config.seed).sample(range(1, total + 1), samples))
              if samples is not None and samples < total else None)
    evaluation = evaluations.create_evaluation(
        db(), examples=_example_rows(body, fields["id"], key, spool, chosen), **fields)
    try:
        wakeups.request(state.celery, state.redis, body.task)
    except Exception as error:  # the examples are committed: `beat` wakes a worker for them later
        log.warning("waking a worker for evaluation %s failed (%s); beat will", evaluation.id,
                    error.__class__.__name__)
    log.info("evaluation created", extra={"evaluation": evaluation.id, "examples": evaluation.total})
    response = jsonify(_public(evaluation))
    response.status_code = 202
    return response


@bp.get("/evaluations/<id:evaluation_id>")
def get(evaluation_id: str) -> Response:
    return jsonify(_public(own_evaluation(evaluation_id)))


@bp.get("/evaluations")
def list_evaluations() -> Response:
    return page(lambda limit, after: evaluations.list_evaluations(read_db(), current_key().id, limit, after),
                _public)


@bp.post("/evaluations/<id:evaluation_id>/cancel")
def cancel(evaluation_id: str) -> Response:
    session = db()
    evaluation = evaluations.own_evaluation(session, current_key().id, evaluation_id)
    if evaluation is None:
        raise ApiError(404, "not_found", f"no evaluation {evaluation_id}")
    if evaluations.cancel_evaluation(session, evaluation, utcnow()):
        sweep_requests.ask(app_state().redis)  # with no example running, beat can end it at once
    return jsonify(_public(evaluation))
