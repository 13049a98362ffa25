"""Retention over real processes: beat deletes what has outlived `DISTILQ_RETENTION_S` (3 s here) — a finished job, a
batch with its files — while a job still queued, however old, stays (`store/retention.py`; its rules one by one in
tests/unit/store/test_retention.py)."""

from __future__ import annotations

import json

import pytest

from tests.integration.stack import Stack, wait_for

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 1}}
QA = {"inputs": {"question": ["Where do I live?"], "context": ["My name is Wolfgang and I live in Berlin."]}}

pytestmark = pytest.mark.stack(start=("api", "beat"), env={
    "DISTILQ_RETENTION_S": "3", "DISTILQ_IDEMPOTENCY_TTL_S": "3", "DISTILQ_SWEEP_INTERVAL_S": "0.2"})


def test_a_finished_job_and_a_batch_go_once_they_have_outlived_retention_and_a_queued_job_stays(stack: Stack) -> None:
    http = stack.client(stack.new_key())
    queued = http.post(f"{stack.url}/v1/fill-mask", json=ONE).json()  # no worker serves fill-mask: it stays queued
    stack.start_worker("worker", "--queues", "question-answering")
    done = http.post(f"{stack.url}/v1/question-answering", json=QA, headers={"Prefer": "wait=60"}).json()
    assert done["status"] == "succeeded"
    lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/question-answering", "body": QA})
             for i in range(3)]
    file = http.post(f"{stack.url}/v1/files", files={"file": ("in.jsonl", "\n".join(lines).encode())},
                     data={"purpose": "batch"}).json()
    created = http.post(f"{stack.url}/v1/batches", json={"input_file_id": file["id"]}).json()
    batch = stack.wait_batch(http, created["id"])
    assert batch["status"] == "completed"

    def gone(path: str) -> bool:
        return http.get(f"{stack.url}{path}").status_code == 404

    for path in (f"/v1/jobs/{done['id']}", f"/v1/batches/{batch['id']}", f"/v1/files/{file['id']}",
                 f"/v1/files/{batch['output_file_id']}"):
        wait_for(lambda path=path: gone(path), 30, f"{path} to be deleted")  # type: ignore[misc]
    answer = http.get(f"{stack.url}/v1/jobs/{queued['id']}")  # older than all of them, but in flight: kept
    assert answer.status_code == 200 and answer.json()["status"] == "queued"
    assert http.post(f"{stack.url}/v1/jobs/{queued['id']}/cancel").json()["status"] == "canceled"
    wait_for(lambda: gone(f"/v1/jobs/{queued['id']}"), 30, "the canceled job to be deleted")
