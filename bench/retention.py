"""What retention costs (`store/retention.py`): a database holding `--jobs` ended one-input jobs past retention — a
tenth of them with two delivered webhook events, an attempt each — among `--live` younger ones; beat's sweeps
(`delete_expired`, at most SWEEP_BUDGET_S each) delete them. Reports jobs deleted a second of the sweeps' wall, what
each sweep deleted, and the longest transaction (a chunk of CHUNK jobs: what the API's inserts and a worker's claims
may wait behind on SQLite, which has one writer). The rows are copies of one job as the service stores and finishes
it, with its output.

    python -m bench.retention [--jobs 20000] [--live 20000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from bench.store_lines import store_with_key
from contract.requests import FillMaskRequest
from core.tasks import TASK_FILL_MASK
from models.db import transaction
from models.tables import DELIVERED, EVENT_COMPLETED, EVENT_STARTED, Job, WebhookAttempt, WebhookEvent
from store import jobs, retention

RETENTION = timedelta(days=30)
#: Rows are copied by column name (a job's `metadata` is `Job.meta`).
JOBS = cast(Table, Job.__table__)
BODY = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}
OUTPUT = [[{"score": 0.1, "token": 5, "token_str": "capital", "sequence": "Paris is the capital of France."}] * 5]


def _template(sessions: sessionmaker[Session], api_key_id: str, now: datetime) -> dict[str, Any]:
    """One job submitted, claimed and finished as the service does it: its row's columns."""
    jobs.submit(sessions.kw["bind"], task=TASK_FILL_MASK, model="bench", api_key_id=api_key_id,
                body=FillMaskRequest.model_validate(BODY), raw_body=BODY, idempotency_key=None, idempotency_ttl_s=60,
                max_in_flight=10, now=now, token_ids=None, held_by=None)
    claims = jobs.claim_more(sessions, TASK_FILL_MASK, 1, lambda: now, 60).claims
    jobs.finish(sessions, [jobs.Outcome(claims[0], output=OUTPUT)], now, 1, 1.0)
    with sessions() as session:
        row = session.execute(select(JOBS)).mappings().one()
        session.execute(delete(Job))
        session.commit()
    return dict(row)


def _fill(sessions: sessionmaker[Session], template: dict[str, Any], count: int, created: datetime,
          with_events: bool) -> None:
    for start in range(0, count, 2000):
        rows = [{**template, "id": str(uuid.uuid4()), "created_at": created} for _ in range(min(2000, count - start))]
        events = [{"id": f"evt_{uuid.uuid4().hex}", "job_id": row["id"], "api_key_id": row["api_key_id"],
                   "type": kind, "url": "https://example.com/hook", "payload": "{}", "status": DELIVERED,
                   "attempts": 1, "next_attempt_at": created, "created_at": created, "delivered_at": created}
                  for row in rows[::10] for kind in (EVENT_STARTED, EVENT_COMPLETED)] if with_events else []
        attempts = [{"id": str(uuid.uuid4()), "event_id": event["id"], "attempt": 1, "started_at": created,
                     "duration_ms": 1.0, "response_status": 200} for event in events]
        with transaction(sessions) as session:
            session.execute(insert(JOBS), rows)
            if events:
                session.execute(insert(WebhookEvent), events)
                session.execute(insert(WebhookAttempt), attempts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="ended jobs past retention")
    parser.add_argument("--live", type=int, default=20_000, help="ended jobs within it, which stay")
    parser.add_argument("--database-url", help="a database to migrate and use (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        sessions, api_key_id = store_with_key(url)
        now = datetime.now(UTC)
        template = _template(sessions, api_key_id, now)
        _fill(sessions, template, args.jobs, now - RETENTION - timedelta(hours=1), with_events=True)
        _fill(sessions, template, args.live, now - timedelta(hours=1), with_events=False)

        chunks: list[float] = []
        sweeps: list[int] = []
        wall = 0.0
        while True:
            started = time.perf_counter()
            counts = retention.delete_expired(sessions, now, RETENTION)
            wall += time.perf_counter() - started
            sweeps.append(counts["jobs_expired"])
            if not counts["jobs_expired"]:
                break
        # The longest transaction: a chunk of jobs, timed alone on a fresh set.
        _fill(sessions, template, retention.CHUNK * 5, now - RETENTION - timedelta(hours=1), with_events=True)
        for _ in range(5):
            started = time.perf_counter()
            with transaction(sessions) as session:
                retention._jobs(session, now - RETENTION, now)
            chunks.append(time.perf_counter() - started)
        with sessions() as session:
            left = session.scalar(select(func.count()).select_from(Job))
        database = url.split(":", 1)[0]
        print(f"{database}: {args.jobs} expired jobs ({args.jobs // 10 * 2} events) among {args.live} live: "
              f"{sum(sweeps)} deleted in {wall:.2f} s of sweeps ({sum(sweeps) / wall:,.0f} jobs/s), per sweep "
              f"{sweeps[:-1]}; a chunk of {retention.CHUNK}: {min(chunks) * 1000:.0f}–{max(chunks) * 1000:.0f} ms; "
              f"{left} jobs left (the live ones)")
        assert left == args.live


if __name__ == "__main__":
    main()
