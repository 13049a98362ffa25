"""Modes of files. (e): the same one-input requests as one batch file — uploaded, checked, run as a batch's lines and
written to the output file — on a stack doing nothing else; then the same batch again with interactive jobs beside
it, whose latency is compared with theirs on the idle stack. (f): the same masked texts as one fill-mask evaluation
(each labelled), uploaded, checked, run, scored and written, on the same stack after (e)'s first batch, so that
its cost stands beside the batch's."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import urllib3

from api.check_pool import processes_for
from bench.e2e import (
    batch_steps,
    cpu_seconds,
    descendants,
    logged_batches,
    peak_rss_mb,
    running_stack,
    stack_cpu_seconds,
)
from bench.measure import Result
from core.settings import Settings

#: Interactive clients measured beside the batch, each holding one one-input job at a time (`Prefer: wait`).
INTERACTIVE_CLIENTS = 4
IDLE_SAMPLES = 100


def _p95(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 2 else float("nan")


def _ms(latencies: list[float]) -> str:
    if not latencies:
        return "no jobs"
    return f"p50/p95 {statistics.median(latencies) * 1000:.0f}/{_p95(latencies) * 1000:.0f} ms ({len(latencies)} jobs)"


class _Client:
    """The bench's HTTP client of one stack."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.http = urllib3.PoolManager(maxsize=INTERACTIVE_CLIENTS + 2, timeout=urllib3.Timeout(total=300),
                                        retries=False)
        self.auth = {"Authorization": f"Bearer {key}"}

    def evaluation(self, lines: bytes) -> tuple[dict[str, Any], float]:
        """Uploads `lines` as an evaluation file, evaluates fill-mask on it and waits for its end: the evaluation
        and the seconds it took from the upload on."""
        started = time.perf_counter()
        file = self.call("POST", "/v1/files", fields={"purpose": "evaluation", "file": ("eval.jsonl", lines)})
        evaluation = self.call("POST", "/v1/evaluations", json={"task": "fill-mask", "input_file_id": file["id"]})
        while evaluation["completed_at"] is None:
            time.sleep(0.05)
            evaluation = self.call("GET", f"/v1/evaluations/{evaluation['id']}")
        if evaluation["status"] != "succeeded":
            raise RuntimeError(f"the evaluation ended {evaluation['status']}: {evaluation['error']}")
        return evaluation, time.perf_counter() - started

    def call(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.url}{path}", headers={**self.auth, **(headers or {})}, **kwargs)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {response.data[:500]!r}")
        return response.json() if response.headers.get("Content-Type") == "application/json" else response.data

    def interactive(self, texts: list[str], until: threading.Event | None, count: int) -> list[float]:
        """Latencies of INTERACTIVE_CLIENTS clients, each holding one one-input job at a time: `count` jobs each, or
        until `until` is set (the clients run in threads; this returns once they end)."""
        latencies: list[float] = []
        errors: list[BaseException] = []

        def client() -> None:
            done = 0
            try:
                while (until is None and done < count) or (until is not None and not until.is_set()):
                    t0 = time.perf_counter()
                    job = self.call("POST", "/v1/fill-mask", headers={"Prefer": "wait=60"},
                                    json={"inputs": {"input_string": [texts[done % len(texts)]]}})
                    if job["status"] != "succeeded":
                        raise RuntimeError(f"an interactive job ended {job['status']}")
                    latencies.append(time.perf_counter() - t0)
                    done += 1
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(INTERACTIVE_CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return latencies

    def batch(self, lines: bytes, total: int, texts: list[str] | None) -> tuple[dict[str, Any], dict[str, float],
                                                                                list[float]]:
        """Uploads `lines`, creates the batch and waits for it to end (with interactive clients beside it when
        `texts` are given): the batch, its steps' seconds, and the interactive jobs' latencies."""
        started = time.perf_counter()
        file = self.call("POST", "/v1/files", fields={"purpose": "batch", "file": ("bench.jsonl", lines)})
        uploaded = time.perf_counter()
        batch = self.call("POST", "/v1/batches", json={"input_file_id": file["id"]})
        created = time.perf_counter()
        ended = threading.Event()
        beside: list[float] = []
        clients = (threading.Thread(target=lambda: beside.extend(self.interactive(texts, ended, 0)), daemon=True)
                   if texts is not None else None)
        if clients is not None:
            clients.start()
        lines_done: float | None = None
        while batch["status"] not in ("completed", "failed", "cancelled"):
            time.sleep(0.05)
            batch = self.call("GET", f"/v1/batches/{batch['id']}")
            counts = batch["request_counts"]
            if lines_done is None and counts["completed"] + counts["failed"] == counts["total"]:
                lines_done = time.perf_counter()
        finished = time.perf_counter()
        ended.set()
        if clients is not None:
            clients.join()
        if batch["status"] != "completed" or batch["request_counts"]["completed"] != total:
            raise RuntimeError(f"the batch ended {batch['status']}: {batch['request_counts']}")
        steps = {"upload": uploaded - started, "check": created - uploaded, "run": finished - created,
                 "wall": finished - started, "end": finished - (lines_done or finished)}
        return batch, steps, beside


def run_batch_file(models: dict[str, Path], texts: list[str], env: dict[str, str],
                   evaluate: bool = False, workers: int = 1) -> list[Result]:
    """(e): one fill-mask line per text, top_k 5; and with `evaluate`, (f): the texts as an evaluation. `workers`
    inference workers run it."""
    lines = "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/fill-mask",
                                "body": {"inputs": {"input_string": [text]}, "parameters": {"top_k": 5}}}) + "\n"
                    for i, text in enumerate(texts)).encode()
    # beat at its default interval: a batch's end comes from the ask of the worker that wrote its last line.
    with running_stack(models, "fill-mask", env, INTERACTIVE_CLIENTS + 8, beat=True,
                       workers=workers) as (url, key, pids, logs):
        client = _Client(url, key)
        workers_of = [name for name in pids if name.startswith("worker")]
        cpu_before = stack_cpu_seconds(pids, env)
        own_before = {name: cpu_seconds(pids[name], with_children=False) for name in workers_of}
        before = len(logged_batches(logs))
        batch, steps, _ = client.batch(lines, len(texts), None)
        cpu = {name: seconds - cpu_before[name] for name, seconds in stack_cpu_seconds(pids, env).items()}
        # Each worker's own process apart from its device process (when it has one): which of the two bounds it.
        own = {name: cpu_seconds(pids[name], with_children=False) - own_before[name] for name in workers_of}
        alone = len(logged_batches(logs))
        output = client.call("GET", f"/v1/files/{batch['output_file_id']}/content")
        evaluated = None
        if evaluate:
            cpu_before = stack_cpu_seconds(pids, env)
            examples = "".join(json.dumps({"text": text, "label": "the"}) + "\n" for text in texts).encode()
            evaluation, seconds = client.evaluation(examples)
            evaluation_cpu = {name: seconds - cpu_before[name]
                              for name, seconds in stack_cpu_seconds(pids, env).items()}
            evaluated = Result("f", f"distilq fill-mask evaluation of the same {len(texts)} texts (labelled; "
                                    "upload, check, run, score, output file)", len(texts), 0, 0, seconds,
                               [seconds] * len(texts))
            evaluated.notes = ["CPU seconds during the evaluation: " + ", ".join(
                f"{name} {value:.1f}" for name, value in evaluation_cpu.items()) + f"; metrics {evaluation['metrics']}"]
        # Interactive jobs' idle latency after the batch alone, not before it: a worker that ran one in the last
        # seconds keeps a batch's passes short for those seconds (interactive first), which "alone" must not see.
        idle = client.interactive(texts, None, IDLE_SAMPLES // INTERACTIVE_CLIENTS)
        _, beside_steps, busy = client.batch(lines, len(texts), texts)
        passes = f"alone: {batch_steps(logs, before, alone)}; beside interactive jobs: {batch_steps(logs, alone)}"
        # gunicorn's worker process is the API's child: the largest of the process tree's peaks.
        peaks = {name: max(peak_rss_mb(member) for member in descendants(pid)) for name, pid in pids.items()}
    # What the API's processes ran with (DISTILQ_CHECK_PROCESSES of this environment, or the default on this host).
    checkers = processes_for(Settings())
    result = Result("e", f"distilq batch file of {len(texts)} one-input lines (upload, check, run, output file)",
                    len(texts), 0, 0, steps["wall"], [steps["wall"]] * len(texts))
    result.notes = [
        f"upload {steps['upload']:.2f} s, check and queue {steps['check']:.2f} s ({checkers} check processes an API "
        f"process), run and write the output file "
        f"{steps['run']:.2f} s ({len(output) / 1e6:.1f} MB of output), of which {steps['end']:.2f} s from the last "
        "line written to the batch completed (beat at its default interval, asked by the worker)",
        "CPU seconds during the batch: " + ", ".join(
            f"{name} {seconds:.1f}" + (f" (its own process {own[name]:.1f}, its device process "
                                       f"{seconds - own[name]:.1f})" if seconds - own.get(name, seconds) > 0.05 else "")
            for name, seconds in cpu.items()),
        f"interactive one-input jobs, {INTERACTIVE_CLIENTS} clients holding `Prefer: wait`: idle {_ms(idle)}; "
        f"beside the same batch again {_ms(busy)}: p95 {_p95(busy) / _p95(idle):.2f}x idle (that batch took "
        f"{beside_steps['wall']:.2f} s)",
        passes,
        f"peak resident memory (VmHWM) over both batches ({len(lines) / 1e6:.1f} MB of input): "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in peaks.items()),
    ]
    return [result, *([evaluated] if evaluated else [])]
