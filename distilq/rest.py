"""The commands' client of the REST API (`distilq batch`, `distilq eval`), from any machine that can reach it:
`DISTILQ_URL` (default http://127.0.0.1:8000) names the API and `DISTILQ_API_KEY` the key. Files are uploaded as
they are read and downloaded as they come (never whole in memory). What a command prints on stdout is JSON, for
scripts; progress and messages go to stderr."""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3

DEFAULT_URL = "http://127.0.0.1:8000"
#: Seconds between two polls of something running.
POLL_S = 1.0


class CommandError(Exception):
    """What to tell the user on stderr; the command exits 1."""


class Api:
    def __init__(self) -> None:
        key = os.environ.get("DISTILQ_API_KEY")
        if not key:
            raise CommandError("set DISTILQ_API_KEY to your API key (`distilq keys create --name …` makes one)")
        self.url = os.environ.get("DISTILQ_URL", DEFAULT_URL).rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0.5, allowed_methods=["GET"]))

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of a JSON request (`body`: JSON, or None for none)."""
        if body is None:
            return self._send(method, path, None, {})
        return self._send(method, path, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def upload(self, path: Path, purpose: str) -> Any:
        """POST /v1/files with the file, streamed from disk."""
        if not path.is_file():
            raise CommandError(f"no file {path}")
        body = _Multipart(path, purpose)
        return self._send("POST", "/v1/files", body, {"Content-Type": f"multipart/form-data; boundary={body.boundary}",
                                                      "Content-Length": str(body.length)})

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        try:
            response = self.http.request(method, self.url + path, body=body, headers={**self.headers, **headers})
        except urllib3.exceptions.HTTPError as error:
            raise CommandError(f"cannot reach {self.url}: {error}") from None
        if response.status >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.data[:200].decode("utf-8", "replace")
            raise CommandError(f"{method} {path}: {response.status}: {message}")
        return response.json()

    def download(self, path: str, out: Path) -> int:
        response = self.http.request("GET", self.url + path, headers=self.headers, preload_content=False)
        if response.status >= 400:
            raise CommandError(f"GET {path}: {response.status}")
        written = 0
        with out.open("wb") as sink:
            for chunk in response.stream(1 << 20):
                sink.write(chunk)
                written += len(chunk)
        response.release_conn()
        return written


class _Multipart(io.RawIOBase):
    """A multipart/form-data body (`purpose` and the file) read from the file as it is sent."""

    def __init__(self, path: Path, purpose: str) -> None:
        self.boundary = uuid.uuid4().hex
        head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n"
                f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{path.name}\"\r\nContent-Type: application/jsonl\r\n\r\n").encode()
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.length = len(head) + path.stat().st_size + len(tail)
        self.parts = [io.BytesIO(head), path.open("rb"), io.BytesIO(tail)]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.parts:
            count = self.parts[0].readinto(buffer)
            if count:
                return count
            self.parts.pop(0).close()
        return 0


def follow(api: Api, path: str, current: dict[str, Any], ended: Callable[[dict[str, Any]], bool],
           progress_of: Callable[[dict[str, Any]], tuple[int, int]]) -> dict[str, Any]:
    """Polls GET `path` every POLL_S until `ended`, with a progress bar on stderr (`progress_of`: done, total);
    the last answer."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        done, total = progress_of(current)
        bar = progress.add_task(current["status"], total=total or None, completed=done)
        while not ended(current):
            time.sleep(POLL_S)
            current = api.call("GET", path)
            done, total = progress_of(current)
            progress.update(bar, completed=done, description=current["status"])
    return current


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def run(command: Callable[[Any], int], args: Any) -> int:
    """Runs a command; a CommandError is said on stderr, exit status 1."""
    try:
        return int(command(args))
    except CommandError as error:
        print(f"distilq: {error}", file=sys.stderr)
        return 1
