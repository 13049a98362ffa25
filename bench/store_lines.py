"""The job store's own CPU for a file's lines, no other process or thread: a pass of lines inserted (a batch's check
queuing them: `add_checked_lines`), claimed (`claim_more`), written back (`finish`) and the batch's output file
written (beat's: `store.batch_output.write_ready`, as lines end in a run; here all by `finalize`), on a fresh SQLite
database (or `--database-url`'s, migrated), in CPU µs a line — and in wall µs, which on PostgreSQL hold the
server's work too. What creating a batch, a worker's claimer and writer threads and beat cost a batch file's pass —
in a run, the claimer and the writer share the interpreter with the forward pass. `--backlog N` first queues N
lines of the other task, never claimed: what a pass costs while a large batch waits in the queue. `--lines-per-row
N` stores N lines in each row (N inputs, N outputs): a stand-in for a batch's lines kept in chunks of N a row rather
than a row each, measured before building it — the rows' cost a line, with the same bytes stored; its output file
holds a line a row, so that step is a lower bound of what N output lines a row would cost.

    python -m bench.store_lines [--lines 500] [--rounds 6] [--backlog 0] [--database-url URL] [--poll LINES]
                                [--lines-per-row 1]
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
from migrations import run_migrations
from models.db import make_engine, make_session_factory
from models.tables import ApiKey, Batch
from store import batch_output, batches, files, jobs, keys
from store.jobs import Outcome

#: A top-5 output of a one-input fill-mask line, as the engine makes one.
_OUTPUT = [[{"score": 0.1, "token": 5, "token_str": "capital", "sequence": "Paris is the capital of France."}] * 5]


def _lines(count: int, batch_id: str, api_key_id: str, now: datetime, task: str = "fill-mask",
           per_row: int = 1) -> Iterator[dict[str, object]]:
    for i in range(0, count, per_row):
        texts = [f"Paris is the [MASK] of France {line}." for line in range(i, min(count, i + per_row))]
        yield jobs.batch_line(batch_id=batch_id, line=i + 1, custom_id=f"r{i}", task=task, model="bench",
                              api_key_id=api_key_id, inputs={"input_string": texts}, parameters={"top_k": 5},
                              n_inputs=len(texts), metadata={}, now=now, token_ids=bytes(220 * len(texts)))


def _batch(sessions: sessionmaker[Session], api_key_id: str, count: int, task: str,
           per_row: int = 1) -> tuple[str, float, float]:
    """A batch of `count` queued lines of `task` (`per_row` a row), created as the API does (its check's chunks
    queued as they pass, CHECK_CHUNK lines at a time); its id, and the process and wall times its insert began."""
    with sessions() as session:
        file = files.write_file(session, api_key_id=api_key_id, purpose="batch", filename="lines.jsonl", parts=[],
                                max_bytes=None, now=datetime.now(UTC))
        started, started_wall = time.process_time(), time.perf_counter()
        batch_id, now = batches.new_batch_id(), datetime.now(UTC)
        batches.begin_batch(session, batch_id=batch_id, api_key_id=api_key_id, input_file_id=file.id, endpoint=None,
                            completion_window="24h", webhook=None, metadata=None, now=now)
        rows, chunk = _lines(count, batch_id, api_key_id, now, task, per_row), max(1, CHECK_CHUNK // per_row)
        for checked in range(0, count, chunk * per_row):
            batches.add_checked_lines(sessions, batch_id, itertools.islice(rows, chunk),
                                      min(count, checked + chunk * per_row), now)
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
    parser.add_argument("--lines-per-row", type=int, default=1,
                        help="lines stored in each row: chunked lines' rows, measured before they are built")
    args = parser.parse_args()
    per_row = args.lines_per_row
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'distilq.db'}"
        run_migrations(url)
        sessions = make_session_factory(make_engine(url, eager_writer=True))
        with sessions() as session:
            key = keys.create_key(session, "bench")
            session.commit()
            api_key_id = session.scalars(select(ApiKey.id).where(ApiKey.key_hash == keys.hash_key(key))).one()
        if args.backlog:
            _batch(sessions, api_key_id, args.backlog, "question-answering")
        steps: dict[str, list[float]] = {"insert": [], "claim": [], "write back": [], "output file": []}
        walls: dict[str, list[float]] = {step: [] for step in steps}
        for _ in range(args.rounds):
            batch_id, started, started_wall = _batch(sessions, api_key_id, args.lines, "fill-mask", per_row)
            claimed_at, claimed_wall = time.process_time(), time.perf_counter()
            claimed = jobs.claim_more(sessions, "fill-mask", args.lines, lambda: datetime.now(UTC), 60)
            written_at, written_wall = time.process_time(), time.perf_counter()
            jobs.finish(sessions, [Outcome(claim, output=_OUTPUT * claim.n_inputs) for claim in claimed.claims],
                        datetime.now(UTC), args.lines, 10.0)
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
            print(_poll(sessions, api_key_id, args.poll, args.lines))


def _poll(sessions: sessionmaker[Session], api_key_id: str, count: int, per_pass: int) -> str:
    """The wall time of `request_counts` of a batch of `count` lines, the first half run (`per_pass` a pass) and
    written to its files, as beat would have by then."""
    batch_id, _, _ = _batch(sessions, api_key_id, count, "fill-mask")
    done = 0
    while done < count // 2:
        claimed = jobs.claim_more(sessions, "fill-mask", min(per_pass, count // 2 - done), lambda: datetime.now(UTC),
                                  60)
        jobs.finish(sessions, [Outcome(claim, output=_OUTPUT) for claim in claimed.claims], datetime.now(UTC),
                    len(claimed.claims), 10.0)
        done += len(claimed.claims)
    while batch_output.write_ready(sessions, batch_id, datetime.now(UTC), fewest=1):
        pass
    with sessions() as session:
        batch = session.get_one(Batch, batch_id)
        times = []
        for _ in range(21):
            started = time.perf_counter()
            counts = batches.request_counts(session, batch)
            times.append(time.perf_counter() - started)
    if counts["completed"] != count // 2:
        raise RuntimeError(f"counted {counts}")
    return (f"a poll of a {count}-line batch half done ({counts}): {statistics.median(times[1:]) * 1000:.2f} ms, "
            "median of 20")


if __name__ == "__main__":
    main()
