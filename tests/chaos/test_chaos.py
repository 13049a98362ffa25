"""Nothing lost, nothing doubled: workers killed mid-batch, Redis crashed and restarted empty, the database
stopped under the API, workers stopped with SIGTERM. Assertions are on the database's rows."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from transformers import pipeline

from bench.e2e import descendants
from distilq.stack import EmbeddedRedis
from models.tables import Batch, Job
from tests.chaos.postgres_cluster import PostgresCluster
from tests.integration.stack import Stack, distilq_up, processes_with, wait_for

CHAOS_ENV = {
    "DISTILQ_LEASE_S": "5",
    "DISTILQ_REQUEUE_AFTER_S": "5",
    "DISTILQ_SWEEP_INTERVAL_S": "0.5",
    "DISTILQ_MAX_BATCH_SIZE": "8",
    "DISTILQ_CHECK_LEASE_S": "2",
}
#: The stack of the tests that take `fresh_stack`: the slow model, and a Redis of the test's own to crash.
pytestmark = pytest.mark.stack(models="slow", own_redis=True, env=CHAOS_ENV)
WORDS = "Paris is the capital of France and the river flows north through the valley of the old kingdom".split()


def texts(count: int, words: int = 120) -> list[str]:
    out = []
    for i in range(count):
        body = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(words + i % 40)]
        body[(i * 13) % len(body)] = "[MASK]"
        out.append(" ".join(body) + ".")
    return out


@pytest.fixture(scope="module")
def reference(slow_models: dict[str, Path]) -> Any:
    fill_mask = pipeline("fill-mask", model=str(slow_models["fill-mask"]), device="cpu")
    return lambda text: fill_mask(text, top_k=2)


def assert_reference_output(job: dict[str, Any], reference: Any) -> None:
    [output] = job["output"]
    expected = reference(job["input"]["input_string"][0])
    assert [(o["token"], o["sequence"]) for o in output] == [(e["token"], e["sequence"]) for e in expected]
    assert [o["score"] for o in output] == pytest.approx([e["score"] for e in expected], abs=1e-4)


def submit_all(stack: Stack, http: requests.Session, bodies: list[str]) -> list[str]:
    ids = []
    for text in bodies:
        response = http.post(f"{stack.url}/v1/fill-mask",
                             json={"inputs": {"input_string": [text]}, "parameters": {"top_k": 2}}, timeout=30)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def rows(stack: Stack, ids: list[str]) -> dict[str, Job]:
    with stack.sessions() as session:
        return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}


def running(stack: Stack, ids: list[str]) -> list[str]:
    return [job_id for job_id, job in rows(stack, ids).items() if job.status == "running"]


def finished_lines(stack: Stack, workers: tuple[str, ...]) -> list[list[str]]:
    """Per worker, the ids of its "job finished" log lines. A worker logs a job after its write commits, so a
    test that reads these waits for them (`logged_all`) rather than for the rows alone."""
    return [[json.loads(line)["job_id"] for line in stack.log(name).splitlines() if '"job finished"' in line]
            for name in workers]


def logged_all(stack: Stack, workers: tuple[str, ...], ids: list[str]) -> bool:
    return set(ids) <= {job_id for lines in finished_lines(stack, workers) for job_id in lines}


def all_finished(stack: Stack, ids: list[str]) -> bool:
    return all(job.status in ("succeeded", "failed", "canceled") for job in rows(stack, ids).values())


def test_worker_killed_mid_batch_every_job_finishes_once(fresh_stack: Stack, reference: Any) -> None:
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1")
    fresh_stack.start("beat", "beat")
    ids = submit_all(fresh_stack, http, texts(24))
    wait_for(lambda: running(fresh_stack, ids), 60, "a batch to start")
    fresh_stack.stop("worker-1", signal.SIGKILL)
    in_flight = running(fresh_stack, ids)  # the only worker is dead: these were in its batch
    assert in_flight
    fresh_stack.start_worker("worker-2")
    wait_for(lambda: all_finished(fresh_stack, ids), 180, "every job to finish")

    final = rows(fresh_stack, ids)
    assert all(job.status == "succeeded" for job in final.values())
    for job_id in in_flight:
        assert final[job_id].attempts == 2, "the killed batch's jobs ran again, once"
    assert all(1 <= job.attempts <= 2 for job in final.values())
    for job_id in ids:
        assert_reference_output(http.get(f"{fresh_stack.url}/v1/jobs/{job_id}").json(), reference)


def test_redis_killed_and_restarted_empty_every_job_finishes(fresh_stack: Stack, own_redis: EmbeddedRedis,
                                                             reference: Any) -> None:
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker()
    fresh_stack.start("beat", "beat")
    ids = submit_all(fresh_stack, http, texts(20))
    wait_for(lambda: running(fresh_stack, ids), 60, "a batch to start")
    own_redis.kill()
    ids += submit_all(fresh_stack, http, texts(3, words=30))  # accepted while Redis is down: stored, published later
    own_redis.start()  # empty: every queued message is gone
    wait_for(lambda: all_finished(fresh_stack, ids), 240, "every job to finish after the Redis crash")
    final = rows(fresh_stack, ids)
    assert all(job.status == "succeeded" for job in final.values())
    for job_id in ids:
        assert_reference_output(http.get(f"{fresh_stack.url}/v1/jobs/{job_id}").json(), reference)


def device_process_of(stack: Stack, worker: str) -> int:
    """The pid of a worker's device process (`worker/engine/device_process.py`): its one spawned child."""
    [pid] = [pid for pid in descendants(stack.processes[worker].pid)
             if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return pid


def test_a_worker_whose_device_process_is_killed_exits_and_every_job_finishes_once(fresh_stack: Stack,
                                                                                  reference: Any) -> None:
    """The models' process dies mid-batch: its worker can run nothing, so it exits as if killed (status 70), and
    its pass's jobs run again on the next worker, once."""
    from worker.engine.device_process import EXIT_DEVICE_LOST

    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1", env={"DISTILQ_DEVICE_PROCESS": "true"})
    fresh_stack.start("beat", "beat")
    device = device_process_of(fresh_stack, "worker-1")
    ids = submit_all(fresh_stack, http, texts(24))
    wait_for(lambda: running(fresh_stack, ids), 60, "a batch to start")
    os.kill(device, signal.SIGKILL)
    assert fresh_stack.processes["worker-1"].wait(60) == EXIT_DEVICE_LOST
    in_flight = running(fresh_stack, ids)
    assert in_flight
    fresh_stack.start_worker("worker-2", env={"DISTILQ_DEVICE_PROCESS": "true"})
    wait_for(lambda: all_finished(fresh_stack, ids), 180, "every job to finish")
    final = rows(fresh_stack, ids)
    assert all(job.status == "succeeded" for job in final.values())
    for job_id in in_flight:
        assert final[job_id].attempts == 2, "the lost pass's jobs ran again, once"
    for job_id in ids:
        assert_reference_output(http.get(f"{fresh_stack.url}/v1/jobs/{job_id}").json(), reference)


@pytest.mark.parametrize("device_process", ["false", "true"])
def test_sigterm_lets_the_worker_finish_its_batch(fresh_stack: Stack, device_process: str) -> None:
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1", env={"DISTILQ_DEVICE_PROCESS": device_process})
    family = descendants(fresh_stack.processes["worker-1"].pid)
    ids = submit_all(fresh_stack, http, texts(24))
    in_flight = wait_for(lambda: running(fresh_stack, ids), 60, "a batch to start")
    status = fresh_stack.stop("worker-1", signal.SIGTERM, timeout_s=120)
    assert status == 0, fresh_stack.log("worker-1")[-3000:]
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in family), 30,
             "the worker's processes to exit with it")
    after = rows(fresh_stack, ids)
    for job_id in in_flight:
        assert after[job_id].status == "succeeded" and after[job_id].attempts == 1
    fresh_stack.start_worker("worker-2")  # the rest, released on shutdown, run on the next worker
    wait_for(lambda: all_finished(fresh_stack, ids), 180, "every job to finish")
    assert all(job.status == "succeeded" and job.attempts == 1 for job in rows(fresh_stack, ids).values())


def test_hundreds_of_jobs_survive_killed_workers_and_a_redis_crash(fresh_stack: Stack, own_redis: EmbeddedRedis,
                                                                   reference: Any) -> None:
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1")
    fresh_stack.start_worker("worker-2")
    fresh_stack.start("beat", "beat")
    ids = submit_all(fresh_stack, http, texts(200))
    wait_for(lambda: running(fresh_stack, ids), 60, "batches to start")
    fresh_stack.stop("worker-1", signal.SIGKILL)
    own_redis.kill()
    own_redis.start()
    # Jobs that come after the crash, through the new Redis: worker-2 runs them. Waiting for the first 200 to run
    # again was a race: a fast machine had run them all before Redis was back (CI, once).
    later = submit_all(fresh_stack, http, texts(200))
    wait_for(lambda: [job for job in rows(fresh_stack, later).values() if job.status != "queued"], 60,
             "jobs submitted after the crash to start")
    ids += later
    fresh_stack.stop("worker-2", signal.SIGKILL)  # whatever it holds then runs again on worker-3
    fresh_stack.start_worker("worker-3")
    wait_for(lambda: all_finished(fresh_stack, ids), 300, "all 400 jobs to finish")
    final = rows(fresh_stack, ids)
    assert all(job.status == "succeeded" for job in final.values())
    assert all(1 <= job.attempts <= 3 for job in final.values())
    for job_id in ids[::10]:
        assert_reference_output(http.get(f"{fresh_stack.url}/v1/jobs/{job_id}").json(), reference)


def test_database_stopped_under_the_api(tmp_path_factory: pytest.TempPathFactory, own_redis: EmbeddedRedis,
                                        tiny_models: dict[str, Path]) -> None:
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        from migrations import run_migrations

        run_migrations(cluster.url)
        stack = Stack(tmp_path_factory.mktemp("stack"), cluster.url, own_redis.url, tiny_models, CHAOS_ENV)
        stack.start_api()
        stack.start_worker()
        try:
            http = stack.client(stack.new_key())
            body = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}
            before = http.post(f"{stack.url}/v1/fill-mask", json=body, headers={"Prefer": "wait=30"}).json()
            assert before["status"] == "succeeded"

            cluster.stop()
            for _ in range(5):
                down = http.post(f"{stack.url}/v1/fill-mask", json=body, timeout=30)
                assert down.status_code == 503, down.text
                assert down.json()["error"]["code"] == "database_unavailable"
            assert http.get(f"{stack.url}/v1/jobs/{before['id']}").status_code == 503
            assert requests.get(f"{stack.url}/readyz").status_code == 503

            cluster.start()
            wait_for(lambda: requests.get(f"{stack.url}/readyz").status_code == 200, 60, "readiness to return")
            after = http.post(f"{stack.url}/v1/fill-mask", json=body, headers={"Prefer": "wait=30"}).json()
            assert after["status"] == "succeeded"
            with stack.sessions() as session:
                stored = session.scalars(select(Job)).all()
            assert {job.id for job in stored} == {before["id"], after["id"]}, "a refused request left a row"
        finally:
            stack.stop_all()
    finally:
        cluster.remove()


def test_a_database_out_of_connections_is_a_503_and_the_api_recovers(
    tmp_path_factory: pytest.TempPathFactory, own_redis: EmbeddedRedis, tiny_models: dict[str, Path],
) -> None:
    """PostgreSQL refusing the API's connections — its max_connections, which the API processes' pools must fit
    (8 API processes at the default of 100 met it on the H200), or, here, its role's limit — is a 503 the client may
    retry, stores nothing, is named in the API's log for the operator, and passes once connections are free."""
    from sqlalchemy import create_engine, text

    from migrations import run_migrations

    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        run_migrations(cluster.url)
        admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:  # a role of its own: a superuser is exempt from connection limits
            connection.execute(text("CREATE ROLE distilq_api LOGIN"))
            connection.execute(text("GRANT ALL ON ALL TABLES IN SCHEMA public TO distilq_api"))
        stack = Stack(tmp_path_factory.mktemp("stack"), cluster.url.replace("postgres@", "distilq_api@"),
                      own_redis.url, tiny_models, CHAOS_ENV)
        stack.start_api()
        try:
            http = stack.client(stack.new_key())
            body = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}
            before = http.post(f"{stack.url}/v1/fill-mask", json=body)
            assert before.status_code == 202, before.text

            with admin.connect() as connection:
                connection.execute(text("ALTER ROLE distilq_api CONNECTION LIMIT 0"))
                connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                        "WHERE usename = 'distilq_api'"))
            for _ in range(3):
                refused = http.post(f"{stack.url}/v1/fill-mask", json=body)
                assert refused.status_code == 503, refused.text
                error = refused.json()["error"]
                assert error["code"] == "database_unavailable" and "no connection to spare" in error["message"]
                assert refused.headers["Retry-After"] == "5"
            assert "too many connections for role" in (stack.root / "api.log").read_text()

            with admin.connect() as connection:
                connection.execute(text("ALTER ROLE distilq_api CONNECTION LIMIT -1"))
            after = http.post(f"{stack.url}/v1/fill-mask", json=body)
            assert after.status_code == 202, after.text
            with stack.sessions() as session:
                stored = session.scalars(select(Job)).all()
            assert {job.id for job in stored} == {before.json()["id"], after.json()["id"]}, "a refusal left a row"
        finally:
            stack.stop_all()
            admin.dispose()
    finally:
        cluster.remove()


def test_a_job_canceled_while_running_gets_no_output(fresh_stack: Stack) -> None:
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker()
    ids = submit_all(fresh_stack, http, texts(8, words=300))  # one batch of a few seconds
    [victim, *_] = wait_for(lambda: running(fresh_stack, ids), 60, "a batch to start")
    assert http.post(f"{fresh_stack.url}/v1/jobs/{victim}/cancel").json()["status"] == "canceled"
    wait_for(lambda: all_finished(fresh_stack, ids), 120, "the batch to finish")
    final = rows(fresh_stack, ids)
    assert (final[victim].status, final[victim].output) == ("canceled", None), "the worker's result was discarded"
    assert all(job.status == "succeeded" for job_id, job in final.items() if job_id != victim)


def test_idempotency_keys_expire(tmp_path_factory: pytest.TempPathFactory, backend: tuple[str, str],
                                 own_redis: EmbeddedRedis, tiny_models: dict[str, Path]) -> None:
    stack = Stack(tmp_path_factory.mktemp("stack"), backend[0], own_redis.url, tiny_models,
                       {**CHAOS_ENV, "DISTILQ_IDEMPOTENCY_TTL_S": "1"})
    stack.start_api()
    stack.start("beat", "beat")
    try:
        http = stack.client(stack.new_key())
        body = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}
        headers = {"Idempotency-Key": "expiring"}
        first = http.post(f"{stack.url}/v1/fill-mask", json=body, headers=headers).json()
        assert http.post(f"{stack.url}/v1/fill-mask", json=body, headers=headers).json()["id"] == first["id"]

        def freed() -> bool:
            with stack.sessions() as session:
                return session.get(Job, first["id"]).idempotency_key is None  # type: ignore[union-attr]

        wait_for(freed, 30, "beat to free the expired key")
        other = http.post(f"{stack.url}/v1/fill-mask", json={**body, "parameters": {"top_k": 2}}, headers=headers)
        assert other.status_code == 202 and other.json()["id"] != first["id"]  # a new job, not a 409
    finally:
        stack.stop_all()


def test_distilq_up_starts_a_killed_child_again(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    """Under `distilq up`, kill -9 of the inference worker once took the whole stack down; now the worker is
    started again, jobs are served again, and only SIGTERM stops everything."""
    with distilq_up(tmp_path, tiny_models) as up:
        http = requests.Session()
        http.headers.update({"Authorization": f"Bearer {up.new_key().stdout.strip()}", "Prefer": "wait=60"})
        body = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}
        assert http.post(f"{up.url}/v1/fill-mask", json=body, timeout=70).json()["status"] == "succeeded"

        [worker] = [pid for pid in processes_with(up.marker, "worker")
                    if pid not in processes_with(up.marker, "webhooks")]
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: "worker exited (status -9); starting it again" in up.output.read_text(), 30,
                 "distilq up to notice the worker died")
        assert up.process.poll() is None, "distilq up stopped when one child died"
        again = http.post(f"{up.url}/v1/fill-mask", json=body, timeout=70).json()  # held until the new worker runs it
        assert again["status"] == "succeeded", up.output.read_text()[-3000:]
        assert requests.get(f"{up.url}/readyz", timeout=5).status_code == 200
        assert worker not in processes_with(up.marker, "worker")
        up.stop()


def test_a_lost_wake_up_is_replaced_by_beat(fresh_stack: Stack, own_redis: EmbeddedRedis) -> None:
    """The flag says a wake-up is pending, but none is (its message was lost): submissions publish nothing, and
    `beat` wakes a worker for the jobs left queued."""
    import redis

    from core import wakeups

    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker()
    redis.Redis.from_url(own_redis.url).set(wakeups.flag_name("fill-mask"), 1)  # no expiry: only beat can help
    ids = submit_all(fresh_stack, http, texts(6, words=20))
    with fresh_stack.sessions() as session:
        assert all(job.status == "queued" for job in session.scalars(select(Job).where(Job.id.in_(ids))))
    assert redis.Redis.from_url(own_redis.url).llen("fill-mask") == 0  # nothing was published
    fresh_stack.start("beat", "beat")
    wait_for(lambda: all_finished(fresh_stack, ids), 120, "beat to wake a worker")
    assert all(job.status == "succeeded" and job.attempts == 1 for job in rows(fresh_stack, ids).values())


def test_duplicate_wake_ups_across_workers_run_every_job_once(fresh_stack: Stack, own_redis: EmbeddedRedis) -> None:
    """Wake-ups published over and over, beside the protocol's own, with two workers draining at once: every job
    runs once (one attempt) and is written once."""
    import redis

    from core import wakeups
    from core.queue import make_celery

    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1")
    fresh_stack.start_worker("worker-2")
    celery, client = make_celery(own_redis.url), redis.Redis.from_url(own_redis.url)
    ids: list[str] = []
    for _ in range(10):
        ids += submit_all(fresh_stack, http, texts(5, words=20))
        for _ in range(3):
            wakeups.publish(celery, client, "fill-mask")
    wait_for(lambda: all_finished(fresh_stack, ids), 180, "every job to finish")
    final = rows(fresh_stack, ids)
    assert all(job.status == "succeeded" and job.attempts == 1 for job in final.values())
    workers = ("worker-1", "worker-2")
    wait_for(lambda: logged_all(fresh_stack, workers, ids), 30, "each worker to log what it wrote")
    written = [job_id for lines in finished_lines(fresh_stack, workers) for job_id in lines]
    assert sorted(written) == sorted(ids)  # each job written back once, by one worker


def test_a_second_worker_joins_a_backlog(fresh_stack: Stack) -> None:
    """A worker that leaves jobs queued behind its batch asks for another wake-up, which the idle worker takes:
    both drain the backlog, each job once."""
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1")
    fresh_stack.start_worker("worker-2")
    ids = submit_all(fresh_stack, http, texts(40))  # 5 batches of the slow model's 8
    wait_for(lambda: all_finished(fresh_stack, ids), 180, "every job to finish")
    assert all(job.status == "succeeded" and job.attempts == 1 for job in rows(fresh_stack, ids).values())
    workers = ("worker-1", "worker-2")
    wait_for(lambda: logged_all(fresh_stack, workers, ids), 30, "each worker to log what it wrote")
    by_worker = finished_lines(fresh_stack, workers)
    assert all(by_worker), "both workers ran batches of the backlog"
    assert sorted(by_worker[0] + by_worker[1]) == sorted(ids)


# Rows of 16 lines, whatever the slow model's passes cost (`store.batch_rows.row_inputs`): a kill mid-row.
@pytest.mark.stack(models="slow", own_redis=True, env={**CHAOS_ENV, "DISTILQ_BATCH_ROW_INPUTS": "16"})
def test_a_batch_whose_worker_is_killed_ends_with_every_line_run_once(fresh_stack: Stack, reference: Any) -> None:
    """A batch's rows of lines are jobs like any other: a worker killed in the middle of a batch file loses none of
    them, and the output file holds each `custom_id` once, with the reference output."""
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1")
    fresh_stack.start("beat", "beat")
    lines = [json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/fill-mask",
                         "body": {"inputs": {"input_string": [text]}, "parameters": {"top_k": 2}}})
             for i, text in enumerate(texts(24))]
    file = http.post(f"{fresh_stack.url}/v1/files", data={"purpose": "batch"},
                     files={"file": ("lines.jsonl", "\n".join(lines).encode())}).json()
    batch = http.post(f"{fresh_stack.url}/v1/batches", json={"input_file_id": file["id"]}).json()
    assert batch["status"] == "in_progress", batch
    with fresh_stack.sessions() as session:
        queued = session.execute(select(Job.id, Job.line_count).where(Job.batch_id == batch["id"])).all()
    ids = [job_id for job_id, _ in queued]
    assert sorted(count for _, count in queued) == [8, 16]  # rows of up to 16 lines
    wait_for(lambda: running(fresh_stack, ids), 60, "a pass of the batch's lines to start")
    fresh_stack.stop("worker-1", signal.SIGKILL)
    in_flight = running(fresh_stack, ids)
    assert in_flight
    fresh_stack.start_worker("worker-2")
    done = fresh_stack.wait_batch(http, batch["id"], 240)
    assert done["status"] == "completed" and done["request_counts"] == {"total": 24, "completed": 24, "failed": 0}
    final = rows(fresh_stack, ids)
    assert all(final[job_id].attempts == 2 for job_id in in_flight), "the killed pass's lines ran again, once"
    output = [json.loads(text) for text in
              http.get(f"{fresh_stack.url}/v1/files/{done['output_file_id']}/content").text.splitlines()]
    assert [item["custom_id"] for item in output] == [f"line-{i}" for i in range(24)]
    for item in output:
        assert_reference_output(item["response"]["body"], reference)


def test_beat_killed_after_writing_part_of_a_batch_s_output_leaves_each_line_once(fresh_stack: Stack) -> None:
    """Beat writes a running batch's output file a part at a time (`store/batch_output.py`), each part and the
    batch's `output_through` in one transaction: killed once a part is written and before the batch ends, the beat
    started after it goes on from there — each `custom_id` once, in order."""
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1")
    fresh_stack.start("beat", "beat")
    count = 700  # a part is at least 500 lines while the batch runs: one part before the end, the rest after
    lines = [json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/fill-mask",
                         "body": {"inputs": {"input_string": [text]}, "parameters": {"top_k": 1}}})
             for i, text in enumerate(texts(count, words=1))]
    file = http.post(f"{fresh_stack.url}/v1/files", data={"purpose": "batch"},
                     files={"file": ("lines.jsonl", "\n".join(lines).encode())}).json()
    batch = http.post(f"{fresh_stack.url}/v1/batches", json={"input_file_id": file["id"]}).json()

    def part_written() -> int | None:
        with fresh_stack.sessions() as session:
            through = session.scalar(select(Batch.output_through).where(Batch.id == batch["id"]))
        return through if through and through < count else None

    wait_for(part_written, 240, "beat to write a part of the output file")
    fresh_stack.stop("beat", signal.SIGKILL)
    fresh_stack.start("beat", "beat")
    done = fresh_stack.wait_batch(http, batch["id"], 240)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == count, done
    output = [json.loads(text) for text in
              http.get(f"{fresh_stack.url}/v1/files/{done['output_file_id']}/content").text.splitlines()]
    assert [item["custom_id"] for item in output] == [f"line-{i}" for i in range(count)]


def test_an_evaluation_whose_worker_is_killed_scores_every_example_once(fresh_stack: Stack, reference: Any) -> None:
    """An evaluation's examples are jobs: a worker killed mid-evaluation loses none, the next runs the killed pass
    again, and the scores come from the rows at the end — each example scored once, as the reference ranks it."""
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker-1")
    fresh_stack.start("beat", "beat")
    examples = texts(24)
    lines = "".join(json.dumps({"text": text, "label": "the"}) + "\n" for text in examples)
    file = http.post(f"{fresh_stack.url}/v1/files", data={"purpose": "evaluation"},
                     files={"file": ("examples.jsonl", lines.encode())}).json()
    evaluation = http.post(f"{fresh_stack.url}/v1/evaluations", json={
        "task": "fill-mask", "input_file_id": file["id"], "config": {"top_k": 2}}).json()
    assert evaluation["status"] == "queued", evaluation
    with fresh_stack.sessions() as session:
        ids = list(session.scalars(select(Job.id).where(Job.evaluation_id == evaluation["id"])))
    assert len(ids) == 24
    wait_for(lambda: running(fresh_stack, ids), 60, "a pass of the evaluation's examples to start")
    fresh_stack.stop("worker-1", signal.SIGKILL)
    in_flight = running(fresh_stack, ids)
    assert in_flight
    fresh_stack.start_worker("worker-2")

    def ended() -> dict[str, Any] | None:
        now = http.get(f"{fresh_stack.url}/v1/evaluations/{evaluation['id']}").json()
        return now if now["completed_at"] is not None else None

    done = wait_for(ended, 240, "the evaluation to end")
    assert done["status"] == "succeeded" and done["result_counts"] == {"total": 24, "done": 24, "failed": 0}
    final = rows(fresh_stack, ids)
    assert all(final[job_id].attempts == 2 for job_id in in_flight), "the killed pass's examples ran again, once"
    scored = [json.loads(text) for text in
              http.get(f"{fresh_stack.url}/v1/files/{done['output_file_id']}/content").text.splitlines()]
    assert [line["line"] for line in scored] == list(range(1, 25))
    ranks = []
    for line, text in zip(scored, examples, strict=True):
        predicted = [p["token_str"] for p in reference(text)]
        assert line["predictions"] == predicted
        ranks.append(predicted.index("the") + 1 if "the" in predicted else None)
    assert done["metrics"]["top_k_accuracy"] == pytest.approx(sum(r is not None for r in ranks) / 24)
    assert done["metrics"]["mrr"] == pytest.approx(sum(1 / r for r in ranks if r) / 24)


@pytest.mark.parametrize("check_processes", [0, 2])
def test_a_batch_whose_api_process_dies_mid_check_is_failed_with_no_line_left(fresh_stack: Stack,
                                                                               check_processes: int) -> None:
    """A batch's lines run as its file's check queues them; the API process checking it killed halfway leaves the
    batch validating with lines queued, running or done. Beat fails it once its check has not moved for
    `DISTILQ_CHECK_LEASE_S` and deletes every line the check queued: no part of a file whose check did not end
    runs on, or shows. The API's check processes (`api/check_pool.py`), not killed, leave with it."""
    fresh_stack.stop("api")
    fresh_stack.env["DISTILQ_CHECK_PROCESSES"] = str(check_processes)
    fresh_stack.start_api()
    http = fresh_stack.client(fresh_stack.new_key())
    fresh_stack.start_worker("worker")
    fresh_stack.start("beat", "beat")
    body = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 2}}
    lines = "".join(json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/fill-mask", "body": body})
                    + "\n" for i in range(30_000))
    file = http.post(f"{fresh_stack.url}/v1/files", data={"purpose": "batch"},
                     files={"file": ("lines.jsonl", lines.encode())}).json()
    creating = threading.Thread(target=lambda: _post_quietly(http, f"{fresh_stack.url}/v1/batches",
                                                             {"input_file_id": file["id"]}), daemon=True)
    creating.start()

    def checking() -> str | None:
        with fresh_stack.sessions() as session:
            batch = session.scalars(select(Batch).where(Batch.status == "validating")).one_or_none()
            queued = batch is not None and session.scalar(
                select(func.count()).select_from(Job).where(Job.batch_id == batch.id)) or 0
            return batch.id if batch is not None and queued and batch.total < 25_000 else None

    batch_id = wait_for(checking, 60, "the check to queue its first lines")
    api = fresh_stack.processes["api"].pid
    tree = descendants(api)
    # The check processes, and multiprocessing's resource tracker beside them; each of gunicorn's workers (the
    # tree's first is its master) has its own.
    pool = [pid for pid in tree if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    workers = [pid for pid in tree[1:] if pid not in pool]
    assert workers and sum(b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
                           for pid in pool) == check_processes * len(workers)
    for pid in reversed(tree):  # gunicorn's workers, then its master
        if pid not in pool:
            os.kill(pid, signal.SIGKILL)
    creating.join(30)
    wait_for(lambda: not any(_running(pid) for pid in pool), 30, "the check processes to leave with their API "
                                                                  "process")

    def failed() -> Batch | None:
        with fresh_stack.sessions() as session:
            batch = session.get_one(Batch, batch_id)
            return batch if batch.status != "validating" else None

    batch = wait_for(failed, 60, "beat to fail the abandoned check")
    assert batch.status == "failed" and batch.errors is not None
    assert [error["code"] for error in batch.errors["data"]] == ["check_interrupted"]
    with fresh_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.batch_id == batch_id)) == 0
    fresh_stack.start_api()
    shown = http.get(f"{fresh_stack.url}/v1/batches/{batch_id}").json()
    assert shown["status"] == "failed" and shown["request_counts"]["completed"] == 0


def _running(pid: int) -> bool:
    """Whether the process runs (a zombie no longer does: its new parent may be slow to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _post_quietly(http: requests.Session, url: str, body: dict[str, Any]) -> None:
    """The create request, whose API process the test kills: its connection error is what is expected."""
    try:
        http.post(url, json=body, timeout=120)
    except requests.ConnectionError:
        pass
