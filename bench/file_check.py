"""The API's check of a file of many lines, in-process and alone: a batch's and an evaluation's file of one-input
fill-mask lines uploaded, then checked whole and queued (`POST /v1/batches`, `POST /v1/evaluations`, through
Flask's test client), on a fresh SQLite database with the tiny test checkpoint's tokenizer; wall and CPU seconds
of each creation (the batch's with each `--check-processes`, `api/check_pool.py`: the API process's own CPU, and
its check processes'). The step before a file's first line runs — at a GPU's speed, a large share of a batch's
time.

    python -m bench.file_check [--lines 10000] [--rounds 3] [--check-processes 0,2]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing
import tempfile
import time
from pathlib import Path

from flask.testing import FlaskClient

from api import create_app
from bench.e2e import cpu_seconds
from bench.workload import make_workload
from core.heap import freeze_heap
from core.settings import Settings
from migrations import run_migrations
from models.db import make_engine, make_session_factory, transaction
from store.keys import create_key


def _checkers_cpu() -> float:
    """CPU seconds so far of this process's check processes (multiprocessing's children of it)."""
    return sum(cpu_seconds(child.pid, with_children=False) for child in multiprocessing.active_children() if child.pid)


def _check(client: FlaskClient, kind: str, content: bytes, rounds: int) -> tuple[float, float, float]:
    """(wall, this process's CPU, its check processes' CPU) seconds of the fastest of `rounds` creations."""
    timings = []
    for _ in range(rounds):
        uploaded = client.post("/v1/files", data={"purpose": kind, "file": (io.BytesIO(content), "f.jsonl")}).get_json()
        route, body = (("/v1/batches", {"input_file_id": uploaded["id"]}) if kind == "batch" else
                       ("/v1/evaluations", {"task": "fill-mask", "input_file_id": uploaded["id"]}))
        checkers = _checkers_cpu()
        wall, cpu = time.perf_counter(), time.process_time()
        created = client.post(route, json=body).get_json()
        timings.append((time.perf_counter() - wall, time.process_time() - cpu, _checkers_cpu() - checkers))
        if created["status"] not in ("in_progress", "queued"):
            raise RuntimeError(f"the {kind} was not created: {created}")
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="creations of each; the least is reported")
    parser.add_argument("--check-processes", default="0",
                        help="comma-separated DISTILQ_CHECK_PROCESSES to check the batch's file with, in turn")
    parser.add_argument("--models", type=Path, default=Path(".distilq/bench-models"))
    args = parser.parse_args()
    from tests.tiny_model import build as build_tiny

    models = build_tiny(args.models / "tiny")
    # No Redis here: the wake-ups fail, as designed, with a warning each. Turned on again at the end: a test runs
    # this in its own process, whose later tests' log records would be lost.
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        _check_files(args, models)
    finally:
        logging.disable(disabled)


def _check_files(args: argparse.Namespace, models: dict[str, Path]) -> None:
    texts = make_workload(args.lines, 0).fill_mask
    files = {
        "batch": "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/fill-mask",
                                     "body": {"inputs": {"input_string": [text]}, "parameters": {"top_k": 5}}}) + "\n"
                         for i, text in enumerate(texts)).encode(),
        "evaluation": "".join(json.dumps({"text": text, "label": "the"}) + "\n" for text in texts).encode(),
    }
    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{Path(home) / 'distilq.db'}"
        run_migrations(url)
        with transaction(make_session_factory(make_engine(url))) as session:
            key = create_key(session, "bench")
        runs = [("batch", int(n)) for n in args.check_processes.split(",")] + [("evaluation", 0)]
        for kind, processes in runs:
            settings = Settings(home=Path(home), database_url=url, redis_url="redis://127.0.0.1:1/0",
                                fill_mask_model=str(models["fill-mask"]), qa_model=str(models["question-answering"]),
                                check_processes=processes)
            # An app of its own for each: its check processes start in the first round (the least is reported).
            app = create_app(settings)
            freeze_heap()  # as each API process does once started (`api.gunicorn_conf.post_worker_init`)
            try:
                with app.test_client() as client:
                    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
                    wall_s, cpu_s, checkers_s = _check(client, kind, files[kind], args.rounds)
            finally:
                app.extensions["distilq"].check_pool.close()
            beside = f", {checkers_s:.2f} CPU s in {processes} check processes" if kind == "batch" else ""
            print(f"{kind} of {args.lines} lines checked and queued: {wall_s:.2f} s wall, {cpu_s:.2f} CPU s "
                  f"({cpu_s / args.lines * 1e6:.0f} CPU-µs a line){beside}, least of {args.rounds}", flush=True)


if __name__ == "__main__":
    main()
