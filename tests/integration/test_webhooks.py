"""Webhooks to real receivers on loopback: signed (Standard Webhooks, verified with the library receivers use),
retried under one webhook-id, stopped by 410, never following redirects, timed out, filtered, logged, retried
by hand, and refused for non-public targets at submission and at delivery."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook

from tests.integration.receiver import Receiver
from tests.integration.stack import Stack, wait_for

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 1}}
pytestmark = pytest.mark.stack(start=("api", "worker", "webhooks", "beat"), env={
    "DISTILQ_WEBHOOK_ALLOW_PRIVATE": "true", "DISTILQ_WEBHOOK_RETRY_DELAYS": "0.3,0.3,0.3",
       "DISTILQ_WEBHOOK_TIMEOUT_S": "1", "DISTILQ_SWEEP_INTERVAL_S": "0.2"})


def submit(stack: Stack, http: requests.Session, webhook: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {**ONE, "webhook": webhook}
    if events is not None:
        body["webhook_events_filter"] = events
    response = http.post(f"{stack.url}/v1/fill-mask", json=body)
    assert response.status_code == 202, response.text
    return stack.wait_job(http, response.json()["id"])


def deliveries(stack: Stack, http: requests.Session, job_id: str) -> list[dict[str, Any]]:
    return list(http.get(f"{stack.url}/v1/jobs/{job_id}/deliveries").json()["data"])


def settled(stack: Stack, http: requests.Session, job_id: str, count: int) -> list[dict[str, Any]]:
    """The job's events once `count` exist and none is still pending."""
    def done() -> list[dict[str, Any]] | None:
        events = deliveries(stack, http, job_id)
        return events if len(events) == count and all(e["status"] != "pending" for e in events) else None

    return wait_for(done, 60, f"{count} deliveries of job {job_id} to settle")


def test_events_verify_with_standardwebhooks_and_carry_the_job(stack: Stack, http: requests.Session,
                                                               receiver: Receiver) -> None:
    job = submit(stack, http, receiver.on("/ok", "200"))
    events = settled(stack, http, job["id"], 2)
    assert [e["type"] for e in events] == ["job.started", "job.completed"]
    assert all(e["status"] == "delivered" and len(e["attempts"]) == 1 for e in events)
    secret = http.get(f"{stack.url}/v1/webhooks/secret").json()["secret"]
    assert secret.startswith("whsec_")
    received = receiver.requests_to("/ok")
    assert len(received) == 2
    payloads = [Webhook(secret).verify(r.body, r.headers) for r in received]
    by_type = {p["type"]: (p, r) for p, r in zip(payloads, received, strict=True)}
    completed, request = by_type["job.completed"]
    assert completed["data"] == http.get(f"{stack.url}/v1/jobs/{job['id']}").json()
    assert request.headers["webhook-id"] == events[1]["id"]
    assert by_type["job.started"][0]["data"]["status"] == "running"
    assert completed["timestamp"].endswith("Z")


def test_a_receiver_that_fails_twice_gets_the_event_under_one_id(stack: Stack, http: requests.Session,
                                                                 receiver: Receiver) -> None:
    job = submit(stack, http, receiver.on("/flaky", "500", "503", "204"), events=["completed"])
    [event] = settled(stack, http, job["id"], 1)
    assert event["status"] == "delivered"
    assert [(a["attempt"], a["response_status"]) for a in event["attempts"]] == [(1, 500), (2, 503), (3, 204)]
    received = receiver.requests_to("/flaky")
    assert len(received) == 3 and {r.headers["webhook-id"] for r in received} == {event["id"]}
    assert len({r.body for r in received}) == 1


def test_410_stops_retrying(stack: Stack, http: requests.Session, receiver: Receiver) -> None:
    job = submit(stack, http, receiver.on("/gone", "410"), events=["completed"])
    [event] = settled(stack, http, job["id"], 1)
    assert event["status"] == "gone" and [a["response_status"] for a in event["attempts"]] == [410]


def test_a_redirect_is_a_failure_and_is_not_followed(stack: Stack, http: requests.Session,
                                                     receiver: Receiver) -> None:
    job = submit(stack, http, receiver.on("/moved", "302"), events=["completed"])
    [event] = settled(stack, http, job["id"], 1)
    assert event["status"] == "failed"  # 1 attempt + 3 retries, all 302
    assert [a["response_status"] for a in event["attempts"]] == [302, 302, 302, 302]
    assert receiver.requests_to("/redirect-target") == []


def test_a_receiver_slower_than_the_timeout_fails_the_attempt(stack: Stack, http: requests.Session,
                                                              receiver: Receiver) -> None:
    job = submit(stack, http, receiver.on("/slow", "sleep:3", "200"), events=["completed"])
    [event] = settled(stack, http, job["id"], 1)
    assert event["status"] == "delivered"
    first, second = event["attempts"][:2]
    assert first["response_status"] is None and "timed out" in first["error"]
    assert second["response_status"] == 200


def test_the_filter_picks_the_events(stack: Stack, http: requests.Session, receiver: Receiver) -> None:
    job = submit(stack, http, receiver.on("/start-only", "200"), events=["start"])
    [event] = settled(stack, http, job["id"], 1)
    assert event["type"] == "job.started"
    assert [json.loads(r.body)["type"] for r in receiver.requests_to("/start-only")] == ["job.started"]


def test_manual_retry_sends_the_event_again_under_its_id(stack: Stack, http: requests.Session,
                                                         receiver: Receiver) -> None:
    job = submit(stack, http, receiver.on("/again", "200"), events=["completed"])
    [event] = settled(stack, http, job["id"], 1)
    response = http.post(f"{stack.url}/v1/jobs/{job['id']}/deliveries/{event['id']}/retry")
    assert response.status_code == 202
    wait_for(lambda: len(receiver.requests_to("/again")) == 2, 30, "the manual retry")
    [event] = settled(stack, http, job["id"], 1)
    assert len(event["attempts"]) == 2
    assert {r.headers["webhook-id"] for r in receiver.requests_to("/again")} == {event["id"]}
    other = stack.client(stack.new_key("other"))
    assert other.get(f"{stack.url}/v1/jobs/{job['id']}/deliveries").status_code == 404
    assert other.post(f"{stack.url}/v1/jobs/{job['id']}/deliveries/{event['id']}/retry").status_code == 404


def test_after_rotation_both_secrets_verify(stack: Stack, receiver: Receiver) -> None:
    http = stack.client(stack.new_key("rotating"))
    old = http.get(f"{stack.url}/v1/webhooks/secret").json()["secret"]
    rotated = http.post(f"{stack.url}/v1/webhooks/secret/rotate").json()
    assert rotated["secret"] != old and rotated["previous_secret_expires_at"]
    job = submit(stack, http, receiver.on("/rotated", "200"), events=["completed"])
    settled(stack, http, job["id"], 1)
    [request] = receiver.requests_to("/rotated")
    for secret in (old, rotated["secret"]):
        assert Webhook(secret).verify(request.body, request.headers)["data"]["id"] == job["id"]


def test_a_canceled_job_sends_job_completed(stack: Stack, http: requests.Session, receiver: Receiver) -> None:
    stack.stop("worker")  # nothing runs the job: it is canceled while queued
    try:
        body = {**ONE, "webhook": receiver.on("/canceled", "200"), "webhook_events_filter": ["completed"]}
        response = http.post(f"{stack.url}/v1/fill-mask", json=body)
        job_id = response.json()["id"]
        http.post(f"{stack.url}/v1/jobs/{job_id}/cancel")
        [event] = settled(stack, http, job_id, 1)
        [request] = receiver.requests_to("/canceled")
        assert json.loads(request.body)["data"]["status"] == "canceled"
        assert event["status"] == "delivered"
    finally:
        stack.start_worker()


def test_private_targets_are_refused_at_delivery_too(stack: Stack, http: requests.Session,
                                                     receiver: Receiver) -> None:
    """The API lets private targets through (as in development), the sender does not: nothing is contacted."""
    strict = {"DISTILQ_WEBHOOK_ALLOW_PRIVATE": "false"}
    stack.stop("webhooks")
    stack.stop("beat")
    stack.start("strict-webhooks", "worker", "--queues", "webhooks", env=strict)
    stack.start("strict-beat", "beat", env=strict)
    try:
        job = submit(stack, http, receiver.on("/private", "200"), events=["completed"])
        [event] = settled(stack, http, job["id"], 1)
        assert event["status"] == "failed"
        assert all(a["response_status"] is None and a["error"].startswith("refused") for a in event["attempts"])
        assert receiver.requests_to("/private") == []
    finally:
        stack.stop("strict-webhooks")
        stack.stop("strict-beat")
        stack.start("webhooks", "worker", "--queues", "webhooks")
        stack.start("beat", "beat")
