"""Metrics (parsed with prometheus-client's own parser) from the API and a worker, and readiness that follows
Redis going down and coming back."""

from __future__ import annotations

import socket

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from distilq.stack import EmbeddedRedis, free_port
from tests.integration import stack as stack_module
from tests.integration.stack import Stack, wait_for

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 1}}

pytestmark = pytest.mark.stack(own_redis=True)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_api_and_worker_metrics(fresh_stack: Stack) -> None:
    http = fresh_stack.client(fresh_stack.new_key())
    job = http.post(f"{fresh_stack.url}/v1/fill-mask", json=ONE).json()
    assert http.post(f"{fresh_stack.url}/v1/jobs/{job['id']}/cancel").json()["status"] == "canceled"  # no worker yet
    port = fresh_stack.start_worker_serving_metrics("worker")
    for _ in range(3):
        assert http.post(f"{fresh_stack.url}/v1/fill-mask", json=ONE, headers={"Prefer": "wait=30"}).status_code == 200

    api = samples(requests.get(f"{fresh_stack.url}/metrics").text)
    assert api[("distilq_jobs_submitted_total", (("task", "fill-mask"),))] == 4
    assert ("distilq_queue_depth", (("queue", "question-answering"),)) in api
    assert api[("distilq_jobs_in_flight", (("status", "queued"), ("task", "question-answering")))] == 0

    def worker_metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        found = samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text)
        done = found.get(("distilq_jobs_finished_total", (("status", "succeeded"), ("task", "fill-mask"))), 0)
        return found if done >= 3 else None

    worker = wait_for(worker_metrics, 30, "the worker's metrics")
    assert worker[("distilq_worker_ready", ())] == 1
    assert worker[("distilq_batch_inputs_count", (("task", "fill-mask"),))] >= 1
    assert worker[("distilq_batch_tokens_sum", (("task", "fill-mask"),))] > 0
    assert worker[("distilq_inference_seconds_count", (("task", "fill-mask"),))] >= 1
    assert worker[("distilq_queue_wait_seconds_count", (("task", "fill-mask"),))] >= 3
    assert worker[("distilq_job_latency_seconds_count", (("task", "fill-mask"),))] >= 3
    api = samples(requests.get(f"{fresh_stack.url}/metrics").text)
    assert api[("distilq_jobs_finished_total", (("status", "canceled"), ("task", "fill-mask")))] == 1


def test_a_worker_whose_metrics_port_is_taken_runs_without_it_and_is_started_on_another(
        fresh_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port drawn free can be taken before the worker binds it, after its models load: the worker says so and
    serves jobs without metrics; the test stack then starts one on another port (CI once saw a worker's metrics
    port never answer)."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        drawn = iter([busy])
        monkeypatch.setattr(stack_module, "free_port", lambda: next(drawn, 0) or free_port())
        port = fresh_stack.start_worker_serving_metrics("worker")
        assert port != busy and f"metrics port {busy} unavailable" in fresh_stack.log("worker")
    found = samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    assert found[("distilq_worker_ready", ())] == 1


def test_readiness_follows_the_models_and_redis(fresh_stack: Stack, own_redis: EmbeddedRedis) -> None:
    """Not ready until a worker has loaded each task's model (the API alone once said ready); then not while
    Redis is away; ready again once it is back and the worker has announced itself to it again."""
    before = requests.get(f"{fresh_stack.url}/readyz")
    assert before.status_code == 503
    assert "fill-mask, question-answering" in before.json()["checks"]["workers"]
    fresh_stack.start("webhooks", "worker", "--queues", "webhooks", "--metrics-port", "0")  # serves no model
    fresh_stack.start_worker("worker", "--queues", "fill-mask")
    assert "question-answering" in requests.get(f"{fresh_stack.url}/readyz").json()["checks"]["workers"]
    fresh_stack.start_worker("worker-qa", "--queues", "question-answering")
    assert requests.get(f"{fresh_stack.url}/readyz").status_code == 200
    own_redis.kill()
    down = requests.get(f"{fresh_stack.url}/readyz")
    assert down.status_code == 503 and down.json()["checks"]["redis"].startswith("unreachable")
    assert requests.get(f"{fresh_stack.url}/healthz").status_code == 200  # alive, just not ready
    own_redis.start()
    wait_for(lambda: requests.get(f"{fresh_stack.url}/readyz").status_code == 200, 30, "readiness to return")
