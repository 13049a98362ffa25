"""The Python client (`client/`, `distilq_client`) and the CLI's job commands against the real service: a fresh
venv installs the client alone and submits and waits in five lines; errors come as DistilqError with the API's
code; 429s are retried after Retry-After without a second job; pages are followed; webhooks verify; `distilq
submit` and `distilq jobs` round-trip a job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from distilq_client import Client, DistilqError, verify_webhook
from sqlalchemy import func, select

from models.tables import Job
from tests.integration.receiver import Receiver
from tests.integration.stack import Stack, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.stack(start=("api", "worker", "webhooks", "beat"), env={
    "DISTILQ_SWEEP_INTERVAL_S": "0.2", "DISTILQ_WEBHOOK_ALLOW_PRIVATE": "true", "DISTILQ_RATE_LIMIT": "4/second"})
MASKED = "Paris is the [MASK] of France."


def test_a_fresh_venv_installs_the_client_alone_and_waits_for_a_job_in_five_lines(stack: Stack,
                                                                                   tmp_path: Path) -> None:
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(ROOT / "client")], check=True, timeout=600)
    script = ("from distilq_client import Client\n"
              f"client = Client({stack.url!r}, key={stack.new_key('fresh')!r})\n"
              f"job = client.fill_mask([{MASKED!r}], top_k=2)\n"
              "done = client.wait(job.id, timeout=60)\n"
              "print(done.status, done.output[0][0]['token_str'])\n")
    run = subprocess.run([python, "-c", script + "import sys; print(sorted(m for m in ('torch', 'flask', 'sqlalchemy')"
                                                 " if m in sys.modules or __import__('importlib.util').util"
                                                 ".find_spec(m)))"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    status, _token = run.stdout.splitlines()[0].split(" ", 1)
    assert status == "succeeded" and run.stdout.splitlines()[1] == "[]"  # none of the server's dependencies


def test_jobs_errors_pages_and_cancel(stack: Stack) -> None:
    client = Client(stack.url, key=stack.new_key("jobs"))
    job = client.question_answering(["Where do I live?"], ["My name is Wolfgang and I live in Berlin."], wait_s=30)
    assert job.status == "succeeded" and set(job.output[0]) == {"score", "start", "end", "answer"}  # type: ignore[index]
    with pytest.raises(DistilqError) as bad:
        client.fill_mask(["No mask here."])
    assert bad.value.status == 422 and bad.value.code == "invalid_request"
    assert bad.value.details[0]["loc"] == ["inputs", "input_string", 0]
    with pytest.raises(DistilqError) as missing:
        client.get("no-such-job")
    assert missing.value.status == 404
    ids = [client.fill_mask([MASKED]).id for _ in range(5)]
    listed = [found.id for found in client.list(page_size=2)]
    assert listed[:5] == ids[::-1] and len(listed) == 6  # newest first, over three pages
    canceled = client.cancel(client.fill_mask([MASKED] * 3).id)
    assert canceled.status in ("canceled", "succeeded")
    assert client.wait(ids[0], timeout=60).ended


def test_429s_are_retried_after_retry_after_and_never_make_a_second_job(stack: Stack) -> None:
    key = stack.new_key("burst")
    client = Client(stack.url, key=key, max_retries=20)
    ids = [client.fill_mask([MASKED]).id for _ in range(12)]  # 4 a second: most of these get a 429 first
    assert len(set(ids)) == 12
    with stack.sessions() as session:
        from models.tables import ApiKey
        from store.keys import hash_key

        key_id = session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))
        assert session.scalar(select(func.count()).select_from(Job).where(Job.api_key_id == key_id)) == 12
    impatient = Client(stack.url, key=key, max_retries=0)
    with pytest.raises(DistilqError) as limited:
        for _ in range(8):
            impatient.fill_mask([MASKED])
    assert limited.value.status == 429


def test_batches_evaluations_and_webhooks_through_the_client(stack: Stack, tmp_path: Path,
                                                             receiver: Receiver) -> None:
    client = Client(stack.url, key=stack.new_key("files"))
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/fill-mask",
                                         "body": {"inputs": {"input_string": [MASKED]}}}) + "\n" for i in range(5)))
    batch = client.wait_batch(client.create_batch(client.upload(lines).id).id, timeout=120)
    assert batch.status == "completed" and batch.request_counts["completed"] == 5 and batch.output_file_id
    out = tmp_path / "out.jsonl"
    assert client.download(batch.output_file_id, out) == out.stat().st_size > 0
    assert [json.loads(text)["custom_id"] for text in out.read_text().splitlines()] == [f"r{i}" for i in range(5)]
    client.delete_file(batch.output_file_id)  # downloaded: no longer needed there
    with pytest.raises(DistilqError) as gone:
        client.download(batch.output_file_id, out)
    assert gone.value.status == 404

    examples = tmp_path / "examples.jsonl"
    examples.write_text(json.dumps({"text": MASKED, "label": "capital"}) + "\n")
    evaluation = client.wait_evaluation(client.create_evaluation("fill-mask", client.upload(examples, "evaluation")
                                                                 .id).id, timeout=120)
    assert evaluation.status == "succeeded" and evaluation.metrics is not None and "mrr" in evaluation.metrics
    assert [e.id for e in client.list_evaluations()] == [evaluation.id]
    assert client.cancel_evaluation(evaluation.id).status == "succeeded"  # an ended one stays as it is
    assert client.cancel_batch(batch.id).status == "completed" and client.list_batches()[0].id == batch.id
    newer = client.create_batch(client.upload(lines).id)
    assert [b.id for b in client.list_batches(2, page_size=1)] == [newer.id, batch.id]  # two pages
    assert [b.id for b in client.list_batches(1)] == [newer.id]
    assert [b.id for b in client.list_batches(500)] == [newer.id, batch.id]  # past the route's 100: pages
    assert [e.id for e in client.list_evaluations(500, page_size=1)] == [evaluation.id]

    job = client.fill_mask([MASKED], webhook=receiver.on("/client", "200"))
    [delivery] = wait_for(lambda: [r for r in receiver.requests_to("/client") if '"job.completed"' in r.body]
                          or None, 60, "the job.completed webhook")
    event = verify_webhook(delivery.body, delivery.headers, client.webhook_secret())
    assert event["type"] == "job.completed" and event["data"]["id"] == job.id
    with pytest.raises(DistilqError) as forged:
        verify_webhook(delivery.body.replace(job.id, "someone-else"), delivery.headers, client.webhook_secret())
    assert forged.value.code == "invalid_signature"


def _cli(stack: Stack, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISTILQ_URL": stack.url, "DISTILQ_API_KEY": key}
    return subprocess.run([sys.executable, "-m", "distilq.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def test_the_cli_round_trips_a_job(stack: Stack) -> None:
    key = stack.new_key("cli")
    submitted = _cli(stack, key, "submit", "fill-mask", MASKED, "--top-k", "2", "--wait")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)  # not a terminal: JSON
    assert job["status"] == "succeeded" and len(job["output"][0]) == 2
    qa = json.loads(_cli(stack, key, "submit", "question-answering", "--question", "Where do I live?",
                         "--context", "My name is Wolfgang and I live in Berlin.", "--wait").stdout)
    assert qa["status"] == "succeeded" and qa["task"] == "question-answering"
    assert json.loads(_cli(stack, key, "jobs", "get", job["id"]).stdout)["id"] == job["id"]
    listed = json.loads(_cli(stack, key, "jobs", "list", "--limit", "5").stdout)
    assert [found["id"] for found in listed] == [qa["id"], job["id"]]
    queued = json.loads(_cli(stack, key, "submit", "fill-mask", MASKED).stdout)
    waited = json.loads(_cli(stack, key, "jobs", "wait", queued["id"]).stdout)
    assert waited["status"] == "succeeded"
    assert json.loads(_cli(stack, key, "jobs", "cancel", queued["id"]).stdout)["status"] == "succeeded"
    bad = _cli(stack, key, "submit", "fill-mask", "No mask here.")
    assert bad.returncode == 1 and "422" in bad.stderr and "mask" in bad.stderr
    pairs = _cli(stack, key, "submit", "question-answering", "--question", "Who?")
    assert pairs.returncode == 1 and "--context" in pairs.stderr
