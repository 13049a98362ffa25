"""Queueing behaviour with real processes started and stopped on purpose: cancel before a worker runs, batching
of jobs that wait together, and `beat` re-publishing messages Redis lost."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from models.tables import Job
from tests.integration.backends import make_stack
from tests.integration.stack import Stack, wait_for

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 1}}


@pytest.fixture()
def stack(tmp_path_factory: pytest.TempPathFactory, backend: tuple[str, str],
          tiny_models: dict[str, Path]) -> Iterator[Stack]:
    redis.Redis.from_url(backend[1]).flushdb()
    stack = make_stack(tmp_path_factory, backend, tiny_models,
                       env={"DISTILQ_REQUEUE_AFTER_S": "5", "DISTILQ_SWEEP_INTERVAL_S": "0.5"})
    stack.start_api()
    yield stack
    stack.stop_all()


def test_jobs_queued_together_share_a_forward_pass_and_a_canceled_one_never_runs(stack: Stack) -> None:
    http = stack.client(stack.new_key())
    ids = [http.post(f"{stack.url}/v1/fill-mask", json=ONE).json()["id"] for _ in range(10)]
    canceled = http.post(f"{stack.url}/v1/jobs/{ids[3]}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["completed_at"] is not None

    stack.start_worker()
    jobs = {job_id: stack.wait_job(http, job_id) for job_id in ids}
    ran = [jobs[i] for i in ids if i != ids[3]]
    assert all(job["status"] == "succeeded" for job in ran)
    # The first message claimed every queued job: one forward pass of 9 inputs.
    assert {job["metrics"]["batch_size"] for job in ran} == {9}
    with stack.sessions() as session:
        row = session.scalars(select(Job).where(Job.id == ids[3])).one()
        assert (row.status, row.output, row.attempts, row.started_at) == ("canceled", None, 0, None)


def test_beat_republishes_jobs_whose_message_was_lost(stack: Stack) -> None:
    http = stack.client(stack.new_key())
    ids = [http.post(f"{stack.url}/v1/fill-mask", json=ONE).json()["id"] for _ in range(3)]
    redis.Redis.from_url(stack.redis_url).flushdb()  # Redis restarted empty: the messages are gone

    stack.start_worker()
    stack.start("beat", "beat")
    for job_id in ids:
        assert stack.wait_job(http, job_id, timeout_s=60)["status"] == "succeeded"
    with stack.sessions() as session:
        rows = session.scalars(select(Job).where(Job.id.in_(ids))).all()
        assert all(row.published_at is not None and row.attempts == 1 for row in rows)


def test_a_duplicated_message_claims_nothing(stack: Stack) -> None:
    from distilq.queue import make_celery, publish_job

    http = stack.client(stack.new_key())
    stack.start_worker()
    job = http.post(f"{stack.url}/v1/fill-mask", json=ONE, headers={"Prefer": "wait=30"}).json()
    assert job["status"] == "succeeded"
    celery = make_celery(stack.redis_url)
    for _ in range(3):
        publish_job(celery, job["id"], "fill-mask")
    # A later job behind the duplicates proves they were consumed before it.
    later = http.post(f"{stack.url}/v1/fill-mask", json=ONE, headers={"Prefer": "wait=30"}).json()
    assert later["status"] == "succeeded"
    wait_for(lambda: redis.Redis.from_url(stack.redis_url).llen("fill-mask") == 0, 30, "the queue to drain")
    again = http.get(f"{stack.url}/v1/jobs/{job['id']}").json()
    assert again["metrics"]["attempts"] == 1
    assert again["output"] == job["output"] and again["completed_at"] == job["completed_at"]


def test_only_one_beat_sweeps_and_another_takes_over(stack: Stack) -> None:
    held = "this beat holds the beat lock"
    stack.start("beat-1", "beat")
    wait_for(lambda: held in stack.log("beat-1"), 30, "the first beat to take the lock")
    stack.start("beat-2", "beat")
    wait_for(lambda: "standing by" in stack.log("beat-2"), 30, "the second beat to find the lock taken")
    assert held not in stack.log("beat-2")
    stack.stop("beat-1", signal.SIGKILL)  # its lock expires; the other takes over
    wait_for(lambda: held in stack.log("beat-2"), 60, "the second beat to take over")
