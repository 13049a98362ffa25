"""The one place a job row becomes its public JSON (API answers and webhook bodies alike)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from core.clock import isoformat
from models.tables import Job


def job_urls(job_id: str) -> dict[str, str]:
    return {"get": f"/v1/jobs/{job_id}", "cancel": f"/v1/jobs/{job_id}/cancel"}


def job_to_public(job: Job | Mapping[str, Any], include_output: bool = True) -> dict[str, Any]:
    """The job object; without `output` when `include_output` is false (job lists, by default). `job`: a row, or
    its attributes by name (what a claim or a read of some columns holds: no ORM object is built for it)."""
    get: Callable[[str], Any] = job.__getitem__ if isinstance(job, Mapping) else partial(getattr, job)
    public = {
        "id": get("id"),
        "task": get("task"),
        "model": get("model"),
        "status": get("status"),
        "input": get("input"),
        "parameters": get("parameters"),
        "output": get("output"),
        "error": get("error"),
        "created_at": isoformat(get("created_at")),
        "started_at": isoformat(get("started_at")),
        "completed_at": isoformat(get("completed_at")),
        "metrics": {
            "queue_ms": get("queue_ms"),
            "inference_ms": get("inference_ms"),
            "batch_size": get("batch_size"),
            "attempts": get("attempts"),
        },
        "webhook": get("webhook"),
        "webhook_events_filter": get("webhook_events_filter"),
        "metadata": get("meta"),
        "urls": job_urls(get("id")),
    }
    if not include_output:
        del public["output"]
    return public
