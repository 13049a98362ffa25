"""The one place a job row becomes its public JSON (API answers and webhook bodies alike)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.clock import isoformat
from models.tables import Job


def job_urls(job_id: str) -> dict[str, str]:
    return {"get": f"/v1/jobs/{job_id}", "cancel": f"/v1/jobs/{job_id}/cancel"}


def job_to_public(job: Job | Mapping[str, Any], include_output: bool = True) -> dict[str, Any]:
    """The job object; without `output` when `include_output` is false (job lists, by default). `job`: a row, or
    its attributes by name (what a claim or a read of some columns holds: no ORM object is built for it)."""
    if isinstance(job, Mapping):
        return _public(job, include_output)
    return _public({name: getattr(job, name) for name in _ATTRIBUTES}, include_output)


#: The attributes of a job its public JSON shows.
_ATTRIBUTES = ("id", "task", "model", "status", "input", "parameters", "output", "error", "created_at", "started_at",
               "completed_at", "queue_ms", "inference_ms", "batch_size", "attempts", "webhook",
               "webhook_events_filter", "meta")


def _public(job: Mapping[str, Any], include_output: bool) -> dict[str, Any]:
    public = {
        "id": job["id"],
        "task": job["task"],
        "model": job["model"],
        "status": job["status"],
        "input": job["input"],
        "parameters": job["parameters"],
        "output": job["output"],
        "error": job["error"],
        "created_at": isoformat(job["created_at"]),
        "started_at": isoformat(job["started_at"]),
        "completed_at": isoformat(job["completed_at"]),
        "metrics": {
            "queue_ms": job["queue_ms"],
            "inference_ms": job["inference_ms"],
            "batch_size": job["batch_size"],
            "attempts": job["attempts"],
        },
        "webhook": job["webhook"],
        "webhook_events_filter": job["webhook_events_filter"],
        "metadata": job["meta"],
        "urls": job_urls(job["id"]),
    }
    if not include_output:
        del public["output"]
    return public
