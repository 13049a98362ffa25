"""Queueing behaviour with real processes started and stopped on purpose: cancel before a worker runs, batching
of jobs that wait together, `beat` waking a worker for jobs whose wake-up Redis lost, duplicate wake-ups, beat
sweeping when asked."""

from __future__ import annotations

import json
import queue
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from core import sweep_requests
from core.queue import read_announcements, waiter_channel
from core.settings import Settings
from distilq.stack import EmbeddedRedis
from models.tables import Job
from tests.integration.stack import Stack, announcement_of, wait_for
from worker.sweeper import LOCK_NAME, run_forever

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 1}}

pytestmark = pytest.mark.stack(env={"DISTILQ_REQUEUE_AFTER_S": "5", "DISTILQ_SWEEP_INTERVAL_S": "0.5"})


def test_jobs_queued_together_share_a_forward_pass_and_a_canceled_one_never_runs(fresh_stack: Stack) -> None:
    http = fresh_stack.client(fresh_stack.new_key())
    ids = [http.post(f"{fresh_stack.url}/v1/fill-mask", json=ONE).json()["id"] for _ in range(10)]
    canceled = http.post(f"{fresh_stack.url}/v1/jobs/{ids[3]}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["completed_at"] is not None
    # Ten submissions, one wake-up: the first set the flag and published; the others found it pending.
    assert redis.Redis.from_url(fresh_stack.redis_url).llen("fill-mask") == 1

    fresh_stack.start_worker()
    jobs = {job_id: fresh_stack.wait_job(http, job_id) for job_id in ids}
    ran = [jobs[i] for i in ids if i != ids[3]]
    assert all(job["status"] == "succeeded" for job in ran)
    # The first message claimed every queued job: one forward pass of 9 inputs.
    assert {job["metrics"]["batch_size"] for job in ran} == {9}
    with fresh_stack.sessions() as session:
        row = session.scalars(select(Job).where(Job.id == ids[3])).one()
        assert (row.status, row.output, row.attempts, row.started_at) == ("canceled", None, 0, None)


def test_a_cancel_is_announced_to_the_process_holding_the_request(fresh_stack: Stack) -> None:
    """No worker runs: a held request's job stays queued until another request cancels it, and the API process
    that cancels announces it on the channel of the one holding the request (the row's `held_by`), which answers
    the held request with the canceled job."""
    key = fresh_stack.new_key()
    holder, other = fresh_stack.client(key), fresh_stack.client(key)
    with (redis.Redis.from_url(fresh_stack.redis_url).pubsub(ignore_subscribe_messages=True) as observer,
          ThreadPoolExecutor(1) as pool):
        observer.psubscribe(waiter_channel("*"))
        held = pool.submit(lambda: holder.post(f"{fresh_stack.url}/v1/fill-mask", json=ONE,
                                               headers={"Prefer": "wait=60"}, timeout=90).json())
        queued = wait_for(lambda: other.get(f"{fresh_stack.url}/v1/jobs?status=queued").json()["data"], 30,
                          "the held request's job to be stored")
        job_id = queued[0]["id"]
        assert other.post(f"{fresh_stack.url}/v1/jobs/{job_id}/cancel").json()["status"] == "canceled"
        heard = wait_for(lambda: announcement_of(observer, {job_id}), 30, "the cancel's announcement")
        answered = held.result(timeout=90)
    assert (answered["id"], answered["status"]) == (job_id, "canceled")
    with fresh_stack.sessions() as session:
        held_by = session.get_one(Job, job_id).held_by
    assert held_by is not None and heard["channel"].decode() == waiter_channel(held_by)
    assert read_announcements(heard["data"]) == [(job_id, None)]  # by its status: the holder reads the row


@pytest.mark.stack(start=("api", "beat"), env={"DISTILQ_SWEEP_INTERVAL_S": "600"})
def test_a_batch_and_an_evaluation_cancelled_before_any_line_ran_end_at_once(fresh_stack: Stack) -> None:
    """No worker runs, so no line is in flight and no worker will write one: only the API's ask after the cancel
    (`core/sweep_requests.py`) can make beat, which sweeps every 600 s here, end them."""
    http = fresh_stack.client(fresh_stack.new_key())
    # Past beat's first sweep (at its start): it has taken an ask of ours, so it waits between sweeps.
    client = redis.Redis.from_url(fresh_stack.redis_url)
    wait_for(lambda: "holds the beat lock" in fresh_stack.log("beat"), 60, "beat to take the lock")
    sweep_requests.ask(client)
    wait_for(lambda: client.llen(sweep_requests.KEY) == 0, 60, "beat to take the ask")
    created = {}
    for kind, line in (("batch", {"custom_id": "r0", "method": "POST", "url": "/v1/fill-mask", "body": ONE}),
                       ("evaluation", {"text": "Paris is the [MASK] of France.", "label": "the"})):
        file = http.post(f"{fresh_stack.url}/v1/files", data={"purpose": kind},
                         files={"file": ("f.jsonl", (json.dumps(line) + "\n").encode())}).json()
        route = "batches" if kind == "batch" else "evaluations"
        body = {"input_file_id": file["id"]} if kind == "batch" else {"task": "fill-mask", "input_file_id": file["id"]}
        created[route] = http.post(f"{fresh_stack.url}/v1/{route}", json=body).json()["id"]
        http.post(f"{fresh_stack.url}/v1/{route}/{created[route]}/cancel").raise_for_status()
    # A batch is `cancelled` once beat ends it (`cancelling` till then); an evaluation is `canceled` at once and
    # has a `completed_at` once beat ends it.
    wait_for(lambda: http.get(f"{fresh_stack.url}/v1/batches/{created['batches']}").json()["status"] == "cancelled",
             60, "the batch to end")
    wait_for(lambda: http.get(f"{fresh_stack.url}/v1/evaluations/{created['evaluations']}").json()["completed_at"],
             60, "the evaluation to end")


def test_beat_wakes_a_worker_for_jobs_whose_wake_up_was_lost(fresh_stack: Stack) -> None:
    http = fresh_stack.client(fresh_stack.new_key())
    ids = [http.post(f"{fresh_stack.url}/v1/fill-mask", json=ONE).json()["id"] for _ in range(3)]
    redis.Redis.from_url(fresh_stack.redis_url).flushdb()  # Redis restarted empty: the wake-up is gone

    fresh_stack.start_worker()
    fresh_stack.start("beat", "beat")
    for job_id in ids:
        assert fresh_stack.wait_job(http, job_id, timeout_s=60)["status"] == "succeeded"
    with fresh_stack.sessions() as session:
        rows = session.scalars(select(Job).where(Job.id.in_(ids))).all()
        assert all(row.attempts == 1 for row in rows)
        # Beat's wake-up (it marks the jobs it found stale; one wake-up drains them all, stale yet or not).
        assert any(row.published_at is not None for row in rows)


def test_duplicate_wake_ups_run_nothing_twice(fresh_stack: Stack) -> None:
    from core import wakeups
    from core.queue import make_celery

    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker()
    job = http.post(f"{fresh_stack.url}/v1/fill-mask", json=ONE, headers={"Prefer": "wait=30"}).json()
    assert job["status"] == "succeeded"
    celery, client = make_celery(fresh_stack.redis_url), redis.Redis.from_url(fresh_stack.redis_url)
    for _ in range(3):
        wakeups.publish(celery, client, "fill-mask")
    # A later job behind the duplicates proves they were consumed before it.
    later = http.post(f"{fresh_stack.url}/v1/fill-mask", json=ONE, headers={"Prefer": "wait=30"}).json()
    assert later["status"] == "succeeded"
    wait_for(lambda: redis.Redis.from_url(fresh_stack.redis_url).llen("fill-mask") == 0, 30, "the queue to drain")
    again = http.get(f"{fresh_stack.url}/v1/jobs/{job['id']}").json()
    assert again["metrics"]["attempts"] == 1
    assert again["output"] == job["output"] and again["completed_at"] == job["completed_at"]


def test_only_one_beat_sweeps_and_another_takes_over(fresh_stack: Stack) -> None:
    held = "this beat holds the beat lock"
    fresh_stack.start("beat-1", "beat")
    wait_for(lambda: held in fresh_stack.log("beat-1"), 30, "the first beat to take the lock")
    fresh_stack.start("beat-2", "beat")
    wait_for(lambda: "standing by" in fresh_stack.log("beat-2"), 30, "the second beat to find the lock taken")
    assert held not in fresh_stack.log("beat-2")
    fresh_stack.stop("beat-1", signal.SIGKILL)  # its lock expires; the other takes over
    wait_for(lambda: held in fresh_stack.log("beat-2"), 60, "the second beat to take over")


def test_a_worker_whose_model_does_not_load_takes_no_job_and_says_why(fresh_stack: Stack,
                                                                      tmp_path: Path) -> None:
    """It once consumed jobs, sent `job.started`, and left them to fail as `worker_lost` minutes later."""
    http = fresh_stack.client(fresh_stack.new_key())
    job_id = http.post(f"{fresh_stack.url}/v1/fill-mask", json=ONE).json()["id"]
    worker = fresh_stack.start("worker", "worker", "--queues", "fill-mask", "--metrics-port", "0",
                               env={"DISTILQ_FILL_MASK_MODEL": str(tmp_path / "no-model-here")})
    assert worker.wait(120) == 3
    log = fresh_stack.log("worker")
    assert "cannot serve fill-mask" in log and "no-model-here" in log and "CRITICAL" in log
    job = http.get(f"{fresh_stack.url}/v1/jobs/{job_id}").json()
    assert (job["status"], job["metrics"]["attempts"], job["started_at"]) == ("queued", 0, None)



def test_the_beat_that_sweeps_sweeps_again_when_asked_and_stops_at_once(redis_server: EmbeddedRedis) -> None:
    """Between periodic sweeps an hour apart, beat sweeps the files (`Sweeper.sweep_files`) when asked
    (`core/sweep_requests.py`); asks made while it sweeps make one sweep more. The sweeper's work is beside the
    point here: one that records each sweep, with the asks still waiting as it began, and holds its first sweep
    until the asks are made."""
    client = redis.Redis.from_url(redis_server.url.removesuffix("/0") + "/14", socket_timeout=5)
    client.flushdb()
    sweeps: queue.Queue[tuple[str, int]] = queue.Queue()
    asked = threading.Event()

    class Recording:
        settings = Settings(sweep_interval_s=3600)

        def sweep(self) -> dict[str, int]:
            sweeps.put(("all", client.llen(sweep_requests.KEY)))
            asked.wait(30)
            return {}

        def sweep_files(self) -> dict[str, int]:
            sweeps.put(("files", client.llen(sweep_requests.KEY)))
            return {}

    stop = threading.Event()
    beat = threading.Thread(target=run_forever, args=(Recording(), client, stop))
    beat.start()
    try:
        assert sweeps.get(timeout=30) == ("all", 0)  # the first, at start
        for _ in range(3):
            sweep_requests.ask(client)
        asked.set()
        assert sweeps.get(timeout=30) == ("files", 0)  # the three asks were one, taken before this sweep
        assert client.get(LOCK_NAME) is not None  # the beat that sweeps holds the lock
        sweep_requests.ask(client)
        assert sweeps.get(timeout=30) == ("files", 0)
    finally:
        stop.set()
        beat.join(timeout=30)
    assert not beat.is_alive()
