"""The worker's own CPU a batch file's line, outside the engine: a Batcher — its claimer, main and writer threads, as
a worker runs them — drains a batch of one-input fill-mask lines stored in rows of N (`store/batch_rows.py`), with
an engine that does no work (it hands back one fixed top-5 output a line), on a fresh SQLite database (or
`--database-url`'s, migrated); CPU and wall µs a line. What a GPU worker's interpreter spends on a line beside the
engine's own host work (the fill-mask engine's from stored token ids: `bench.run --modes c`'s "the host's own"): on
a GPU the two share one interpreter, and their sum bounds a batch file's lines a second (BENCHMARKS.md, session 30:
the H200's e/c 0.24, claim and write-back 68 ms a 500-line pass against 12.6 on the device).

    python -m bench.worker_lines [--lines 10240] [--rounds 5] [--row-inputs 1,16] [--database-url URL]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.store_lines import LINE_OUTPUT, queued_batch, store_with_key
from core.settings import Settings
from models.tables import SUCCEEDED, Job
from tests.doubles import RecordingEvents
from worker.batcher import Batcher
from worker.engine import JobPayload, StagedEngine
from worker.engine.phases import Phases

#: Inputs a pass holds at most: a GPU's (`bench.run --batch 512`).
PASS_INPUTS = 512


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
    parser.add_argument("--lines", type=int, default=10_240, help="one-input lines of each batch")
    parser.add_argument("--rounds", type=int, default=5, help="batches drained at each row size; the first left out")
    parser.add_argument("--row-inputs", default="1,16", help="comma-separated inputs (here: lines) a row holds")
    parser.add_argument("--database-url", help="a database to migrate and use (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sessions, api_key_id = store_with_key(args.database_url or f"sqlite:///{Path(tmp) / 'distilq.db'}")
        engine = NullEngine()
        batcher = Batcher(sessions, lambda task: engine, RecordingEvents(),  # type: ignore[arg-type]
                          Settings(max_batch_size=PASS_INPUTS, max_batch_wait_ms=0), lambda: datetime.now(UTC))
        gc.freeze()  # as a worker's heap is once it is ready (`core.heap.freeze_heap`)
        sizes = [int(size) for size in args.row_inputs.split(",")]
        cpu: dict[int, list[float]] = {size: [] for size in sizes}
        wall: dict[int, list[float]] = {size: [] for size in sizes}
        for _ in range(args.rounds):
            for size in sizes:  # alternately: the machine's slow minutes fall on each alike
                batch_id, _, _ = queued_batch(sessions, api_key_id, args.lines, "fill-mask", size)
                started, started_wall = time.process_time(), time.perf_counter()
                batcher.drain("fill-mask")
                cpu[size].append((time.process_time() - started) / args.lines * 1e6)
                wall[size].append((time.perf_counter() - started_wall) / args.lines * 1e6)
                with sessions() as session:
                    ran = session.scalar(select(func.sum(Job.line_count))
                                         .where(Job.batch_id == batch_id, Job.status == SUCCEEDED))
                if ran != args.lines:
                    raise RuntimeError(f"{ran} of {args.lines} lines ran")
        for size in sizes:
            print(f"rows of {size}: the worker's CPU µs a line, median of {args.rounds - 1} batches of {args.lines} "
                  f"lines (range): {statistics.median(cpu[size][1:]):.1f} ({min(cpu[size][1:]):.1f}–"
                  f"{max(cpu[size][1:]):.1f}); wall {statistics.median(wall[size][1:]):.1f}")


if __name__ == "__main__":
    main()
