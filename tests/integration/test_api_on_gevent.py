"""The API on gevent (`DISTILQ_API_SERVER=gevent`, the default on PostgreSQL: gunicorn's gevent worker, a greenlet a
request, the standard library monkey-patched; refused on SQLite, so these run on PostgreSQL only). What leans on
threads works there as on threads — requests held by `Prefer: wait` and woken by the process's announcement
listener, a cancel waking its holder, a batch file checked in a check process, gunicorn's own refusals in the error
shape, the JSON log lines — and neither many held requests nor a long file check stop a process answering others."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from distilq.stack import free_port
from tests.integration.backends import BACKENDS, machine_redis_url
from tests.integration.stack import Stack, processes_with, wait_for
from tests.integration.test_batches import file_lines, line, run_batch

pytestmark = pytest.mark.stack(start=("api", "worker", "beat"), env={
    "DISTILQ_API_SERVER": "gevent", "DISTILQ_CHECK_PROCESSES": "1", "DISTILQ_LOG_FORMAT": "json",
    "DISTILQ_MAX_WAITING_PER_KEY": "64"})


@pytest.fixture(params=[kind for kind in BACKENDS if kind == "postgres"], scope="module")
def backend_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """PostgreSQL only (with the machine's Redis: CI has both): gevent is refused on SQLite."""
    redis.Redis.from_url(machine_redis_url()).flushdb()
    return request.param, machine_redis_url()


BODY = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}


def test_the_api_processes_run_gevents_worker(stack: Stack) -> None:
    pids = processes_with(f"DISTILQ_HOME={stack.home}", "api.wsgi:app")
    assert len(pids) >= 2  # the arbiter and its processes
    for pid in pids:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert command[command.index(b"--worker-class") + 1] == b"gevent"
        assert b"--threads" not in command


def test_held_requests_are_answered_each_with_its_own_job(stack: Stack) -> None:
    http = stack.client(stack.new_key())
    texts = [f"Request {i} is the [MASK] of them." for i in range(60)]

    def held(text: str) -> requests.Response:
        return http.post(f"{stack.url}/v1/fill-mask", json={"inputs": {"input_string": [text]}},
                         headers={"Prefer": "wait=60"}, timeout=90)

    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(held, texts))
    assert all(a.status_code == 200 and a.headers.get("Preference-Applied") == "wait=60" for a in answers), [
        (a.status_code, a.text[:200]) for a in answers if a.status_code != 200][:3]
    assert all(a.json()["status"] == "succeeded" for a in answers)
    assert len({a.json()["id"] for a in answers}) == len(texts)
    # Each held answer is its own job's: the poll of each shows the same output.
    for answer in answers[:5]:
        assert http.get(f"{stack.url}/v1/jobs/{answer.json()['id']}").json()["output"] == answer.json()["output"]


def test_a_cancel_wakes_the_request_holding_its_job(stack: Stack) -> None:
    stack.stop("worker")
    try:
        http = stack.client(stack.new_key())
        with ThreadPoolExecutor(1) as pool:
            holding = pool.submit(http.post, f"{stack.url}/v1/fill-mask", json=BODY,
                                  headers={"Prefer": "wait=60"}, timeout=90)
            job = wait_for(lambda: (http.get(f"{stack.url}/v1/jobs?status=queued").json()["data"] or [None])[0],
                           30, "the held job to be queued")
            # The process still answers others while one of its greenlets waits.
            assert requests.get(f"{stack.url}/healthz", timeout=5).status_code == 200
            assert http.post(f"{stack.url}/v1/jobs/{job['id']}/cancel").status_code == 200
            answer = holding.result(timeout=30)
        assert answer.status_code == 200 and answer.json()["status"] == "canceled"
    finally:
        stack.start_worker()
        stack.wait_for_workers(["fill-mask"])


def test_a_batch_file_checked_in_check_processes_completes(stack: Stack) -> None:
    http = stack.client(stack.new_key())
    lines = [line(f"fm-{i}", "/v1/fill-mask", {"inputs": {"input_string": [f"Line {i} is the [MASK]."]}})
             for i in range(40)]
    batch = stack.wait_batch(http, run_batch(stack, http, lines)["id"])
    assert batch["status"] == "completed" and batch["request_counts"] == {"total": 40, "completed": 40, "failed": 0}
    output = file_lines(stack, http, batch["output_file_id"])
    assert sorted(o["custom_id"] for o in output) == sorted(f"fm-{i}" for i in range(40))
    broken = run_batch(stack, http, [*lines[:3], "{not json"])
    failed = stack.wait_batch(http, broken["id"])
    assert failed["status"] == "failed" and failed["errors"]["data"][0]["line"] == 4


def test_gunicorns_refusals_and_the_log_lines_keep_their_shape(stack: Stack) -> None:
    long_line = requests.get(f"{stack.url}/v1/jobs/{'j' * 6000}", timeout=10)
    assert long_line.status_code == 414 and long_line.json()["error"]["code"] == "uri_too_long"
    stack.client(stack.new_key()).get(f"{stack.url}/v1/jobs?limit=1")

    def records() -> list[dict[str, object]] | None:
        lines = [json.loads(text) for text in stack.log("api").splitlines() if text.strip()]
        return lines if any(line.get("path") == "/v1/jobs?limit=1" for line in lines) else None

    every = wait_for(records, 10, "the list's access line")  # written after its answer
    assert all({"time", "level", "logger", "message"} <= set(record) for record in every)
    assert any("Request Line is too large" in str(record["message"]) for record in every)


def test_a_file_checked_in_the_request_lets_the_process_answer_others_meanwhile(stack: Stack) -> None:
    """One API process, no check processes: the file's check runs in the request's greenlet, chunk after chunk of
    CPU work. The process's other requests are answered between chunks (after each, the check waits on the
    database and on Redis, and its greenlet gives way there) — seen here as the batch read back while it is still
    `validating`; had the check held the process, the read would have been answered only once the check had ended."""
    port = free_port()
    stack.start("api-alone", "api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                env={"DISTILQ_CHECK_PROCESSES": "0"})
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{url}/healthz"), 60, "the single-process API")
    try:
        http = stack.client(stack.new_key())
        lines = [line(f"l-{i}", "/v1/fill-mask", {"inputs": {"input_string": [f"Line {i} is a [MASK]."]}})
                 for i in range(30_000)]
        file = http.post(f"{url}/v1/files", files={"file": ("big.jsonl", ("\n".join(lines) + "\n").encode())},
                         data={"purpose": "batch"}).json()
        with ThreadPoolExecutor(1) as pool:
            creating = pool.submit(http.post, f"{url}/v1/batches", json={"input_file_id": file["id"]}, timeout=300)
            seen = wait_for(lambda: (http.get(f"{url}/v1/batches?limit=1", timeout=300).json()["data"] or [None])[0],
                            60, "the batch to be listed")
            assert seen["status"] == "validating" and not creating.done()
            assert creating.result().status_code == 200
    finally:
        stack.stop("api-alone")


def test_an_evaluation_checked_in_the_request_lets_the_process_answer_others_meanwhile(stack: Stack) -> None:
    """An evaluation's file is judged whole in its request before anything is stored (no state to read back while
    it runs): the single process answers /healthz, one request after another, many times before the evaluation's
    request ends — a check holding the process would leave room for none between its reads of the file's parts."""
    port = free_port()
    stack.start("api-alone", "api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{url}/healthz"), 60, "the single-process API")
    try:
        http = stack.client(stack.new_key())
        examples = "".join(json.dumps({"text": f"Example {i} is a [MASK].", "label": "the"}) + "\n"
                           for i in range(30_000))
        file = http.post(f"{url}/v1/files", files={"file": ("examples.jsonl", examples.encode())},
                         data={"purpose": "evaluation"}).json()
        with ThreadPoolExecutor(1) as pool:
            creating = pool.submit(http.post, f"{url}/v1/evaluations",
                                   json={"task": "fill-mask", "input_file_id": file["id"]}, timeout=300)
            answered_meanwhile = 0
            while not creating.done():
                healthy = _answers(f"{url}/healthz")
                answered_meanwhile += healthy and not creating.done()
            assert creating.result().status_code == 202
        assert answered_meanwhile >= 10
    finally:
        stack.stop("api-alone")


def _answers(address: str) -> bool:
    try:
        return requests.get(address, timeout=2).status_code == 200
    except requests.RequestException:  # refused while starting, or no answer within 2 s
        return False
