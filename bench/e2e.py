"""Mode (d): distilq end to end — gunicorn API, Redis, the database and one worker (or `--workers` of them), as
separate processes — with concurrent clients each submitting one-input jobs and holding them with `Prefer: wait`."""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import urllib3
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.measure import Result
from distilq.stack import LocalStack

#: API processes of the stack the bench starts: `distilq api`'s default (`Settings.default_api_processes`).
API_PROCESSES = 2


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


#: Reads of a process tree's CPU until one sees no child reaped meanwhile (`cpu_seconds`); past them, the last read
#: is taken — a server reaping children faster than its tree can be read would otherwise keep the reader in a loop.
CONSISTENT_READ_TRIES = 100
#: /proc/<pid>/stat's columns (counted after the command's name): a process's own user and system time, and its
#: reaped children's.
_OWN, _REAPED = (11, 12), (13, 14)


def cpu_seconds(pid: int, with_children: bool = True, reaped: bool = False) -> float:
    """User + system CPU time of a process and (unless told not to) everything it started and is still running, so
    far; with `reaped`, also that of its children which have ended and which it has waited for (cutime, cstime).
    0 for a process gone."""
    columns = _OWN + _REAPED if reaped else _OWN

    def read() -> int:
        return sum(_stat_ticks(member, columns) for member in (descendants(pid) if with_children else [pid]))

    if not reaped:
        return read() / os.sysconf("SC_CLK_TCK")
    # A child reaped between the read of `pid` and its own read is in neither (its CPU moves to the parent's cutime at
    # the reaping): the sum fell by a whole backend's CPU now and then where connections closed during a read. Read
    # again until `pid`'s reaped time is the same after the members as before them.
    total = 0
    for _ in range(CONSISTENT_READ_TRIES):
        before = _stat_ticks(pid, _REAPED)
        total = read()
        if _stat_ticks(pid, _REAPED) == before:
            break
    return total / os.sysconf("SC_CLK_TCK")


def _stat_ticks(pid: int, columns: tuple[int, ...]) -> int:
    """The sum of `columns` of /proc/`pid`/stat (counted after the command's name), in clock ticks; 0 for a
    process gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(fields[column]) for column in columns)
    except (OSError, IndexError, ValueError):
        return 0


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    """The most resident memory the process has had (VmHWM), in MB."""
    return _rss_mb(pid, "VmHWM")


@contextmanager
def running_stack(models: dict[str, Path], task: str, env: dict[str, str], api_threads: int,
                  api_workers: int = API_PROCESSES, beat: bool = False,
                  workers: int = 1) -> Iterator[tuple[str, str, dict[str, int], list[Path]]]:
    """(base URL, API key, pids of api, the workers (`worker`, `worker-2`…) and redis, the workers' logs) of a fresh
    stack serving `task` with `workers` inference workers (and `beat`, which finalizes batches, when asked).
    `Prefer: wait` holds an API thread per request, so the API needs a thread per concurrent client, or clients
    queue for threads and the worker sees fewer jobs than there are clients."""
    with tempfile.TemporaryDirectory(prefix="distilq-bench-") as tmp:
        home = Path(tmp)
        stack = LocalStack(home, {**env, "DISTILQ_FILL_MASK_MODEL": str(models["fill-mask"]),
                                  "DISTILQ_QA_MODEL": str(models["question-answering"])}, log_dir=home)
        # Where a stack's start goes (a GPU host's step spent a minute outside its measured run), said as it runs.
        started = time.perf_counter()
        try:
            stack.start_redis()
            stack.run("migrate")
            key = stack.run("keys", "create", "--name", "bench").stdout.strip()
            migrated = time.perf_counter()
            url = stack.start_api("127.0.0.1", None, "--threads", str(api_threads), "--workers", str(api_workers))
            api_up = time.perf_counter()
            names = ["worker", *(f"worker-{i}" for i in range(2, workers + 1))]
            for name in names:
                stack.start(name, "worker", "--queues", task, "--metrics-port", "0")
            stack.wait_for_workers([task], count=workers)
            if beat:
                stack.start("beat", "beat")
                stack.wait_for_beat()
            ready = "the worker(s) and beat" if beat else "the worker(s)"
            print(f"stack started in {time.perf_counter() - started:.1f} s: Redis, migrations and a key "
                  f"{migrated - started:.1f}, the API {api_up - migrated:.1f}, {ready} ready "
                  f"{time.perf_counter() - api_up:.1f}", flush=True)
            assert stack.redis is not None and stack.redis.process is not None
            pids = {"api": stack.processes["api"].pid, **{name: stack.processes[name].pid for name in names},
                    "redis": stack.redis.process.pid, **({"beat": stack.processes["beat"].pid} if beat else {})}
            yield url, key, pids, [home / f"{name}.log" for name in names]
        finally:
            stopping = time.perf_counter()
            stack.stop_all()
            print(f"stack stopped in {time.perf_counter() - stopping:.1f} s", flush=True)


def logged_batches(logs: list[Path]) -> list[dict[str, Any]]:
    """The workers' "batch finished" log lines (`worker/batcher.py`), parsed, in the order they were logged."""
    batches = [json.loads(line) for log in logs for line in log.read_text("utf-8", errors="replace").splitlines()
               if '"batch finished"' in line]
    return sorted(batches, key=lambda batch: str(batch["time"]))


def batch_steps(logs: list[Path], first: int = 1, last: int | None = None) -> str:
    """Where a batch's time went, from the worker's log lines: mean milliseconds of each stage over the batches
    `first` (by default, after the warm-up one) to `last`. Claim and write overlap the engine's passes; `idle` is
    the time the engine waited for a batch's claim after its last pass, within a drain; `device`, with a device
    process, the batch's whole time there (`inference` is then the wait for a batch sent ahead)."""
    batches = logged_batches(logs)[first:last]
    if len(batches) < 2:
        return "too few batches to break down"
    names = ("claim", "inference", "write", "announce", "idle", *(("device",) if "device_ms" in batches[0] else ()))
    means = {n: sum(b.get(f"{n}_ms", 0.0) for b in batches) / len(batches) for n in names}
    inputs = sum(b["inputs"] for b in batches) / len(batches)
    # A row of a batch file's lines is one job of the pass (`store/batch_rows.py`): how many lines a row held.
    rows = sum(b["jobs"] for b in batches) / len(batches)
    lines = sum(b.get("batch_lines", 0) for b in batches) / len(batches)
    held = f", {rows:.1f} job rows holding {lines:.1f} batch lines" if lines else ""
    return (f"per batch ({len(batches)}, {inputs:.1f} inputs{held} on average), mean ms: "
            + ", ".join(f"{k} {v:.1f}" for k, v in means.items()))


def stack_cpu_seconds(pids: dict[str, int], env: dict[str, str]) -> dict[str, float]:
    """CPU seconds so far of each of the stack's processes (with their children) and, on PostgreSQL
    (`DISTILQ_DATABASE_URL` in `env`), of the database server's processes as `database` (SQLite's work is inside
    the processes that query it)."""
    return {**{name: cpu_seconds(pid) for name, pid in pids.items()},
            **({"database": postgres_cpu_seconds(env["DISTILQ_DATABASE_URL"])} if on_postgres(env) else {})}


def on_postgres(env: dict[str, str]) -> bool:
    """Whether the stack of `env` runs on PostgreSQL (`DISTILQ_DATABASE_URL`)."""
    return env.get("DISTILQ_DATABASE_URL", "").startswith("postgresql")


def postgres_cpu_seconds(url: str) -> float:
    """CPU time so far of the PostgreSQL server of `url` (a SQLAlchemy URL), when it runs on this machine (0
    otherwise): its postmaster and every process it runs, and those that have ended, as the postmaster that reaped
    them counts them (a backend lives as long as its client connection: one closed during a run took its CPU out of
    the live processes' sum — session 32's pool churn read 0.3 CPU-ms a job where its backends had spent more). One
    server's, not every `postgres` process's: another server on the machine that stops meanwhile (a test's own)
    would take its CPU out of the sum."""
    postmaster = _postmaster(url)
    return cpu_seconds(postmaster, reaped=True) if postmaster else 0.0


def _postmaster(url: str) -> int | None:
    """The pid of `url`'s postmaster on this machine: the parent of the backend that serves a connection (found
    by asking the server), or None when that backend is not a `postgres` process here (a server elsewhere)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            try:
                if Path(f"/proc/{backend}/comm").read_text().strip() not in ("postgres", "postmaster"):
                    return None
                return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                return None
    finally:
        engine.dispose()


def _started(_: int) -> int:
    return os.getpid()


def clients(url: str, key: str, route: str, bodies: list[dict[str, Any]],
            threads: int) -> tuple[list[tuple[float, dict[str, Any]]], float]:
    """`threads` clients in this process, each submitting the next of `bodies` to `route` and holding it with
    `Prefer: wait` (polling if the hold ends first) until it ends: (seconds, job) of each body, in order, and
    this process's CPU seconds meanwhile (its threads are all clients)."""
    cpu = time.process_time()
    # urllib3 rather than requests: the clients share the machine with the stack, so they should cost little.
    http = urllib3.PoolManager(maxsize=threads, timeout=urllib3.Timeout(total=120), retries=False,
                               headers={"Authorization": f"Bearer {key}", "Prefer": "wait=60"})

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = http.request(method, f"{url}{path}", json=body)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {response.data[:500]!r}")
        job: dict[str, Any] = response.json()
        return job

    def submit(body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        job = call("POST", f"/v1/{route}", body)
        while job["status"] not in ("succeeded", "failed", "canceled"):
            job = call("GET", f"/v1/jobs/{job['id']}")
        return time.perf_counter() - t0, job

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(submit, bodies))
    return outcomes, time.process_time() - cpu


def run_end_to_end(models: dict[str, Path], task: str, bodies: list[dict[str, Any]], concurrency: int,
                   env: dict[str, str], api_workers: int = API_PROCESSES, workers: int = 1,
                   client_processes: int = 1) -> tuple[Result, float]:
    """The (d) result and the (first) worker's resident memory (MB) after the run. On PostgreSQL
    (`DISTILQ_DATABASE_URL` in `env`) the server's CPU is counted as the database's; SQLite's is inside the API and
    the worker. The clients are threads of this process, or (`client_processes` > 1) of that many processes, the
    `concurrency` clients and the bodies dealt out among them: a Python process's clients cost 0.6–0.9 CPU-ms a
    job (2-core bench machines), all under one interpreter lock, so that one process cannot hold 2,000 jobs/s."""
    route = "fill-mask" if task == "fill-mask" else "question-answering"
    threads = -(-concurrency // api_workers) + 8
    with running_stack(models, task, env, threads, api_workers, workers=workers) as (url, key, pids, logs):
        clients(url, key, route, bodies[:1], 1)  # warm-up

        def usage() -> dict[str, float]:
            return stack_cpu_seconds(pids, env)

        shares = [(bodies[i::client_processes], len(range(i, concurrency, client_processes)))
                  for i in range(client_processes)]
        # Forked, not spawned: a spawned child would import this bench (torch and all) before its first request.
        with (ProcessPoolExecutor(client_processes, mp_context=multiprocessing.get_context("fork"))
              if client_processes > 1 else nullcontext()) as pool:
            if pool is not None:  # every process started before the clock does
                list(pool.map(_started, range(client_processes)))
            cpu_before = usage()
            started = time.perf_counter()
            if pool is None:
                ran = [clients(url, key, route, bodies, concurrency)]
            else:
                ran = [future.result() for future in
                       [pool.submit(clients, url, key, route, share, count) for share, count in shares]]
            wall = time.perf_counter() - started
            cpu = {name: seconds - cpu_before[name] for name, seconds in usage().items()}
        cpu["clients"] = sum(seconds for _, seconds in ran)
        outcomes = [outcome for of_process, _ in ran for outcome in of_process]
        rss = _rss_mb(pids["worker"])
        steps = batch_steps(logs)
    failed = [job for _, job in outcomes if job["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, e.g. {failed[0]['error']}")
    jobs = [job for _, job in outcomes]
    mean = lambda key: sum(j["metrics"][key] for j in jobs) / len(jobs)  # noqa: E731
    inputs = sum(len(next(iter(body["inputs"].values()))) for body in bodies)
    service_s = sum(seconds for name, seconds in cpu.items() if name != "clients")
    where = (f"{'PostgreSQL' if on_postgres(env) else 'SQLite'}, "
             f"{api_workers} API process{'es' if api_workers > 1 else ''}"
             + (f", {workers} workers" if workers > 1 else "")
             + (f", clients in {client_processes} processes" if client_processes > 1 else ""))
    result = Result("d", f"distilq end to end ({where}), {concurrency} concurrent clients, {inputs // len(bodies)} "
                         "input(s) per job", inputs, 0, 0, wall, [latency for latency, _ in outcomes])
    result.notes = [f"mean queue_ms {mean('queue_ms'):.0f}, mean batch inference_ms {mean('inference_ms'):.0f}, "
                    f"mean batch size {mean('batch_size'):.1f} inputs",
                    f"CPU seconds during the run ({len(os.sched_getaffinity(0))} cores × wall = "
                    f"{len(os.sched_getaffinity(0)) * wall:.1f}): "
                    + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items()),
                    f"{len(jobs) / wall:.1f} jobs/s; CPU ms per job: "
                    + ", ".join(f"{name} {seconds / len(jobs) * 1000:.1f}" for name, seconds in cpu.items())
                    + f" (the service, clients left out: {service_s / len(jobs) * 1000:.1f})",
                    steps]
    return result, rss
