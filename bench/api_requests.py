"""An API process's CPU a request, by kind of request, under gunicorn as `distilq api` runs it: an unauthenticated
`GET /healthz` (gunicorn, Flask, the access line: every request's floor), a poll of a finished job (`GET
/v1/jobs/{id}`: the key's check and rate limit, one read), a one-input fill-mask submission answered at once (202)
and one held with `Prefer: wait` until its job ends — so that what a job's API cost is made of can be read off: the
floor, the key, the route's own work. Concurrent clients in this process, the tiny test checkpoint, a fresh
`distilq` stack (SQLite, embedded Redis, one worker); the submissions' jobs run out before the next kind is measured.

    python -m bench.api_requests [--requests 3000] [--concurrency 32] [--api-workers 1] \
        [--kinds healthz,poll,submit,wait]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import urllib3

from bench.e2e import cpu_seconds, running_stack
from bench.workload import make_workload

#: Requests of each kind made before the clock starts (connections opened, the model loaded, statements compiled).
WARM_UP = 200
#: kind → (method, path, body?, held?) of its requests; `{job}`: a job that has finished.
KINDS: dict[str, tuple[str, str, bool, bool]] = {
    "healthz": ("GET", "/healthz", False, False),
    "poll": ("GET", "/v1/jobs/{job}", False, False),
    "submit": ("POST", "/v1/fill-mask", True, False),
    "wait": ("POST", "/v1/fill-mask", True, True),
}
#: What the stack is set to so that the bench's own requests are never refused.
UNLIMITED = {"DISTILQ_RATE_LIMIT": "1000000/minute", "DISTILQ_MAX_JOBS_IN_FLIGHT": "1000000",
             "DISTILQ_MAX_WAITING_PER_KEY": "1000000"}


def _requests(url: str, key: str, kind: str, concurrency: int, job: str) -> Callable[[list[str]], None]:
    """A function that makes one request of `kind` for each text it is given, `concurrency` at a time; raises on
    any answer but a success."""
    method, path, with_body, held = KINDS[kind]
    path = path.format(job=job)
    headers = {"Authorization": f"Bearer {key}", **({"Prefer": "wait=60"} if held else {})}
    http = urllib3.PoolManager(maxsize=concurrency, retries=False, timeout=urllib3.Timeout(total=120),
                               headers=headers)

    def one(text: str) -> None:
        body: Any = {"inputs": {"input_string": [text]}} if with_body else None
        answer = http.request(method, f"{url}{path}", json=body)
        if answer.status >= 300 or (held and answer.json().get("status") != "succeeded"):
            raise RuntimeError(f"{kind}: {answer.status} {answer.data[:300]!r}")

    def run(texts: list[str]) -> None:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, texts))

    return run


def _drained(url: str, key: str) -> None:
    """Returns once none of the key's jobs is queued or running (a submission's job runs after its answer)."""
    http = urllib3.PoolManager(headers={"Authorization": f"Bearer {key}"})
    while any(http.request("GET", f"{url}/v1/jobs?status={status}&limit=1").json()["data"]
              for status in ("queued", "running")):
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests of each kind measured")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--api-workers", type=int, default=1, help="API processes")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--models", type=Path, default=Path(".distilq/bench-models"))
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r}")
    from tests.tiny_model import build as build_tiny

    models = build_tiny(args.models / "tiny")
    texts = iter(make_workload(1 + len(kinds) * (WARM_UP + args.requests), 0).fill_mask)
    env = {**UNLIMITED, "DISTILQ_TORCH_THREADS": "1"}
    # A thread of the API per client and some to spare, as `bench.run`'s (d) gives it.
    threads = -(-args.concurrency // args.api_workers) + 8
    with running_stack(models, "fill-mask", env, threads, args.api_workers) as (url, key, pids, _):
        print(f"{args.api_workers} API process(es) of {threads} threads, {args.concurrency} clients, "
              f"{args.requests} requests of each kind after {WARM_UP}", flush=True)
        # The job the polls read: finished, as a client's last poll finds it.
        finished = urllib3.request("POST", f"{url}/v1/fill-mask", json={"inputs": {"input_string": [next(texts)]}},
                                   headers={"Authorization": f"Bearer {key}", "Prefer": "wait=60"}).json()
        if finished.get("status") != "succeeded":
            raise RuntimeError(f"the first job did not succeed: {finished}")
        job = finished["id"]
        for kind in kinds:
            run = _requests(url, key, kind, args.concurrency, job)
            run([next(texts) for _ in range(WARM_UP)])
            _drained(url, key)
            batch = [next(texts) for _ in range(args.requests)]
            before, started = {name: cpu_seconds(pid) for name, pid in pids.items()}, time.perf_counter()
            run(batch)
            wall = time.perf_counter() - started
            cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            _, _, submits, held = KINDS[kind]
            if submits and not held:
                # The jobs submitted and not held run after their answers: the worker's CPU counted until they
                # have (the API's is not: the look for them is the bench's).
                _drained(url, key)
                cpu.update({name: cpu_seconds(pid) - before[name] for name, pid in pids.items()
                            if name.startswith("worker")})
            print(f"{kind}: {args.requests / wall:.1f} requests/s; CPU ms a request: "
                  + ", ".join(f"{name} {seconds / args.requests * 1000:.2f}" for name, seconds in cpu.items()),
                  flush=True)


if __name__ == "__main__":
    main()
