"""`Client`: distilq's REST API from Python — jobs (submit, get, wait, cancel, list), batches, evaluations."""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distilq_client._http import Transport
from distilq_client.errors import DistilqError
from distilq_client.results import Batch, Evaluation, FileObject, Job

#: Polling: the first pause, its growth, its ceiling (seconds).
POLL_START_S, POLL_GROWTH, POLL_MAX_S = 0.1, 1.5, 2.0


class Client:
    """`Client(url, key)`. `timeout_s` bounds each request; 429 and 503 answers are retried `max_retries` times
    after their Retry-After (at most `max_retry_wait_s` each)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", key: str = "", *, timeout_s: float = 70.0,
                 max_retries: int = 5, max_retry_wait_s: float = 30.0) -> None:
        if not key:
            raise ValueError("key: an API key of the service (`distilq keys create --name …` prints one)")
        self._http = Transport(url, key, timeout_s, max_retries, max_retry_wait_s)

    # --- jobs ----------------------------------------------------------------------------------------------------

    def fill_mask(self, texts: list[str], *, top_k: int | None = None, targets: list[str] | None = None,
                  wait_s: int | None = None, webhook: str | None = None, metadata: dict[str, Any] | None = None,
                  idempotency_key: str | None = None) -> Job:
        """Submits a fill-mask job (one input per text, each with a mask token). `wait_s`: hold the request until
        the job ends or this many seconds (≤ 60) pass."""
        parameters = {k: v for k, v in (("top_k", top_k), ("targets", targets)) if v is not None}
        return self._submit("/v1/fill-mask", {"inputs": {"input_string": list(texts)}, "parameters": parameters},
                            wait_s, webhook, metadata, idempotency_key)

    def question_answering(self, questions: list[str], contexts: list[str], *, top_k: int | None = None,
                           wait_s: int | None = None, webhook: str | None = None,
                           metadata: dict[str, Any] | None = None, idempotency_key: str | None = None,
                           **parameters: Any) -> Job:
        """Submits a QA job: one answer per (question, context) pair. `parameters`: the pipeline's (`doc_stride`,
        `max_answer_len`, `handle_impossible_answer`, …)."""
        if top_k is not None:
            parameters["top_k"] = top_k
        return self._submit("/v1/question-answering",
                            {"inputs": {"question": list(questions), "context": list(contexts)},
                             "parameters": parameters}, wait_s, webhook, metadata, idempotency_key)

    def _submit(self, route: str, body: dict[str, Any], wait_s: int | None, webhook: str | None,
                metadata: dict[str, Any] | None, idempotency_key: str | None) -> Job:
        if webhook is not None:
            body["webhook"] = webhook
        if metadata is not None:
            body["metadata"] = metadata
        # One key per submit, kept across its retries: the service answers a retry with the job it already made.
        headers = {"Idempotency-Key": idempotency_key or f"client-{uuid.uuid4()}"}
        if wait_s is not None:
            headers["Prefer"] = f"wait={wait_s}"
        return Job.from_json(self._http.request("POST", route, json_body=body, headers=headers,
                                                timeout_s=(wait_s or 0) + 30))

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._http.request("GET", f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """The job once it has ended, polling with backoff; DistilqError `timeout` if it has not within `timeout`
        seconds."""
        return self._poll(lambda: self.get(job_id), lambda job: job.ended, timeout, f"job {job_id}")

    def cancel(self, job_id: str) -> Job:
        return Job.from_json(self._http.request("POST", f"/v1/jobs/{job_id}/cancel"))

    def list(self, *, status: str | None = None, task: str | None = None, page_size: int = 100,
             include_output: bool = False) -> Iterator[Job]:
        """Every job of the key, newest first, page after page."""
        cursor: str | None = None
        while True:
            query = {"status": status, "task": task, "limit": page_size, "cursor": cursor,
                     "include": "output" if include_output else None}
            page = self._http.request("GET", "/v1/jobs?" + "&".join(f"{k}={v}" for k, v in query.items()
                                                                    if v is not None))
            yield from (Job.from_json(job) for job in page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # --- files, batches, evaluations -----------------------------------------------------------------------------

    def upload(self, path: str | Path, purpose: str = "batch") -> FileObject:
        """Uploads a JSONL file (`purpose`: `batch` or `evaluation`), streamed from disk."""
        source = Path(path)
        if not source.is_file():
            raise DistilqError(0, "no_file", f"no file {source}")
        return FileObject.from_json(self._http.upload(source, purpose))

    def download(self, file_id: str, path: str | Path) -> int:
        """Writes a file's content (e.g. a batch's output) to `path`, a megabyte at a time; the bytes written."""
        chunks = self.content(file_id)
        first = next(chunks, b"")  # an error answer (404) raises before `path` is made
        with Path(path).open("wb") as sink:
            sink.write(first)
            written = len(first)
            for chunk in chunks:
                sink.write(chunk)
                written += len(chunk)
        return written

    def content(self, file_id: str) -> Iterator[bytes]:
        """A file's content as it arrives, a megabyte at a time (never whole in memory)."""
        return self._http.stream(f"/v1/files/{file_id}/content")

    def list_files(self, *, purpose: str | None = None, page_size: int = 100) -> Iterator[FileObject]:
        """Every file of the key (of `purpose`: batch, evaluation, batch_output, evaluation_output), newest first,
        page after page."""
        return (FileObject.from_json(file) for file in self._newest("/v1/files", None, page_size, purpose=purpose))

    def _newest(self, route: str, limit: int | None, page_size: int, **query: str | None) -> Iterator[dict[str, Any]]:
        """The items of one of the OpenAI-shaped list routes (files, batches, evaluations), newest first, page
        after page of at most `page_size` (the routes take 100 at most) — `limit` of them at most (None: all)."""
        after: str | None = None
        seen = 0
        while limit is None or seen < limit:
            size = page_size if limit is None else min(page_size, limit - seen)
            params = {**query, "limit": size, "after": after}
            page = self._http.request("GET", route + "?" + "&".join(f"{k}={v}" for k, v in params.items()
                                                                    if v is not None))
            yield from page["data"]
            seen += len(page["data"])
            after = page["last_id"]
            if not page["has_more"]:
                return

    def delete_file(self, file_id: str) -> None:
        """Deletes a file (an upload, or a batch's output once downloaded): its bytes go at once."""
        self._http.request("DELETE", f"/v1/files/{file_id}")

    def create_batch(self, input_file_id: str, *, endpoint: str | None = None, webhook: str | None = None,
                     metadata: dict[str, str] | None = None) -> Batch:
        body = {k: v for k, v in (("input_file_id", input_file_id), ("endpoint", endpoint), ("webhook", webhook),
                                  ("metadata", metadata)) if v is not None}
        return Batch.from_json(self._http.request("POST", "/v1/batches", json_body=body))

    def get_batch(self, batch_id: str) -> Batch:
        return Batch.from_json(self._http.request("GET", f"/v1/batches/{batch_id}"))

    def wait_batch(self, batch_id: str, timeout: float = 3600.0) -> Batch:
        return self._poll(lambda: self.get_batch(batch_id), lambda batch: batch.ended, timeout, f"batch {batch_id}")

    def cancel_batch(self, batch_id: str) -> Batch:
        return Batch.from_json(self._http.request("POST", f"/v1/batches/{batch_id}/cancel"))

    def list_batches(self, limit: int = 20, *, page_size: int = 100) -> builtins.list[Batch]:
        """The key's `limit` newest batches (read `page_size` a request)."""
        return [Batch.from_json(batch) for batch in self._newest("/v1/batches", limit, page_size)]

    def create_evaluation(self, task: str, input_file_id: str, *, metrics: builtins.list[str] | None = None,
                          config: dict[str, Any] | None = None, webhook: str | None = None,
                          metadata: dict[str, Any] | None = None) -> Evaluation:
        body = {k: v for k, v in (("task", task), ("input_file_id", input_file_id), ("metrics", metrics),
                                  ("config", config), ("webhook", webhook), ("metadata", metadata)) if v is not None}
        return Evaluation.from_json(self._http.request("POST", "/v1/evaluations", json_body=body))

    def get_evaluation(self, evaluation_id: str) -> Evaluation:
        return Evaluation.from_json(self._http.request("GET", f"/v1/evaluations/{evaluation_id}"))

    def wait_evaluation(self, evaluation_id: str, timeout: float = 3600.0) -> Evaluation:
        return self._poll(lambda: self.get_evaluation(evaluation_id), lambda e: e.ended, timeout,
                          f"evaluation {evaluation_id}")

    def cancel_evaluation(self, evaluation_id: str) -> Evaluation:
        return Evaluation.from_json(self._http.request("POST", f"/v1/evaluations/{evaluation_id}/cancel"))

    def list_evaluations(self, limit: int = 20, *, page_size: int = 100) -> builtins.list[Evaluation]:
        """The key's `limit` newest evaluations (read `page_size` a request)."""
        return [Evaluation.from_json(item) for item in self._newest("/v1/evaluations", limit, page_size)]

    def webhook_secret(self) -> str:
        """The key's `whsec_…` secret, for `verify_webhook`."""
        return str(self._http.request("GET", "/v1/webhooks/secret")["secret"])

    @staticmethod
    def _poll(read: Any, ended: Any, timeout: float, what: str) -> Any:
        deadline, pause = time.monotonic() + timeout, POLL_START_S
        while True:
            current = read()
            if ended(current):
                return current
            if time.monotonic() + pause > deadline:
                raise DistilqError(0, "timeout", f"{what} had not ended after {timeout} s (status {current.status})")
            time.sleep(pause)
            pause = min(pause * POLL_GROWTH, POLL_MAX_S)
