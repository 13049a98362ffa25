"""The job store's part of an API request, one call at a time in this process — a one-input submission
(`store.jobs.submit`, as the API's POST makes it, with its own engine) and a poll of a queued job
(`store.job_reads.own_job_json`) — on a fresh SQLite database (or `--database-url`'s, migrated) with `--queued` of the
key's jobs queued first: CPU µs a call in this process (the API's share) and, on PostgreSQL, of the server's
processes on this machine, median of the rounds. What an API request costs the database path, apart from HTTP,
Flask and Redis.

    python -m bench.store_requests [--calls 1000] [--rounds 3] [--queued 600] [--database-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, select

from bench.e2e import postgres_cpu_seconds
from contract.requests import FillMaskRequest
from core.clock import utcnow
from core.tasks import TASK_FILL_MASK
from migrations import run_migrations
from models.db import make_engine, make_session_factory, transaction
from models.tables import ApiKey
from store import job_reads, jobs, keys

RAW = {"inputs": {"input_string": ["The capital of France is [MASK]."]}}
BODY = FillMaskRequest.model_validate(RAW)


def _submit(engine: Engine, api_key_id: str) -> str:
    job, created = jobs.submit(engine, task=TASK_FILL_MASK, model="bench", api_key_id=api_key_id, body=BODY,
                               raw_body=RAW, idempotency_key=None, idempotency_ttl_s=60, max_in_flight=10**9,
                               now=utcnow())
    assert created
    return str(job["id"])


def _timed(call: Callable[[int], object], calls: int, postgres: str | None) -> tuple[float, float]:
    """(this process's, the server's) CPU µs a call, over `calls` calls; `postgres`: the server's URL."""
    server, started = postgres_cpu_seconds(postgres) if postgres else 0.0, time.process_time()
    for i in range(calls):
        call(i)
    own = (time.process_time() - started) / calls * 1e6
    return own, ((postgres_cpu_seconds(postgres) - server) / calls * 1e6 if postgres else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queued", type=int, default=600, help="the key's jobs queued first (its jobs in flight)")
    parser.add_argument("--database-url", help="a database to migrate and use (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'distilq.db'}"
        run_migrations(url)
        engine = make_engine(url)
        postgres = engine.dialect.name == "postgresql"
        with transaction(make_session_factory(engine)) as session:
            key = keys.create_key(session, "bench")
        with make_session_factory(engine)() as session:
            api_key_id = session.scalars(select(ApiKey.id).where(ApiKey.key_hash == keys.hash_key(key))).one()
        queued = [_submit(engine, api_key_id) for _ in range(max(1, args.queued))]

        def poll(i: int) -> None:
            if job_reads.own_job_json(engine, api_key_id, queued[i % len(queued)]) is None:
                raise RuntimeError("a queued job was not found")

        kinds: dict[str, Callable[[int], object]] = {"submission": lambda _: _submit(engine, api_key_id), "poll": poll}
        figures: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
        for _ in range(args.rounds):
            for kind, call in kinds.items():
                figures[kind].append(_timed(call, args.calls, url if postgres else None))
        engine.dispose()
    print(f"CPU µs a call, median of {args.rounds} rounds of {args.calls} ({engine.dialect.name}, "
          f"{args.queued} jobs queued first)")
    for kind, values in figures.items():
        server = f", the server's {statistics.median(v[1] for v in values):.0f}" if postgres else ""
        print(f"{kind}: {statistics.median(v[0] for v in values):.0f} in this process{server}")


if __name__ == "__main__":
    main()
