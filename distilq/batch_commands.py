"""`distilq batch submit|get|list|cancel`: batches over the REST API, from any machine that can reach it.

`DISTILQ_URL` (default http://127.0.0.1:8000) names the API and `DISTILQ_API_KEY` the key. The file is uploaded as
it is read (never whole in memory); `--wait` shows the batch's progress (rich) and `--output` writes its output file
as it downloads. What a command prints on stdout is JSON, for scripts; progress and messages go to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import urllib3

DEFAULT_URL = "http://127.0.0.1:8000"
ENDED = ("completed", "failed", "cancelled")
POLL_S = 1.0


class CommandError(Exception):
    """What to tell the user on stderr; the command exits 1."""


class _Api:
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

    def upload(self, path: Path) -> Any:
        """POST /v1/files with the file, streamed from disk."""
        body = _Multipart(path)
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
    """A multipart/form-data body (`purpose=batch` and the file) read from the file as it is sent."""

    def __init__(self, path: Path) -> None:
        self.boundary = uuid.uuid4().hex
        head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
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


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _wait(api: _Api, batch: dict[str, Any]) -> dict[str, Any]:
    """Polls the batch until it ends, with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        counts = batch["request_counts"]
        bar = progress.add_task(batch["status"], total=counts["total"] or None)
        while batch["status"] not in ENDED:
            time.sleep(POLL_S)
            batch = api.call("GET", f"/v1/batches/{batch['id']}")
            counts = batch["request_counts"]
            progress.update(bar, completed=counts["completed"] + counts["failed"], description=batch["status"])
    return batch


def cmd_submit(args: argparse.Namespace) -> int:
    api, path = _Api(), Path(args.file)
    if not path.is_file():
        raise CommandError(f"no file {path}")
    uploaded = api.upload(path)
    request: dict[str, Any] = {"input_file_id": uploaded["id"]}
    if args.endpoint:
        request["endpoint"] = args.endpoint
    batch = api.call("POST", "/v1/batches", request)
    print(f"distilq: batch {batch['id']}: {batch['status']} ({batch['request_counts']['total']} lines)",
          file=sys.stderr)
    if batch["status"] == "failed":
        _print(batch)
        return 1
    if args.wait or args.output:
        batch = _wait(api, batch)
        if args.output and batch.get("output_file_id"):
            size = api.download(f"/v1/files/{batch['output_file_id']}/content", Path(args.output))
            print(f"distilq: wrote {args.output} ({size} bytes)", file=sys.stderr)
    _print(batch)
    return 0 if batch["status"] != "failed" else 1


def cmd_get(args: argparse.Namespace) -> int:
    _print(_Api().call("GET", f"/v1/batches/{args.batch_id}"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    _print(_Api().call("GET", f"/v1/batches?limit={args.limit}")["data"])
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    _print(_Api().call("POST", f"/v1/batches/{args.batch_id}/cancel"))
    return 0


def add_parser(sub: Any) -> None:
    batch = sub.add_parser("batch", help="batches: a file of requests in, an output file out (over the REST API; "
                                         "DISTILQ_URL, DISTILQ_API_KEY)")
    batch_sub = batch.add_subparsers(dest="batch_command", required=True)
    submit = batch_sub.add_parser("submit", help="upload a JSONL file of requests and start a batch")
    submit.add_argument("file")
    submit.add_argument("--endpoint", choices=("/v1/fill-mask", "/v1/question-answering"),
                        help="the route every line must use")
    submit.add_argument("--wait", action="store_true", help="show progress until the batch ends")
    submit.add_argument("--output", help="write the output file here once the batch ends (implies --wait)")
    submit.set_defaults(func=cmd_submit)
    get = batch_sub.add_parser("get", help="one batch")
    get.add_argument("batch_id")
    get.set_defaults(func=cmd_get)
    listing = batch_sub.add_parser("list", help="your batches, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_list)
    cancel = batch_sub.add_parser("cancel", help="cancel a batch: what has not started does not run")
    cancel.add_argument("batch_id")
    cancel.set_defaults(func=cmd_cancel)


def run(args: argparse.Namespace) -> int:
    """Runs a `batch` command; a CommandError is said on stderr, exit status 1."""
    try:
        return int(args.func(args))
    except CommandError as error:
        print(f"distilq: {error}", file=sys.stderr)
        return 1
