"""Keys (create, list, revoke; stored hashed only) and the per-key limits: request rate and jobs in flight."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import select

from models.db import Base
from tests.integration.stack import Stack

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}

#: An API with no worker (jobs stay queued), a rate limit of 8 a minute and 2 jobs in flight per key.
pytestmark = pytest.mark.stack(env={"DISTILQ_RATE_LIMIT": "8/minute", "DISTILQ_MAX_JOBS_IN_FLIGHT": "2"})


def test_keys_are_listed_revoked_and_never_stored_in_plain_text(stack: Stack) -> None:
    key = stack.run("keys", "create", "--name", "ci-robot").stdout.strip()
    http = stack.client(key)
    assert http.get(f"{stack.url}/v1/jobs").status_code == 200
    listing = stack.run("keys", "list").stdout
    [line] = [line for line in listing.splitlines() if "ci-robot" in line]
    assert key[:9] in line and key not in listing

    with stack.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                assert key not in repr(tuple(row)), f"the key is stored in plain text in {table.name}"

    assert stack.run("keys", "revoke", key[:9]).returncode == 0
    revoked = http.get(f"{stack.url}/v1/jobs")
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "unauthorized"
    assert "ci-robot" in stack.run("keys", "list").stdout


def test_jobs_in_flight_are_capped_per_key(stack: Stack) -> None:
    http = stack.client(stack.new_key("busy"))
    first = http.post(f"{stack.url}/v1/fill-mask", json=ONE).json()
    assert http.post(f"{stack.url}/v1/fill-mask", json=ONE).status_code == 202
    third = http.post(f"{stack.url}/v1/fill-mask", json=ONE)
    assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_jobs_in_flight"
    assert int(third.headers["Retry-After"]) > 0
    other = stack.client(stack.new_key("quiet"))
    assert other.post(f"{stack.url}/v1/fill-mask", json=ONE).status_code == 202  # per key
    http.post(f"{stack.url}/v1/jobs/{first['id']}/cancel")
    assert http.post(f"{stack.url}/v1/fill-mask", json=ONE).status_code == 202


def test_requests_are_rate_limited_per_key(stack: Stack) -> None:
    http = stack.client(stack.new_key("chatty"))
    statuses = [http.get(f"{stack.url}/v1/jobs").status_code for _ in range(8)]
    assert statuses == [200] * 8
    limited = http.get(f"{stack.url}/v1/jobs")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert stack.client(stack.new_key("calm")).get(f"{stack.url}/v1/jobs").status_code == 200
    assert requests.get(f"{stack.url}/healthz").status_code == 200  # unauthenticated routes are not limited
