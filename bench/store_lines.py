"""The job store's own CPU for a file's lines, no other process or thread: a pass of lines inserted (a batch's check
queuing them: `add_checked_lines`), claimed (`claim_more`), written back (`finish`) and the batch's output file
written (beat's: `store.batch_output.write_ready`, as lines end in a run; here all by `finalize`), on a fresh SQLite
database (or `--database-url`'s, migrated), in CPU µs a line — and in wall µs, which on PostgreSQL hold the
server's work too. What creating a batch, a worker's claimer and writer threads and beat cost a batch file's pass —
in a run, the claimer and the writer share the interpreter with the forward pass. `--backlog N` first queues N
lines of the other task, never claimed: what a pass costs while a large batch waits in the queue. `--row-inputs
N`: the lines (one input each) share rows of N, as `DISTILQ_BATCH_ROW_INPUTS` makes them (`store/batch_rows.py`).

    python -m bench.store_lines [--lines 500] [--rounds 6] [--backlog 0] [--database-url URL] [--poll LINES]
                                [--row-inputs 16]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.file_lines import CHECK_CHUNK
from core.settings import Settings
from migrations import run_migrations
from models.db import make_engine, make_session_factory
from models.tables import ApiKey, Batch
from store import batch_output, batch_rows, batches, files, jobs, keys
from store.batch_rows import BatchLine
from store.jobs import Claim, Outcome

#: A top-5 output of a one-input fill-mask line, as the engine makes one.
LINE_OUTPUT = [[{"score": 0.1, "token": 5, "token_str": "capital", "sequence": "Paris is the capital of France."}] * 5]


def _lines(count: int, task: str = "fill-mask") -> Iterator[BatchLine]:
    for i in range(count):
        yield BatchLine(i + 1, f"r{i}", task, "bench", {"input_string": [f"Paris is the [MASK] of France {i}."]},
                        {"top_k": 5}, 1, {}, bytes(220))


def queued_batch(sessions: sessionmaker[Session], api_key_id: str, count: int, task: str,
                 row_inputs: int) -> tuple[str, float, float]:
    """A batch of `count` queued lines of `task` (in rows of `row_inputs`), created as the API does (its check's
    chunks queued as they pass, CHECK_CHUNK lines at a time); its id, and the process and wall times its insert
    began."""
    with sessions() as session:
        file = files.write_file(session, api_key_id=api_key_id, purpose="batch", filename="lines.jsonl", parts=[],
                                max_bytes=None, now=datetime.now(UTC))
        started, started_wall = time.process_time(), time.perf_counter()
        batch_id, now = batches.new_batch_id(), datetime.now(UTC)
        batches.begin_batch(session, batch_id=batch_id, api_key_id=api_key_id, input_file_id=file.id, endpoint=None,
                            completion_window="24h", webhook=None, metadata=None, now=now)
        lines = _lines(count, task)
        for checked in range(0, count, CHECK_CHUNK):
            rows = batch_rows.rows(itertools.islice(lines, CHECK_CHUNK), batch_id=batch_id, api_key_id=api_key_id,
                                   now=now, row_inputs={task: row_inputs})
            batches.add_checked_lines(sessions, batch_id, rows, min(count, checked + CHECK_CHUNK), now)
        batches.start_batch(session, batch_id, count, now)
    return batch_id, started, started_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500, help="lines a pass (the worker's batch of lines)")
    parser.add_argument("--rounds", type=int, default=6, help="passes; the first is left out (statements compile)")
    parser.add_argument("--backlog", type=int, default=0, help="question-answering lines queued first, never claimed")
    parser.add_argument("--database-url", help="a database to migrate and use (default: a fresh SQLite file)")
    parser.add_argument("--poll", type=int, default=0,
                        help="then a batch of this many lines, half of them run and written to its files: the time of "
                             "a poll's count of its lines (`store.batches.request_counts`)")
    parser.add_argument("--row-inputs", type=int, default=Settings.model_fields["batch_row_inputs"].default,
                        help="inputs (here: lines) a row of a batch's lines holds at most")
    args = parser.parse_args()
    per_row = args.row_inputs
    with tempfile.TemporaryDirectory() as tmp:
        sessions, api_key_id = store_with_key(args.database_url or f"sqlite:///{Path(tmp) / 'distilq.db'}")
        if args.backlog:
            queued_batch(sessions, api_key_id, args.backlog, "question-answering", per_row)
        steps: dict[str, list[float]] = {"insert": [], "claim": [], "write back": [], "output file": []}
        walls: dict[str, list[float]] = {step: [] for step in steps}
        for _ in range(args.rounds):
            batch_id, started, started_wall = queued_batch(sessions, api_key_id, args.lines, "fill-mask",
                                                           per_row)
            claimed_at, claimed_wall = time.process_time(), time.perf_counter()
            claimed = jobs.claim_more(sessions, "fill-mask", args.lines, lambda: datetime.now(UTC), 60)
            written_at, written_wall = time.process_time(), time.perf_counter()
            jobs.finish(sessions, [_ran(claim) for claim in claimed.claims], datetime.now(UTC), args.lines, 10.0)
            ended, ended_wall = time.process_time(), time.perf_counter()
            batches.finalize(sessions, batch_id, lambda: datetime.now(UTC))
            finalized, finalized_wall = time.process_time(), time.perf_counter()
            if claimed.n_inputs != args.lines:
                raise RuntimeError(f"claimed {claimed.n_inputs} of {args.lines} lines")
            with sessions() as session:
                ended_as = session.get_one(Batch, batch_id).status
            if ended_as != "completed":
                raise RuntimeError(f"the batch ended {ended_as}")
            for step, seconds in zip(steps, (claimed_at - started, written_at - claimed_at, ended - written_at,
                                             finalized - ended), strict=True):
                steps[step].append(seconds / args.lines * 1e6)
            for step, seconds in zip(walls, (claimed_wall - started_wall, written_wall - claimed_wall,
                                             ended_wall - written_wall, finalized_wall - ended_wall), strict=True):
                walls[step].append(seconds / args.lines * 1e6)
        for what, measured in (("CPU", steps), ("wall", walls)):
            print(f"{what} µs a line, {args.lines} lines a pass ({per_row} a row), median of {args.rounds - 1} passes "
                  "(range): "
                  + "; ".join(f"{step} {statistics.median(us[1:]):.0f} ({min(us[1:]):.0f}–{max(us[1:]):.0f})"
                              for step, us in measured.items()))
        if args.poll:
            print(_poll(sessions, api_key_id, args.poll, args.lines, per_row))


def store_with_key(url: str) -> tuple[sessionmaker[Session], str]:
    """`url`'s database migrated, its sessions (a worker's: the writer's lock taken eagerly), and the id of a key
    made in it."""
    run_migrations(url)
    sessions = make_session_factory(make_engine(url, eager_writer=True))
    with sessions() as session:
        key = keys.create_key(session, "bench")
        session.commit()
        api_key_id: str = session.scalars(select(ApiKey.id).where(ApiKey.key_hash == keys.hash_key(key))).one()
    return sessions, api_key_id


def _ran(claim: Claim) -> Outcome:
    """A row's outcome, each of its lines with a top-5 output."""
    output, failed = batch_rows.row_output([(LINE_OUTPUT, None)] * len(claim.input["lines"]))
    return Outcome(claim, output=output, failed_lines=failed)


def _poll(sessions: sessionmaker[Session], api_key_id: str, count: int, per_pass: int, row_inputs: int) -> str:
    """The wall time of `request_counts` of a batch of `count` lines, the first half (to the end of a row) run
    (`per_pass` a pass) and written to its files, as beat would have by then."""
    batch_id, _, _ = queued_batch(sessions, api_key_id, count, "fill-mask", row_inputs)
    done = 0
    while done < count // 2:
        claimed = jobs.claim_more(sessions, "fill-mask", min(per_pass, count // 2 - done), lambda: datetime.now(UTC),
                                  60)
        jobs.finish(sessions, [_ran(claim) for claim in claimed.claims], datetime.now(UTC), claimed.n_inputs, 10.0)
        done += claimed.n_inputs
    while batch_output.write_ready(sessions, batch_id, datetime.now(UTC), fewest=1):
        pass
    with sessions() as session:
        batch = session.get_one(Batch, batch_id)
        times = []
        for _ in range(21):
            started = time.perf_counter()
            counts = batches.request_counts(session, batch)
            times.append(time.perf_counter() - started)
    if counts["completed"] != done:
        raise RuntimeError(f"counted {counts} of {done} lines run")
    return (f"a poll of a {count}-line batch half done ({counts}): {statistics.median(times[1:]) * 1000:.2f} ms, "
            "median of 20")


if __name__ == "__main__":
    main()
