"""Batches over real processes: a file uploaded, checked whole, its lines run as jobs of a lower priority, the output
and error files written by beat; a bad line fails the batch naming it; a cancelled batch keeps its partial output.
Beat's periodic sweep is 600 s apart here: every batch ends because the worker that wrote its last line, or the API
that cancelled it, asked beat for a sweep (`core/sweep_requests.py`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import func, select
from standardwebhooks import Webhook
from transformers import pipeline

from core.presence import REFRESH_S, ready_workers
from core.settings import Settings
from models.tables import Job
from store import batch_rows
from tests.integration.receiver import Receiver
from tests.integration.stack import Stack, wait_for
from tests.unit.worker.engine.test_fill_mask import assert_same
from tests.unit.worker.engine.test_question_answering import REFERENCE, assert_same_answers

pytestmark = pytest.mark.stack(start=("api", "worker", "webhooks", "beat"), env={
    "DISTILQ_SWEEP_INTERVAL_S": "0.2", "DISTILQ_WEBHOOK_ALLOW_PRIVATE": "true", "DISTILQ_MAX_FILE_BYTES": "3000000",
    "DISTILQ_MAX_BATCH_LINES": "2500", "DISTILQ_RATE_LIMIT": "100000/minute"})

TEXTS = ["Paris is the [MASK] of France.", "Today is a [MASK] day!", "My name is [MASK] and I live in Berlin.",
         "The quick brown [MASK] jumps over the lazy dog.", "Where do I [MASK]?"]
QA_CASES = [case for case in REFERENCE["cases"] if not case["parameters"]]


@pytest.fixture(scope="module")
def fill_mask(tiny_models: dict[str, Path]) -> Any:
    return pipeline("fill-mask", model=str(tiny_models["fill-mask"]), device="cpu")


def line(custom_id: str, url: str, body: Any) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def mixed_lines(count: int) -> list[str]:
    """Fill-mask lines (one or two inputs, top_k 1 to 3) and QA lines of the reference cases, in turn."""
    lines = []
    for i in range(count):
        if i % 3 == 2:
            case = QA_CASES[i % len(QA_CASES)]
            body: dict[str, Any] = {"inputs": {"question": [case["question"]], "context": [case["context"]]}}
            lines.append(line(f"qa-{i}", "/v1/question-answering", body))
        else:
            texts = [TEXTS[i % len(TEXTS)]] + ([TEXTS[(i + 1) % len(TEXTS)]] if i % 2 else [])
            body = {"inputs": {"input_string": texts}, "parameters": {"top_k": 1 + i % 3}}
            lines.append(line(f"fm-{i}", "/v1/fill-mask", body))
    return lines


def upload(stack: Stack, http: requests.Session, content: bytes, name: str = "requests.jsonl") -> dict[str, Any]:
    response = http.post(f"{stack.url}/v1/files", files={"file": (name, content)}, data={"purpose": "batch"})
    assert response.status_code == 200, response.text
    return response.json()


def run_batch(stack: Stack, http: requests.Session, lines: list[str], **fields: Any) -> dict[str, Any]:
    file = upload(stack, http, ("\n".join(lines) + "\n").encode())
    response = http.post(f"{stack.url}/v1/batches", json={"input_file_id": file["id"], **fields})
    assert response.status_code == 200, response.text
    return response.json()


def file_lines(stack: Stack, http: requests.Session, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    response = http.get(f"{stack.url}/v1/files/{file_id}/content")
    assert response.status_code == 200
    return [json.loads(text) for text in response.text.splitlines()]


def test_a_mixed_file_completes_with_every_custom_id_once_and_outputs_equal_to_the_references(
        stack: Stack, http: requests.Session, fill_mask: Any, receiver: Receiver) -> None:
    lines = mixed_lines(1000)
    batch = run_batch(stack, http, lines, webhook=receiver.on("/batch", "200"), metadata={"run": "nightly"})
    assert batch["status"] == "in_progress" and batch["object"] == "batch"
    assert batch["request_counts"]["total"] == 1000 and batch["metadata"] == {"run": "nightly"}

    done = stack.wait_batch(http, batch["id"])
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 1000, "completed": 1000, "failed": 0}
    assert done["completed_at"] >= done["in_progress_at"] >= done["created_at"]
    output = file_lines(stack, http, done["output_file_id"])
    assert file_lines(stack, http, done["error_file_id"]) == []
    assert sorted(item["custom_id"] for item in output) == sorted(json.loads(text)["custom_id"] for text in lines)
    expected_fill_mask: dict[tuple[str, int], Any] = {}
    for item, text in zip(output, lines, strict=True):  # the output keeps the file's order
        request = json.loads(text)
        assert item["custom_id"] == request["custom_id"] and item["error"] is None
        assert item["response"]["status_code"] == 200
        job = item["response"]["body"]
        assert job["status"] == "succeeded" and item["id"] == f"batch_req_{job['id']}"
        if request["custom_id"].endswith("7"):  # the job object as GET shows it (read out of the line's row)
            assert job == http.get(f"{stack.url}/v1/jobs/{job['id']}").json()
            cancel = http.post(f"{stack.url}/v1/jobs/{job['id']}/cancel")  # with its batch, not alone
            assert cancel.status_code == 409 and cancel.json()["error"]["code"] == "batch_line", cancel.text
        if request["url"] == "/v1/fill-mask":
            top_k = request["body"]["parameters"]["top_k"]
            for sentence, outputs in zip(request["body"]["inputs"]["input_string"], job["output"], strict=True):
                if (sentence, top_k) not in expected_fill_mask:
                    expected_fill_mask[(sentence, top_k)] = fill_mask(sentence, top_k=top_k)
                assert_same(outputs, expected_fill_mask[(sentence, top_k)])
        else:
            case = next(c for c in QA_CASES if c["context"] == request["body"]["inputs"]["context"][0])
            assert_same_answers([job["output"][0]], [case["output"]])

    [delivery] = wait_for(lambda: receiver.requests_to("/batch") or None, 30, "the batch.completed webhook")
    secret = http.get(f"{stack.url}/v1/webhooks/secret").json()["secret"]
    event = Webhook(secret).verify(delivery.body, delivery.headers)
    assert event["type"] == "batch.completed" and event["data"]["id"] == batch["id"]
    assert event["data"]["status"] == "completed" and event["data"]["output_file_id"] == done["output_file_id"]
    listed = http.get(f"{stack.url}/v1/jobs", params={"limit": 100}).json()["data"]
    assert all(job["id"] not in {item["response"]["body"]["id"] for item in output} for job in listed)


def test_a_broken_line_fails_the_whole_batch_naming_it(stack: Stack, http: requests.Session) -> None:
    good = line("a", "/v1/fill-mask", {"inputs": {"input_string": ["Paris is the [MASK] of France."]}})
    lines = [good,
             line("b", "/v1/fill-mask", {"inputs": {"input_string": ["No mask here."]}}),
             "{not json",
             line("a", "/v1/fill-mask", {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}),
             line("c", "/v1/translate", {}),
             line("d", "/v1/question-answering", {"inputs": {"question": ["Who?"], "context": []}}),
             ""]
    before = _jobs_in_db(stack)
    batch = run_batch(stack, http, lines)
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    errors = batch["errors"]["data"]
    assert [error["line"] for error in errors] == [2, 3, 4, 5, 6]
    assert "mask" in errors[0]["message"] and errors[0]["param"].startswith("body.inputs.input_string")
    assert "JSON" in errors[1]["message"] and "custom_id" in errors[2]["message"]
    assert errors[3]["param"] == "url" and errors[4]["param"].startswith("body.inputs")
    assert _jobs_in_db(stack) == before  # no line of a failed batch runs

    only_qa = run_batch(stack, http, [good], endpoint="/v1/question-answering")
    assert only_qa["status"] == "failed" and only_qa["errors"]["data"][0]["param"] == "url"
    empty = run_batch(stack, http, [""])
    assert empty["status"] == "failed" and empty["errors"]["data"][0]["code"] == "empty_file"


def test_a_bad_line_after_lines_already_queued_fails_the_batch_and_leaves_no_job(
        stack: Stack, http: requests.Session) -> None:
    """The check queues each chunk of good lines at once, and a worker runs them while the rest is checked; a bad
    line further on fails the batch whole: every line queued before it is deleted with the batch, run or not."""
    good = [line(f"r{i}", "/v1/fill-mask", {"inputs": {"input_string": [TEXTS[i % len(TEXTS)]]}})
            for i in range(1500)]
    before = _jobs_in_db(stack)
    batch = run_batch(stack, http, [*good, line("bad", "/v1/fill-mask", {"inputs": {"input_string": ["No mask."]}})])
    assert batch["status"] == "failed" and batch["output_file_id"] is None
    assert [error["line"] for error in batch["errors"]["data"]] == [1501]
    assert batch["request_counts"] == {"total": 1501, "completed": 0, "failed": 0}
    assert _jobs_in_db(stack) == before
    assert http.post(f"{stack.url}/v1/batches/{batch['id']}/cancel").json()["status"] == "failed"


def _jobs_in_db(stack: Stack) -> int:
    with stack.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def test_a_cancelled_batch_ends_with_each_line_in_the_output_or_the_error_file(
        stack: Stack, http: requests.Session) -> None:
    lines = [line(f"r{i}", "/v1/fill-mask", {"inputs": {"input_string": [TEXTS[i % len(TEXTS)]]}})
             for i in range(2000)]
    # A batch of the same lines ahead of it: its lines run first (the oldest first), so that the cancelled batch's
    # lines are still queued when it is cancelled (a batch's lines start running as its check queues them).
    ahead = run_batch(stack, http, [line(f"ahead-{i}", "/v1/fill-mask", {"inputs": {"input_string": [TEXTS[0]]}})
                                    for i in range(2500)])
    batch = run_batch(stack, http, lines)
    cancelling = http.post(f"{stack.url}/v1/batches/{batch['id']}/cancel").json()
    assert cancelling["status"] in ("cancelling", "cancelled"), cancelling
    done = stack.wait_batch(http, batch["id"])
    assert done["status"] == "cancelled" and done["cancelled_at"] is not None
    output = file_lines(stack, http, done["output_file_id"])
    errors = file_lines(stack, http, done["error_file_id"])
    assert sorted(item["custom_id"] for item in output + errors) == sorted(f"r{i}" for i in range(2000))
    assert errors and all(item["error"]["code"] == "batch_cancelled" and item["response"] is None for item in errors)
    assert done["request_counts"] == {"total": 2000, "completed": len(output), "failed": len(errors)}
    again = http.post(f"{stack.url}/v1/batches/{batch['id']}/cancel").json()
    assert again["status"] == "cancelled"
    assert stack.wait_batch(http, ahead["id"])["status"] == "completed"


def test_interactive_jobs_run_before_a_batch_s_lines(stack: Stack, http: requests.Session) -> None:
    """A job submitted while 2,000 lines are queued finishes while most of them still wait."""
    lines = [line(f"r{i}", "/v1/fill-mask", {"inputs": {"input_string": [TEXTS[i % len(TEXTS)]]}})
             for i in range(2000)]
    batch = run_batch(stack, http, lines)
    response = http.post(f"{stack.url}/v1/fill-mask", headers={"Prefer": "wait=60"},
                         json={"inputs": {"input_string": ["Paris is the [MASK] of France."]}})
    assert response.status_code == 200 and response.json()["status"] == "succeeded"
    progress = http.get(f"{stack.url}/v1/batches/{batch['id']}").json()["request_counts"]
    assert progress["completed"] < 2000
    assert stack.wait_batch(http, batch["id"])["status"] == "completed"


def test_files_are_bounded_and_private(stack: Stack, http: requests.Session) -> None:
    content = b'{"a": 1}\n' * 10
    file = upload(stack, http, content, "mine.jsonl")
    assert file["object"] == "file" and file["bytes"] == len(content) and file["filename"] == "mine.jsonl"
    assert http.get(f"{stack.url}/v1/files/{file['id']}/content").content == content
    assert http.get(f"{stack.url}/v1/files/{file['id']}").json() == file
    other = stack.client(stack.new_key("other"))
    assert other.get(f"{stack.url}/v1/files/{file['id']}/content").status_code == 404
    assert other.post(f"{stack.url}/v1/batches", json={"input_file_id": file["id"]}).status_code == 422
    # A key's files page by page, newest first (the official SDK's iterator follows `has_more` and `after`).
    mine = [upload(stack, other, content, f"{i}.jsonl")["id"] for i in range(3)][::-1]
    first = other.get(f"{stack.url}/v1/files", params={"limit": 2}).json()
    assert [f["id"] for f in first["data"]] == mine[:2] and first["has_more"] and first["last_id"] == mine[1]
    rest = other.get(f"{stack.url}/v1/files", params={"limit": 2, "after": first["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == mine[2:] and not rest["has_more"]
    assert other.get(f"{stack.url}/v1/files", params={"purpose": "batch_output"}).json()["data"] == []
    assert other.get(f"{stack.url}/v1/files", params={"purpose": "x"}).status_code == 422

    too_big = http.post(f"{stack.url}/v1/files", files={"file": ("big.jsonl", b"x" * 3_100_000)},
                        data={"purpose": "batch"})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "file_too_large"
    no_purpose = http.post(f"{stack.url}/v1/files", files={"file": ("a.jsonl", b"{}")})
    assert no_purpose.status_code == 422 and no_purpose.json()["error"]["details"][0]["loc"] == ["purpose"]
    not_multipart = http.post(f"{stack.url}/v1/files", json={"file": "x"})
    assert not_multipart.status_code == 415


def test_a_deleted_file_is_gone_and_a_batch_that_read_it_keeps_what_it_read(stack: Stack,
                                                                            http: requests.Session) -> None:
    batch = run_batch(stack, http, mixed_lines(6))
    done = stack.wait_batch(http, batch["id"])
    outputs = file_lines(stack, http, done["output_file_id"])
    other = stack.client(stack.new_key("other"))
    assert other.delete(f"{stack.url}/v1/files/{batch['input_file_id']}").status_code == 404  # not its file

    deleted = http.delete(f"{stack.url}/v1/files/{batch['input_file_id']}")
    assert deleted.status_code == 200 and deleted.json() == {"id": batch["input_file_id"], "object": "file",
                                                             "deleted": True}
    for path in (f"/v1/files/{batch['input_file_id']}", f"/v1/files/{batch['input_file_id']}/content"):
        assert http.get(f"{stack.url}{path}").status_code == 404
    assert batch["input_file_id"] not in [file["id"] for file in http.get(f"{stack.url}/v1/files").json()["data"]]
    assert http.delete(f"{stack.url}/v1/files/{batch['input_file_id']}").status_code == 404  # once
    again = http.post(f"{stack.url}/v1/batches", json={"input_file_id": batch["input_file_id"]})
    assert again.status_code == 422 and again.json()["error"]["details"][0]["loc"] == ["input_file_id"]
    # The batch read its file when it began: it shows as it was, and so do its lines.
    assert http.get(f"{stack.url}/v1/batches/{batch['id']}").json() == done
    first = outputs[0]["response"]["body"]
    assert http.get(f"{stack.url}/v1/jobs/{first['id']}").json() == first

    assert http.delete(f"{stack.url}/v1/files/{done['output_file_id']}").status_code == 200
    assert http.get(f"{stack.url}/v1/files/{done['output_file_id']}/content").status_code == 404


def test_the_openai_sdk_uploads_creates_polls_and_downloads(stack: Stack) -> None:
    """The official `openai` SDK, given distilq's URL and a distilq key, runs a batch as it would on OpenAI."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{stack.url}/v1", api_key=stack.new_key("sdk"), max_retries=0)
    lines = [line(f"sdk-{i}", "/v1/fill-mask", {"inputs": {"input_string": [TEXTS[i]]}, "parameters": {"top_k": 2}})
             for i in range(len(TEXTS))]
    uploaded = client.files.create(file=("sdk.jsonl", "\n".join(lines).encode()), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.bytes == len("\n".join(lines).encode())
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/fill-mask",  # type: ignore[arg-type]
                                    completion_window="24h", metadata={"via": "sdk"})
    assert created.status == "in_progress" and created.request_counts is not None

    def completed() -> Any:
        batch = client.batches.retrieve(created.id)
        return batch if batch.status == "completed" else None

    batch = wait_for(completed, 120, "the SDK's batch to complete")
    assert batch.output_file_id is not None and batch.metadata == {"via": "sdk"}
    output = [json.loads(text) for text in client.files.content(batch.output_file_id).text.splitlines()]
    assert [item["custom_id"] for item in output] == [f"sdk-{i}" for i in range(len(TEXTS))]
    assert all(len(item["response"]["body"]["output"][0]) == 2 for item in output)
    assert [b.id for b in client.batches.list(limit=100)][0] == created.id
    for file_id in (uploaded.id, batch.output_file_id):
        deleted = client.files.delete(file_id)
        assert deleted.id == file_id and deleted.deleted is True
    assert uploaded.id not in [file.id for file in client.files.list()]


def test_the_cli_uploads_shows_progress_and_writes_the_output(stack: Stack, tmp_path: Path) -> None:
    lines = mixed_lines(60)
    source = tmp_path / "requests.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "DISTILQ_URL": stack.url, "DISTILQ_API_KEY": stack.new_key("cli")}
    run = subprocess.run([sys.executable, "-m", "distilq.cli", "batch", "submit", str(source), "--output", str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    batch = json.loads(run.stdout)
    assert batch["status"] == "completed" and "60/60" in run.stderr
    written = [json.loads(text) for text in out.read_text().splitlines()]
    assert [item["custom_id"] for item in written] == [json.loads(text)["custom_id"] for text in lines]

    listed = subprocess.run([sys.executable, "-m", "distilq.cli", "batch", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["id"] == batch["id"]
    got = subprocess.run([sys.executable, "-m", "distilq.cli", "batch", "get", batch["id"]], env=env,
                         capture_output=True, text=True, timeout=60)
    assert json.loads(got.stdout)["output_file_id"] == batch["output_file_id"]

    def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distilq.cli", *arguments], env=env, capture_output=True,
                              text=True, timeout=60)

    outputs = json.loads(cli("files", "list", "--purpose", "batch_output").stdout)
    assert {file["id"] for file in outputs} == {batch["output_file_id"], batch["error_file_id"]}
    assert cli("files", "delete", batch["input_file_id"], batch["output_file_id"]).returncode == 0
    assert [file["id"] for file in json.loads(cli("files", "list").stdout)] == [batch["error_file_id"]]
    missing = cli("files", "delete", batch["input_file_id"])
    assert missing.returncode == 1 and missing.stderr == f"distilq: 404 not_found: no file {batch['input_file_id']}\n"

    source.write_text(lines[0] + "\n{broken\n")
    broken = subprocess.run([sys.executable, "-m", "distilq.cli", "batch", "submit", str(source), "--wait"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and json.loads(broken.stdout)["errors"]["data"][0]["line"] == 2
    no_key = subprocess.run([sys.executable, "-m", "distilq.cli", "batch", "list"], capture_output=True, text=True,
                            env={k: v for k, v in env.items() if k != "DISTILQ_API_KEY"}, timeout=60)
    assert no_key.returncode == 1 and "DISTILQ_API_KEY" in no_key.stderr


def test_the_cli_deletes_on_the_server_what_it_wrote_and_keeps_an_error_file_it_did_not(
        stack: Stack, http: requests.Session, tmp_path: Path) -> None:
    key = stack.new_key("cli-delete")
    env = {**os.environ, "DISTILQ_URL": stack.url, "DISTILQ_API_KEY": key}
    mine = stack.client(key)
    source = tmp_path / "requests.jsonl"
    source.write_text("\n".join(mixed_lines(30)) + "\n")
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"

    def submit(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distilq.cli", "batch", "submit", str(source), *flags], env=env,
                              capture_output=True, text=True, timeout=300)

    def files() -> list[str]:
        return [file["id"] for file in mine.get(f"{stack.url}/v1/files").json()["data"]]

    refused = submit("--delete-files")
    assert refused.returncode == 1 and "--delete-files needs --output" in refused.stderr and files() == []
    nowhere = submit("--output", str(out), "--errors", str(tmp_path / "no" / "errors.jsonl"))
    assert nowhere.returncode == 1 and "no folder" in nowhere.stderr and files() == []  # said before any upload
    run = submit("--output", str(out), "--errors", str(errors), "--delete-files")
    assert run.returncode == 0, run.stderr
    batch = json.loads(run.stdout)
    assert batch["status"] == "completed" and len(out.read_text().splitlines()) == 30 and errors.read_text() == ""
    assert files() == [] and batch["input_file_id"] in run.stderr and batch["error_file_id"] in run.stderr

    # Lines cancelled before they run: no worker runs them meanwhile. A submit interrupted while it waits (Ctrl-C)
    # says how to pick the batch up; `batch wait` does, once it is cancelled.
    stack.stop("worker")
    try:
        cli = subprocess.Popen([sys.executable, "-m", "distilq.cli", "batch", "submit", str(source), "--wait"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a shell's
        assert cli.stderr is not None
        started = cli.stderr.readline()  # "distilq: batch batch_…: in_progress (30 lines)", said as it waits
        batch_id = started.split()[2].rstrip(":")
        cli.send_signal(signal.SIGINT)
        _, interrupted = cli.communicate(timeout=60)
        # 130, or death by SIGINT — a shell shows either as 130: CPython run with -m exits through SIGINT whatever
        # the program's own exit when the interrupt fell inside code run from a string (a dataclass's methods, as
        # rich's import makes them), even once caught.
        assert cli.returncode in (130, -signal.SIGINT), started + interrupted
        assert f"`distilq batch wait {batch_id}`" in interrupted and "Traceback" not in interrupted, interrupted
        assert mine.post(f"{stack.url}/v1/batches/{batch_id}/cancel").status_code == 200
        input_id = mine.get(f"{stack.url}/v1/batches/{batch_id}").json()["input_file_id"]
        assert mine.delete(f"{stack.url}/v1/files/{input_id}").status_code == 200  # gone already: as asked
        waited = subprocess.run([sys.executable, "-m", "distilq.cli", "batch", "wait", batch_id, "--output", str(out),
                                 "--delete-files"], env=env, capture_output=True, text=True, timeout=300)
    finally:
        stack.start_worker()
    stdout, stderr = waited.stdout, waited.stderr
    assert waited.returncode == 0, stderr
    batch = json.loads(stdout)
    assert batch["status"] == "cancelled" and batch["request_counts"] == {"total": 30, "completed": 0, "failed": 30}
    assert f"30 line(s) failed or were cancelled: see the error file {batch['error_file_id']}" in stderr
    assert files() == [batch["error_file_id"]] and out.read_text() == ""
    downloaded = subprocess.run([sys.executable, "-m", "distilq.cli", "files", "download", batch["error_file_id"]],
                                env=env, capture_output=True, text=True, timeout=60)
    errors_written = [json.loads(text) for text in downloaded.stdout.splitlines()]
    assert downloaded.returncode == 0 and errors_written == file_lines(stack, mine, batch["error_file_id"])
    assert len(errors_written) == 30 and {item["error"]["code"] for item in errors_written} == {"batch_cancelled"}
    missing = subprocess.run([sys.executable, "-m", "distilq.cli", "files", "download", batch["input_file_id"],
                              str(tmp_path / "gone.jsonl")], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and not (tmp_path / "gone.jsonl").exists()
    assert missing.stderr == f"distilq: 404 not_found: no file {batch['input_file_id']}\n"

    source.write_text("{broken\n")
    broken = submit("--output", str(out), "--delete-files")
    assert broken.returncode == 1 and json.loads(broken.stdout)["status"] == "failed"
    assert "distilq: line 1: not valid JSON" in broken.stderr, broken.stderr
    assert files() == [batch["error_file_id"]]  # its input deleted too


def test_a_batchs_rows_hold_as_many_inputs_as_the_workers_passes_allow(stack: Stack, http: requests.Session) -> None:
    """The worker tells its presence what one more input costs its passes (and its device); a batch created after
    that is packed in rows sized by it (`store.batch_rows.row_inputs`), each line still once in the output."""
    texts = [line(f"warm-{i}", "/v1/fill-mask", {"inputs": {"input_string": [TEXTS[i % len(TEXTS)]]}})
             for i in range(40)]
    assert stack.wait_batch(http, run_batch(stack, http, texts)["id"])["status"] == "completed"
    completed_at = time.time()
    client = redis.Redis.from_url(stack.redis_url)
    # Refreshed since: what it says holds every pass so far, and holds until the next batch's passes.
    timed = wait_for(lambda: [worker for worker in ready_workers(client) if worker["refreshed_at"] > completed_at
                              and (worker.get("seconds_per_input") or {}).get("fill-mask")] or None,
                     3 * REFRESH_S, "a worker's presence to tell what an input costs its passes")
    assert all(worker["device"] == "cpu" and worker["seconds_per_input"]["fill-mask"] > 0 for worker in timed)
    expected = batch_rows.row_inputs("fill-mask", ready_workers(client), None, Settings().lines_pass_ms)
    lines = [line(f"sized-{i}", "/v1/fill-mask", {"inputs": {"input_string": [TEXTS[i % len(TEXTS)]]}})
             for i in range(40)]
    batch = run_batch(stack, http, lines)
    with stack.sessions() as session:
        counts = list(session.scalars(select(Job.line_count).where(Job.batch_id == batch["id"])
                                      .order_by(Job.batch_line)))
    assert sum(counts) == 40 and max(counts) == min(expected, 40), (expected, counts)
    done = stack.wait_batch(http, batch["id"])
    assert [item["custom_id"] for item in file_lines(stack, http, done["output_file_id"])] == [
        f"sized-{i}" for i in range(40)]
