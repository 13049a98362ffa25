"""Response bodies, as pydantic models: they generate the OpenAPI document's response schemas (with the request
schemas of contract/requests.py), and schemathesis checks every answer of the running API against them."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from contract.requests import (
    EventName,
    FillMaskInputs,
    FillMaskParameters,
    QuestionAnsweringInputs,
    QuestionAnsweringParameters,
)

Status = Literal["queued", "running", "succeeded", "failed", "canceled"]
Task = Literal["fill-mask", "question-answering"]


class FillMaskPrediction(BaseModel):
    score: float
    token: int
    token_str: str
    sequence: str


class Answer(BaseModel):
    score: float
    start: int
    end: int
    answer: str


#: One entry per input: fill-mask's predictions (a list per mask when an input has several), or QA's answer
#: (a list when top_k > 1).
OutputEntry = list[FillMaskPrediction] | list[list[FillMaskPrediction]] | Answer | list[Answer]


class JobError(BaseModel):
    code: str
    message: str


class JobMetrics(BaseModel):
    queue_ms: float | None
    inference_ms: float | None
    batch_size: int | None
    attempts: int


class JobUrls(BaseModel):
    get: str
    cancel: str


class JobObject(BaseModel):
    """The job object of the contract: what every route and webhook body shows of a job."""

    id: str
    task: Task
    model: str
    status: Status
    input: FillMaskInputs | QuestionAnsweringInputs
    parameters: FillMaskParameters | QuestionAnsweringParameters
    output: list[OutputEntry] | None = Field(
        default=None, description="Left out of job lists unless `include=output` is asked for")
    error: JobError | None
    created_at: str = Field(description="RFC 3339, UTC")
    started_at: str | None
    completed_at: str | None
    metrics: JobMetrics
    webhook: str | None
    webhook_events_filter: list[EventName]
    metadata: dict[str, Any]
    urls: JobUrls


class JobList(BaseModel):
    data: list[JobObject]
    next_cursor: str | None


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail]


class Error(BaseModel):
    error: ErrorInfo


class DeliveryAttempt(BaseModel):
    attempt: int
    started_at: str | None
    duration_ms: float
    response_status: int | None
    error: str | None


class Delivery(BaseModel):
    id: str = Field(description="The event's id: the webhook-id header of every attempt")
    type: Literal["job.started", "job.completed"]
    url: str
    status: Literal["pending", "delivered", "gone", "failed"]
    created_at: str | None
    delivered_at: str | None
    next_attempt_at: str | None
    attempts: list[DeliveryAttempt]


class DeliveryList(BaseModel):
    data: list[Delivery]


class WebhookSecret(BaseModel):
    secret: str


class RotatedSecret(BaseModel):
    secret: str
    previous_secret_expires_at: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


#: What a file is for: an upload's, or what distilq wrote.
FilePurpose = Literal["batch", "evaluation", "batch_output", "evaluation_output"]
FILE_PURPOSES: tuple[str, ...] = get_args(FilePurpose)


class FileObject(BaseModel):
    id: str
    object: Literal["file"]
    bytes: int
    filename: str
    purpose: FilePurpose
    created_at: int


class FileList(BaseModel):
    object: Literal["list"]
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    """`DELETE /v1/files/{id}`'s answer (the OpenAI Files API's)."""

    id: str
    object: Literal["file"]
    deleted: Literal[True]


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchObject(BaseModel):
    """A batch, as the OpenAI Batch API shows one (times in Unix seconds)."""

    id: str
    object: Literal["batch"]
    endpoint: str | None
    errors: dict[str, Any] | None
    input_file_id: str
    completion_window: str
    status: Literal["validating", "in_progress", "finalizing", "completed", "failed", "cancelling", "cancelled"]
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, Any] | None


class BatchList(BaseModel):
    object: Literal["list"]
    data: list[BatchObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ResultCounts(BaseModel):
    total: int
    done: int
    failed: int


class EvaluationObject(BaseModel):
    id: str
    object: Literal["evaluation"]
    task: Task
    model: str
    input_file_id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    result_counts: ResultCounts
    metrics: dict[str, float | None] | None
    metric_names: list[str]
    config: dict[str, Any]
    output_file_id: str | None
    error: dict[str, Any] | None
    created_at: int
    canceled_at: int | None
    completed_at: int | None
    metadata: dict[str, Any] | None


class EvaluationList(BaseModel):
    object: Literal["list"]
    data: list[EvaluationObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Stats(BaseModel):
    queued: int
    running: int
    finished_per_s: float
    window_s: int
