"""What gunicorn and the API answer at the edges of HTTP, over a real connection: a body over the limit while the
client is still sending, headers and request lines beyond gunicorn's limits — each in the API's error shape — and
every line the API process logs is a JSON line."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.integration.stack import Stack, processes_with, wait_for

#: An API and no worker: jobs stay queued, so a `Prefer: wait` holds for as long as it asks.
pytestmark = pytest.mark.stack(env={"DISTILQ_LOG_FORMAT": "json", "DISTILQ_MAX_BODY_BYTES": "100000",
                                    "DISTILQ_MAX_WAITING_PER_KEY": "2"})


def error_of(response: requests.Response) -> dict[str, object]:
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:200]
    error: dict[str, object] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def test_a_body_over_the_limit_is_answered_413_while_the_client_still_sends(stack: Stack) -> None:
    """A client that sends a 6 MB body at about 3 MB/s: an API that answered at once and stopped reading made the
    client's next write fail with a broken pipe (a reset) before it could read the 413."""
    key = stack.new_key()
    size, piece = 6_000_000, b"x" * 65536
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=30) as sock:
        sock.sendall(f"POST /v1/fill-mask HTTP/1.1\r\nHost: distilq\r\nAuthorization: Bearer {key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode())
        sent = 0
        while sent < size:
            sock.sendall(piece[: size - sent])
            sent += len(piece)
            threading.Event().wait(0.02)  # pacing the upload, not synchronising with the server
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_gunicorns_own_refusals_use_the_error_shape(stack: Stack) -> None:
    http = stack.client(stack.new_key())
    long_header = http.post(f"{stack.url}/v1/fill-mask", json={"inputs": {"input_string": ["a [MASK]"]}},
                            headers={"Idempotency-Key": "k" * 10_000})
    assert long_header.status_code == 431 and error_of(long_header)["code"] == "request_header_fields_too_large"
    long_line = http.get(f"{stack.url}/v1/jobs/{'j' * 6000}")
    assert long_line.status_code == 414 and error_of(long_line)["code"] == "uri_too_long"


def test_every_line_the_api_logs_is_json(stack: Stack) -> None:
    http = stack.client(stack.new_key())
    http.get(f"{stack.url}/v1/jobs/{'j' * 6000}")  # gunicorn's warning
    http.get(f"{stack.url}/v1/jobs")  # an access line
    lines = [line for line in stack.log("api").splitlines() if line.strip()]
    assert len(lines) >= 3
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record), line


def test_an_access_line_has_the_request_s_parts_as_fields_and_never_the_key(stack: Stack) -> None:
    key = stack.new_key()
    http = stack.client(key)
    answer = http.get(f"{stack.url}/v1/jobs?limit=1", headers={"User-Agent": "access-line-test/1"})
    assert answer.status_code == 200
    missing = http.get(f"{stack.url}/v1/jobs/no-such-job", headers={"User-Agent": "access-line-test/1"})
    assert missing.status_code == 404

    def both_access_lines() -> list[dict[str, Any]] | None:
        records = [json.loads(line) for line in stack.log("api").splitlines() if line.strip()]
        lines = [r for r in records if r["logger"] == "gunicorn.access" and r.get("user_agent") == "access-line-test/1"]
        return lines if len(lines) == 2 else None

    # Each is logged once its answer is sent, by whichever API process served it: in either order.
    by_path = {line["path"]: line for line in wait_for(both_access_lines, 10, "both access lines")}
    listed, refused = by_path["/v1/jobs?limit=1"], by_path["/v1/jobs/no-such-job"]
    assert {field: listed[field] for field in ("method", "path", "status", "remote_addr")} == {
        "method": "GET", "path": "/v1/jobs?limit=1", "status": 200, "remote_addr": "127.0.0.1"}
    assert listed["bytes"] == len(answer.content) and listed["duration_ms"] >= 0
    assert listed["message"] == f"GET /v1/jobs?limit=1 200 {listed['duration_ms']:.1f} ms"
    assert (refused["method"], refused["status"]) == ("GET", 404)
    assert key not in stack.log("api")


def test_one_key_cannot_hold_more_than_its_share_of_waiting_requests(stack: Stack) -> None:
    """40 held requests of one key once made /healthz take 8.6 s: each held a server thread. Each API process lets a
    key hold 2 (DISTILQ_MAX_WAITING_PER_KEY) of its threads; the key's POSTs beyond, whichever process takes them,
    are answered at once."""
    processes = len(processes_with(f"DISTILQ_HOME={stack.home}", "api.wsgi:app")) - 1  # less their arbiter
    assert processes >= 1
    greedy, other = stack.client(stack.new_key()), stack.client(stack.new_key())
    body = {"inputs": {"input_string": ["a [MASK]"]}}

    def post(http: requests.Session, wait_s: int) -> requests.Response:
        return http.post(f"{stack.url}/v1/fill-mask", json=body, headers={"Prefer": f"wait={wait_s}"}, timeout=60)

    sent = 2 * processes + 2
    with ThreadPoolExecutor(sent) as pool:
        posted = [pool.submit(post, greedy, 20) for _ in range(sent)]
        # No worker runs the jobs: a held request answers after 20 s, so one answered before is one refused — at
        # least 2 of them, whatever process each POST reached.
        wait_for(lambda: sum(f.done() for f in posted) >= 2, 15, "the POSTs beyond the key's share to be answered")
        refused = [f.result() for f in posted if f.done()]
        assert all(r.status_code == 202 and r.json()["status"] == "queued" for r in refused)
        assert all("Preference-Applied" not in r.headers for r in refused)
        assert post(other, 1).headers["Preference-Applied"] == "wait=1"  # another key still may wait
        assert requests.get(f"{stack.url}/healthz", timeout=5).status_code == 200
        answers = [f.result() for f in posted]
    held = [r for r in answers if "Preference-Applied" in r.headers]
    assert all(r.headers["Preference-Applied"] == "wait=20" for r in held)
    assert 2 <= len(held) <= 2 * processes  # at least one process held its share; none held more


#: Every route that reads an id from its path or query, with a NUL in it: PostgreSQL's driver refuses a NUL in a
#: text parameter, which surfaced as a 500 (fuzzing found one in `after`).
NUL_ID = "x%00y"
NUL_CURSOR = "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgIlx1MDAwMCJd"  # ["2026-01-01T00:00:00", "\u0000"] in base64


@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/v1/jobs/{NUL_ID}"), ("POST", f"/v1/jobs/{NUL_ID}/cancel"), ("GET", f"/v1/jobs/{NUL_ID}/deliveries"),
    ("POST", f"/v1/jobs/{NUL_ID}/deliveries/{NUL_ID}/retry"), ("GET", f"/v1/files/{NUL_ID}"),
    ("GET", f"/v1/files/{NUL_ID}/content"), ("GET", f"/v1/batches/{NUL_ID}"), ("POST", f"/v1/batches/{NUL_ID}/cancel"),
    ("GET", f"/v1/evaluations/{NUL_ID}"), ("POST", f"/v1/evaluations/{NUL_ID}/cancel"),
    ("GET", f"/v1/jobs?cursor={NUL_CURSOR}"), ("GET", f"/v1/batches?after={NUL_ID}"),
])
def test_an_id_with_a_nul_is_a_4xx_not_a_500(stack: Stack, method: str, path: str) -> None:
    answer = stack.client(stack.new_key()).request(method, f"{stack.url}{path}")
    assert answer.status_code in (404, 422), answer.text[:300]
    assert error_of(answer)["code"] in ("not_found", "invalid_request")
