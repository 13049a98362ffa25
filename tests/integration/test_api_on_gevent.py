"""The API on gevent (`DISTILQ_API_SERVER=gevent`: gunicorn's gevent worker, a greenlet a request, the standard
library monkey-patched), on both databases: what leans on threads — requests held by `Prefer: wait` and woken by
the process's announcement listener, the wait cap, a cancel waking its holder, a batch file checked in check
processes beside the API process, gunicorn's own refusals in the error shape, the JSON log lines — works there as
on threads, and many held requests do not stop the process answering others."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.integration.stack import Stack, processes_with, wait_for
from tests.integration.test_batches import file_lines, line, run_batch

pytestmark = pytest.mark.stack(start=("api", "worker", "beat"), env={
    "DISTILQ_API_SERVER": "gevent", "DISTILQ_CHECK_PROCESSES": "1", "DISTILQ_LOG_FORMAT": "json",
    "DISTILQ_MAX_WAITING_PER_KEY": "64"})

BODY = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}


def test_the_api_processes_run_gevents_worker(stack: Stack) -> None:
    pids = processes_with(f"DISTILQ_HOME={stack.home}", "api.wsgi:app")
    assert len(pids) >= 2  # the arbiter and its processes
    for pid in pids:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert command[command.index(b"--worker-class") + 1] == b"gevent"
        assert b"--threads" not in command


def test_held_requests_are_answered_with_their_jobs_and_others_meanwhile(stack: Stack) -> None:
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
