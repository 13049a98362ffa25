"""What the API answers, typed: a job, a file, a batch, an evaluation. Each keeps the whole answer in `raw`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JOB_ENDED = ("succeeded", "failed", "canceled")
BATCH_ENDED = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    id: str
    task: str
    status: str
    #: One entry per input, in input order (fill-mask: predictions; QA: an answer, a list when top_k > 1).
    output: list[Any] | None
    error: dict[str, Any] | None
    metrics: dict[str, Any]
    created_at: str
    completed_at: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def ended(self) -> bool:
        return self.status in JOB_ENDED

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(data["id"], data["task"], data["status"], data.get("output"), data.get("error"),
                   data.get("metrics") or {}, data["created_at"], data.get("completed_at"), data)


@dataclass(frozen=True)
class FileObject:
    id: str
    bytes: int
    filename: str
    purpose: str
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileObject:
        return cls(data["id"], data["bytes"], data["filename"], data["purpose"], data)


@dataclass(frozen=True)
class Batch:
    id: str
    status: str
    #: {"total", "completed", "failed"}
    request_counts: dict[str, int]
    output_file_id: str | None
    error_file_id: str | None
    errors: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def ended(self) -> bool:
        return self.status in BATCH_ENDED

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls(data["id"], data["status"], data["request_counts"], data.get("output_file_id"),
                   data.get("error_file_id"), data.get("errors"), data)


@dataclass(frozen=True)
class Evaluation:
    id: str
    task: str
    status: str
    #: {"total", "done", "failed"}
    result_counts: dict[str, int]
    metrics: dict[str, float | None] | None
    output_file_id: str | None
    error: dict[str, Any] | None
    completed_at: int | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def ended(self) -> bool:
        """Its metrics and output file are written (a canceled one ends once what was running has finished)."""
        return self.completed_at is not None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return cls(data["id"], data["task"], data["status"], data["result_counts"], data.get("metrics"),
                   data.get("output_file_id"), data.get("error"), data.get("completed_at"), data)
