"""The spine over real processes: submit, queue, batch-infer, poll — outputs equal to the pipelines."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import func, select
from transformers import pipeline

from core.queue import read_announcements, waiter_channel
from models.tables import Job
from tests.integration.stack import Stack, announcement_of, wait_for
from tests.unit.worker.engine.test_fill_mask import assert_same
from tests.unit.worker.engine.test_question_answering import REFERENCE, assert_same_answers

SEED_REQUEST = {
    "inputs": {"input_string": ["Paris is the [MASK] of France.", "Today is a [MASK] day!"]},
    "parameters": {"top_k": 2},
}

pytestmark = pytest.mark.stack(start=("api", "worker"))


@pytest.fixture(scope="module")
def fill_mask(tiny_models: dict[str, Path]) -> Any:
    return pipeline("fill-mask", model=str(tiny_models["fill-mask"]), device="cpu")


def test_seed_sample_runs_verbatim_and_equals_the_pipeline(stack: Stack, http: requests.Session,
                                                           fill_mask: Any) -> None:
    response = http.post(f"{stack.url}/v1/fill-mask", json=SEED_REQUEST)
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["output"] is None and job["metrics"]["attempts"] == 0
    assert job["urls"] == {"get": f"/v1/jobs/{job['id']}", "cancel": f"/v1/jobs/{job['id']}/cancel"}

    done = stack.wait_job(http, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert len(done["output"]) == 2
    for text, output in zip(SEED_REQUEST["inputs"]["input_string"], done["output"], strict=True):
        assert_same(output, fill_mask(text, top_k=2))
    assert done["started_at"] and done["completed_at"] and done["created_at"].endswith("Z")
    assert done["metrics"]["attempts"] == 1 and done["metrics"]["batch_size"] >= 2


def test_prefer_wait_answers_with_the_finished_job(stack: Stack, http: requests.Session, fill_mask: Any) -> None:
    body = {"inputs": {"input_string": ["Paris [MASK] the [MASK] of France."]},
            "parameters": {"top_k": 3, "targets": ["Paris", "day", "capital"]}, "metadata": {"run": 7}}
    response = http.post(f"{stack.url}/v1/fill-mask", json=body, headers={"Prefer": "wait=30"})
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "wait=30"
    job = response.json()
    assert job["status"] == "succeeded" and job["metadata"] == {"run": 7}
    expected = fill_mask(body["inputs"]["input_string"][0], top_k=3, targets=["Paris", "day", "capital"])
    assert_same(job["output"][0], expected)


def test_a_polled_job_keeps_the_order_of_its_outputs_and_metadatas_keys(stack: Stack,
                                                                        http: requests.Session) -> None:
    """As written, on either database: the pipeline's order of a prediction's fields, the client's of its metadata
    (PostgreSQL's jsonb, before migration 0014, gave both back sorted by the keys' length)."""
    metadata = {"zebra_run": 1, "a": 2, "middle": {"yy": 1, "x": 2}}
    response = http.post(f"{stack.url}/v1/fill-mask", json={**SEED_REQUEST, "metadata": metadata})
    job_id = response.json()["id"]
    assert stack.wait_job(http, job_id)["status"] == "succeeded"
    polled = http.get(f"{stack.url}/v1/jobs/{job_id}")
    job = json.loads(polled.text)  # a dict keeps the order the text gives
    assert list(job["metadata"]) == ["zebra_run", "a", "middle"] and list(job["metadata"]["middle"]) == ["yy", "x"]
    assert [list(prediction) for prediction in job["output"][0]] == [["score", "token", "token_str", "sequence"]] * 2


def test_a_finish_is_announced_to_the_process_holding_its_request_alone(stack: Stack, http: requests.Session) -> None:
    """A job nobody holds is announced to nobody; a held one on the channel of the API process holding it, which
    the row names (`held_by`)."""
    with redis.Redis.from_url(stack.redis_url).pubsub(ignore_subscribe_messages=True) as observer:
        observer.psubscribe(waiter_channel("*"))
        unheld = http.post(f"{stack.url}/v1/fill-mask", json=SEED_REQUEST).json()
        assert stack.wait_job(http, unheld["id"])["status"] == "succeeded"
        held = http.post(f"{stack.url}/v1/fill-mask", json=SEED_REQUEST, headers={"Prefer": "wait=30"}).json()
        assert held["status"] == "succeeded"
        heard = wait_for(lambda: announcement_of(observer, {unheld["id"], held["id"]}), 30,
                         "the held job's announcement")
    # The worker announces in the order it writes, and the observer hears in the order announced: had the unheld
    # job been announced, it would have been heard first.
    with stack.sessions() as session:
        rows = {job_id: session.get_one(Job, job_id).held_by for job_id in (unheld["id"], held["id"])}
    assert rows[unheld["id"]] is None and rows[held["id"]] is not None
    assert heard["channel"].decode() == waiter_channel(rows[held["id"]])
    [(announced_id, announced)] = read_announcements(heard["data"])
    assert announced_id == held["id"] and announced is not None and json.loads(announced) == held


@pytest.mark.parametrize("case", [c for c in REFERENCE["cases"] if c["context"].startswith("The Eiffel")][:2]
                         + REFERENCE["cases"][:2], ids=lambda c: json.dumps(c["parameters"]))
def test_question_answering_equals_the_4_57_pipeline(stack: Stack, http: requests.Session,
                                                     case: dict[str, Any]) -> None:
    body = {"inputs": {"question": [case["question"]], "context": [case["context"]]},
            "parameters": case["parameters"]}
    job = http.post(f"{stack.url}/v1/question-answering", json=body, headers={"Prefer": "wait=60"}).json()
    assert job["status"] == "succeeded", job["error"]
    [output] = job["output"]
    expected = case["output"] if isinstance(case["output"], list) else [case["output"]]
    assert_same_answers(output if isinstance(output, list) else [output], expected)


def test_concurrent_jobs_are_batched_and_each_gets_its_own_output(stack: Stack, http: requests.Session,
                                                                  fill_mask: Any) -> None:
    texts = [f"{word} is the [MASK] of France." for word in
             ("Paris", "Berlin", "München", "Zürich", "Köln", "Genève", "Москва", "東京", "The river", "It",
              "My name", "The Eiffel Tower")]

    def submit(text: str) -> str:
        return str(http.post(f"{stack.url}/v1/fill-mask",
                             json={"inputs": {"input_string": [text]}, "parameters": {"top_k": 2}}).json()["id"])

    with ThreadPoolExecutor(len(texts)) as pool:
        ids = list(pool.map(submit, texts))
    jobs = [stack.wait_job(http, job_id) for job_id in ids]
    for text, job in zip(texts, jobs, strict=True):
        assert job["status"] == "succeeded"
        assert job["input"]["input_string"] == [text]
        assert_same(job["output"][0], fill_mask(text, top_k=2))
    assert max(job["metrics"]["batch_size"] for job in jobs) > 1, "no two jobs shared a forward pass"


def test_a_job_larger_than_a_batch_runs_whole(stack: Stack, http: requests.Session, fill_mask: Any) -> None:
    texts = [f"Sentence {i} is about the [MASK] of France." for i in range(70)]  # > DISTILQ_MAX_BATCH_SIZE
    job = http.post(f"{stack.url}/v1/fill-mask", json={"inputs": {"input_string": texts},
                                                        "parameters": {"top_k": 1}}).json()
    done = stack.wait_job(http, job["id"])
    assert done["status"] == "succeeded" and len(done["output"]) == 70
    assert_same(done["output"][69], fill_mask(texts[69], top_k=1))


def test_list_is_newest_first_with_cursor_and_filters(stack: Stack) -> None:
    http = stack.client(stack.new_key("lister"))
    ids = []
    for i in range(5):
        task = "fill-mask" if i % 2 == 0 else "question-answering"
        body = (SEED_REQUEST if task == "fill-mask" else
                {"inputs": {"question": ["Where?"], "context": ["In Berlin."]}})
        ids.append(http.post(f"{stack.url}/v1/{task}", json=body).json()["id"])
    seen, cursor = [], None
    while True:
        page = http.get(f"{stack.url}/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["data"]) <= 2
        seen += [job["id"] for job in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    qa = http.get(f"{stack.url}/v1/jobs", params={"task": "question-answering"}).json()["data"]
    assert [job["id"] for job in qa] == [ids[3], ids[1]]
    for job_id in ids:
        stack.wait_job(http, job_id)
    assert len(http.get(f"{stack.url}/v1/jobs", params={"status": "succeeded"}).json()["data"]) == 5
    assert http.get(f"{stack.url}/v1/jobs", params={"status": "queued"}).json()["data"] == []
    bad = http.get(f"{stack.url}/v1/jobs", params={"status": "done"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == ["query", "status"]
    assert http.get(f"{stack.url}/v1/jobs", params={"cursor": "garbage"}).status_code == 422


def test_keys_see_only_their_own_jobs(stack: Stack, http: requests.Session) -> None:
    job = http.post(f"{stack.url}/v1/fill-mask", json=SEED_REQUEST).json()
    other = stack.client(stack.new_key("other"))
    for response in (other.get(f"{stack.url}/v1/jobs/{job['id']}"),
                     other.post(f"{stack.url}/v1/jobs/{job['id']}/cancel"),
                     other.get(f"{stack.url}/v1/jobs/does-not-exist")):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert all(j["id"] != job["id"] for j in other.get(f"{stack.url}/v1/jobs").json()["data"])
    assert requests.get(f"{stack.url}/v1/jobs/{job['id']}").status_code == 401
    wrong = requests.get(f"{stack.url}/v1/jobs", headers={"Authorization": "Bearer dq_not-a-key"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"


def test_finished_job_is_not_canceled(stack: Stack, http: requests.Session) -> None:
    job = http.post(f"{stack.url}/v1/fill-mask", json=SEED_REQUEST, headers={"Prefer": "wait=30"}).json()
    assert job["status"] == "succeeded"
    after = http.post(f"{stack.url}/v1/jobs/{job['id']}/cancel").json()
    assert after["status"] == "succeeded" and after["output"] == job["output"]


def test_idempotency_key_returns_the_same_job_even_under_concurrency(stack: Stack, http: requests.Session) -> None:
    headers = {"Idempotency-Key": "order-42"}

    def submit(_: int) -> requests.Response:
        return http.post(f"{stack.url}/v1/fill-mask", json=SEED_REQUEST, headers=headers)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(submit, range(16)))
    assert {r.status_code for r in responses} <= {200, 202}
    assert len({r.json()["id"] for r in responses}) == 1
    with stack.sessions() as session:
        count = session.scalar(select(func.count()).select_from(Job).where(Job.idempotency_key == "order-42"))
    assert count == 1
    other_body = http.post(f"{stack.url}/v1/fill-mask", headers=headers,
                           json={**SEED_REQUEST, "parameters": {"top_k": 3}})
    assert other_body.status_code == 409 and other_body.json()["error"]["code"] == "idempotency_key_reused"


def test_health_and_readiness(stack: Stack) -> None:
    assert requests.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    ready = requests.get(f"{stack.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok", "workers": "ok"}
