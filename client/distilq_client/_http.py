"""The HTTP transport: JSON in and out, the key on every request, error answers raised as DistilqError, and 429/503
retried after their Retry-After (a submit carries an Idempotency-Key, so its retry never makes a second job)."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3

from distilq_client.errors import DistilqError

#: Statuses worth the same request again later: rate limited, or the service is briefly unable.
RETRIED_STATUSES = (429, 503)


class Transport:
    def __init__(self, url: str, key: str, timeout_s: float, max_retries: int, max_retry_wait_s: float) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}"}
        self.timeout = urllib3.Timeout(connect=min(timeout_s, 10), read=timeout_s)
        self.max_retries, self.max_retry_wait_s = max_retries, max_retry_wait_s
        self.http = urllib3.PoolManager(retries=False)

    def request(self, method: str, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None,
                timeout_s: float | None = None) -> Any:
        """The JSON answer; a DistilqError for a 4xx/5xx (after the retries a 429 or 503 gets)."""
        body = None
        if json_body is not None:
            body, headers = json.dumps(json_body).encode(), {**(headers or {}), "Content-Type": "application/json"}
        response = self._send(method, path, lambda: body, headers, timeout_s, preload=True)
        return response.json() if response.data else None

    def upload(self, path: Path, purpose: str) -> Any:
        """POST /v1/files with the file, streamed from disk as it is sent (never whole in memory)."""
        boundary = uuid.uuid4().hex
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
                   "Content-Length": str(_Multipart(path, purpose, boundary).length)}
        response = self._send("POST", "/v1/files", lambda: _Multipart(path, purpose, boundary), headers, None,
                              preload=True)
        return response.json()

    def stream(self, path: str) -> Iterator[bytes]:
        """The bytes of a GET, a megabyte at a time."""
        response = self._send("GET", path, lambda: None, None, None, preload=False)
        try:
            yield from response.stream(1 << 20)
        finally:
            response.release_conn()

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str] | None, timeout_s: float | None,
              preload: bool) -> urllib3.BaseHTTPResponse:
        """`body()` makes the body afresh for each attempt (a streamed one is read once)."""
        all_headers = {**self.headers, **(headers or {})}
        timeout = self.timeout if timeout_s is None else urllib3.Timeout(connect=10, read=timeout_s)
        for attempt in range(self.max_retries + 1):
            try:
                response = self.http.request(method, self.url + path, body=body(), headers=all_headers,
                                             timeout=timeout, preload_content=preload)
            except urllib3.exceptions.HTTPError as error:
                raise DistilqError(0, "unreachable", f"cannot reach {self.url}: {error}") from None
            if response.status < 400:
                return response
            if response.status in RETRIED_STATUSES and attempt < self.max_retries:
                time.sleep(self._retry_after(response, attempt))
                continue
            raise _error(response)
        raise AssertionError("unreachable")

    def _retry_after(self, response: urllib3.BaseHTTPResponse, attempt: int) -> float:
        try:
            wait = float(response.headers.get("Retry-After", ""))
        except ValueError:
            wait = 0.5 * 2 ** attempt
        return min(max(wait, 0.0), self.max_retry_wait_s)


def _error(response: urllib3.BaseHTTPResponse) -> DistilqError:
    data = response.data if response.data is not None else response.read()
    try:
        error = json.loads(data)["error"]
        return DistilqError(response.status, str(error["code"]), str(error["message"]), error.get("details"))
    except (ValueError, KeyError, TypeError):
        return DistilqError(response.status, "http_error", data[:300].decode("utf-8", "replace"))


class _Multipart(io.RawIOBase):
    """A multipart/form-data body (`purpose` and the file) read from the file as it is sent."""

    def __init__(self, path: Path, purpose: str, boundary: str) -> None:
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{path.name}\"\r\nContent-Type: application/jsonl\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        self.length = len(head) + path.stat().st_size + len(tail)
        self.parts: list[Any] = [io.BytesIO(head), path.open("rb"), io.BytesIO(tail)]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.parts:
            count = self.parts[0].readinto(buffer)
            if count:
                return int(count)
            self.parts.pop(0).close()
        return 0
