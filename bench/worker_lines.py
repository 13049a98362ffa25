"""The worker's own CPU a batch file's line, outside the engine: a Batcher — its claimer, main and writer threads, as
a worker runs them — drains a batch of one-input fill-mask lines stored in rows of N (`store/batch_rows.py`), with
an engine that does no work (it hands back one fixed top-5 output a line), on a fresh SQLite database (or
`--database-url`'s, migrated); CPU and wall µs a line. What a GPU worker's interpreter spends on a line beside the
engine's own host work (the fill-mask engine's from stored token ids: `bench.run --modes c`'s "the host's own"): on
a GPU the two share one interpreter, and their sum bounds a batch file's lines a second (BENCHMARKS.md, session 30:
the H200's e/c 0.24, claim and write-back 68 ms a 500-line pass against 12.6 on the device).

With `--interactive-passes`, the same for one-input interactive jobs instead of a batch's lines: each round queues
`--lines` jobs as the API's submission stores them (token ids, held by an API process, so each is written back with
its JSON for the announcement) and drains them in passes of at most N inputs — what a GPU worker's interpreter
spends on a one-input job beside the engine's host work, which bounds the jobs a second one worker serves (issue
13's 2,000 on a GPU). The announcements' Redis round trip a pass is left out (a recording double stands in).

    python -m bench.worker_lines [--lines 10240] [--rounds 5] [--row-inputs 1,16] [--database-url URL]
    python -m bench.worker_lines --lines 2048 --interactive-passes 16,64 [--database-url URL]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from bench.store_lines import LINE_OUTPUT, queued_batch, store_with_key
from bench.store_requests import BODY, RAW
from core.settings import Settings
from core.tasks import TASK_FILL_MASK
from models.db import make_engine
from models.tables import SUCCEEDED, Job
from store import jobs
from tests.doubles import RecordingEvents
from worker.batcher import Batcher
from worker.engine import JobPayload, StagedEngine
from worker.engine.phases import Phases

#: Inputs a pass holds at most: a GPU's (`bench.run --batch 512`).
PASS_INPUTS = 512
#: How many of a round's lines or jobs ran and succeeded, read once the round is drained.
Ran = Callable[[], int]


class NullEngine(StagedEngine):
    """An engine of no work: what the batcher costs around it is all there is to measure."""

    task = "fill-mask"

    def __init__(self) -> None:
        self.phases = Phases()

    def prepare(self, jobs: list[JobPayload]) -> list[JobPayload]:
        return jobs

    def infer(self, jobs: list[JobPayload], prepared: Any) -> Any:
        return prepared

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        return [LINE_OUTPUT for _ in jobs]

    def warm_up(self) -> None:
        """Nothing to warm."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_240,
                        help="one-input lines of each batch (interactive jobs of each round)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="batches (rounds of jobs) drained at each row (pass) size; the first left out")
    parser.add_argument("--row-inputs", default="1,16", help="comma-separated inputs (here: lines) a row holds")
    parser.add_argument("--interactive-passes",
                        help="comma-separated inputs a pass holds at most: one-input interactive jobs, not lines")
    parser.add_argument("--database-url", help="a database to migrate and use (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'distilq.db'}"
        sessions, api_key_id = store_with_key(url)
        engine = NullEngine()

        def batcher(pass_inputs: int) -> Batcher:
            return Batcher(sessions, lambda task: engine, RecordingEvents(),  # type: ignore[arg-type]
                           Settings(max_batch_size=pass_inputs, max_batch_wait_ms=0), lambda: datetime.now(UTC))

        if args.interactive_passes:
            sizes = [int(size) for size in args.interactive_passes.split(",")]
            submit = _interactive(make_engine(url), api_key_id, args.lines)  # the API's own engine
            kinds = {f"interactive jobs, passes of {size}": (batcher(size), submit) for size in sizes}
            unit = "job"
        else:
            sizes = [int(size) for size in args.row_inputs.split(",")]
            lines_batcher = batcher(PASS_INPUTS)
            kinds = {f"rows of {size}": (lines_batcher, _batch(sessions, api_key_id, args.lines, size))
                     for size in sizes}
            unit = "line"
        gc.freeze()  # as a worker's heap is once it is ready (`core.heap.freeze_heap`)
        cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
        wall: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.rounds):
            for kind, (drainer, queue) in kinds.items():  # alternately: the machine's slow minutes fall on each alike
                ran = queue()
                started, started_wall = time.process_time(), time.perf_counter()
                while drainer.drain("fill-mask"):  # a drain gives its turn back after DRAIN_SLICE_S
                    pass
                cpu[kind].append((time.process_time() - started) / args.lines * 1e6)
                wall[kind].append((time.perf_counter() - started_wall) / args.lines * 1e6)
                if ran() != args.lines:
                    raise RuntimeError(f"{ran()} of {args.lines} {unit}s ran")
        for kind in kinds:
            print(f"{kind}: the worker's CPU µs a {unit}, median of {args.rounds - 1} rounds of {args.lines} {unit}s "
                  f"(range): {statistics.median(cpu[kind][1:]):.1f} ({min(cpu[kind][1:]):.1f}–"
                  f"{max(cpu[kind][1:]):.1f}); wall {statistics.median(wall[kind][1:]):.1f}")


def _batch(sessions: sessionmaker[Session], api_key_id: str, lines: int, row_inputs: int) -> Callable[[], Ran]:
    """Queues a batch of `lines` one-input lines in rows of `row_inputs`; returns how to count its lines that ran."""

    def queue() -> Ran:
        batch_id, _, _ = queued_batch(sessions, api_key_id, lines, "fill-mask", row_inputs)

        def ran() -> int:
            with sessions() as session:
                return int(session.scalar(select(func.sum(Job.line_count))
                                          .where(Job.batch_id == batch_id, Job.status == SUCCEEDED)) or 0)
        return ran
    return queue


def _interactive(api: Engine, api_key_id: str, count: int) -> Callable[[], Ran]:
    """Submits `count` one-input fill-mask jobs as the API does (its own engine, the check's token ids, held by an
    API process); returns how to count those that succeeded."""

    def queue() -> Ran:
        ids = [str(jobs.submit(api, task=TASK_FILL_MASK, model="bench", api_key_id=api_key_id, body=BODY,
                               raw_body=RAW, idempotency_key=None, idempotency_ttl_s=60, max_in_flight=10**9,
                               now=datetime.now(UTC), token_ids=bytes(20), held_by="bench-api")[0]["id"])
               for _ in range(count)]

        def ran() -> int:
            with api.connect() as connection:
                return int(connection.scalar(select(func.count()).where(Job.id.in_(ids), Job.status == SUCCEEDED))
                           or 0)
        return ran
    return queue


if __name__ == "__main__":
    main()
