"""The job store's own CPU for one interactive job — submitted (`store.jobs.submit`), claimed (`claim_more`) and
written back (`finish`), one at a time — on two fresh SQLite databases migrated to two revisions, the same code
running on both in one process, rounds alternating between them: what a migration (an index, a column) changes on
the hot path, with the machine's phases falling on both alike. CPU µs a job, least and median of the rounds. Both
revisions must hold the columns the code reads (0017 on).

    python -m bench.schema_ab --base REVISION [--head head] [--rounds 20] [--jobs 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from contract.requests import FillMaskRequest
from core.clock import utcnow
from migrations import run_migrations
from models.db import make_engine, make_session_factory, transaction
from models.tables import ApiKey
from store import jobs
from store.jobs import Outcome
from store.keys import create_key

STEPS = ("submit", "claim", "write back")
BODY = FillMaskRequest.model_validate({"inputs": {"input_string": ["The capital of France is [MASK]."]}})
OUTPUT = [[{"score": 0.5, "token": 1012, "token_str": "Paris", "sequence": "The capital of France is Paris."}]]


def _database(home: Path, revision: str) -> tuple[sessionmaker[Session], str]:
    """The worker's kind of engine (eager writer) on a fresh database at `revision`, and its one key's id."""
    url = f"sqlite:///{home / f'{revision}.db'}"
    run_migrations(url, revision)
    sessions = make_session_factory(make_engine(url, eager_writer=True))
    with transaction(sessions) as session:
        create_key(session, "bench")
    with sessions() as session:
        return sessions, session.scalars(select(ApiKey.id)).one()


def _round(sessions: sessionmaker[Session], key: str, count: int) -> dict[str, float]:
    """CPU µs a job of each step, over `count` jobs each submitted, claimed and written back before the next."""
    spent = dict.fromkeys(STEPS, 0.0)
    raw = BODY.model_dump()
    for _ in range(count):
        started = time.process_time()
        jobs.submit(sessions.kw["bind"], task="fill-mask", model="bench", api_key_id=key, body=BODY, raw_body=raw,
                    idempotency_key=None, idempotency_ttl_s=60, max_in_flight=10**6, now=utcnow())
        submitted = time.process_time()
        claimed = jobs.claim_more(sessions, "fill-mask", 32, utcnow, 60, "bench")
        taken = time.process_time()
        finished, _ = jobs.finish(sessions, [Outcome(claim, output=OUTPUT) for claim in claimed.claims], utcnow(),
                                  len(claimed.claims), 1.0)
        written = time.process_time()
        if len(finished) != 1:
            raise RuntimeError(f"a round's job was claimed and written {len(finished)} times, not once")
        for step, seconds in zip(STEPS, (submitted - started, taken - submitted, written - taken), strict=True):
            spent[step] += seconds
    return {step: seconds / count * 1e6 for step, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare with (e.g. 0011)")
    parser.add_argument("--head", default="head")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=200, help="jobs a round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        databases = {revision: _database(Path(home), revision) for revision in (args.base, args.head)}
        rounds: dict[str, list[dict[str, float]]] = {revision: [] for revision in databases}
        for number in range(args.rounds):
            order = list(databases) if number % 2 else list(reversed(databases))
            for revision in order:
                rounds[revision].append(_round(*databases[revision], args.jobs))
    for revision, measured in rounds.items():
        print(f"revision {revision}: CPU µs a job, least / median of {args.rounds} rounds of {args.jobs}: " + "; ".join(
            f"{step} {min(r[step] for r in measured):.0f} / {statistics.median(r[step] for r in measured):.0f}"
            for step in STEPS), flush=True)


if __name__ == "__main__":
    main()
