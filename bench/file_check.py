"""The API's check of a file of many lines, in-process and alone: a batch's and an evaluation's file of one-input
fill-mask lines uploaded, then checked whole and queued (`POST /v1/batches`, `POST /v1/evaluations`, through
Flask's test client), on a fresh SQLite database with the tiny test checkpoint's tokenizer; wall and CPU seconds
of each creation. The step before a file's first line runs — at a GPU's speed, a large share of a batch's time.

    python -m bench.file_check [--lines 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import tempfile
import time
from pathlib import Path

from api import create_app
from bench.workload import make_workload
from core.settings import Settings
from migrations import run_migrations
from models.db import make_engine, make_session_factory, transaction
from store.keys import create_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="creations of each; the least is reported")
    parser.add_argument("--models", type=Path, default=Path(".distilq/bench-models"))
    args = parser.parse_args()
    from tests.tiny_model import build as build_tiny

    models = build_tiny(args.models / "tiny")
    logging.disable(logging.WARNING)  # no Redis here: the wake-ups fail, as designed, with a warning each
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
        settings = Settings(home=Path(home), database_url=url, redis_url="redis://127.0.0.1:1/0",
                            fill_mask_model=str(models["fill-mask"]), qa_model=str(models["question-answering"]))
        with transaction(make_session_factory(make_engine(url))) as session:
            key = create_key(session, "bench")
        with create_app(settings).test_client() as client:
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
            for kind, content in files.items():
                timings = []
                for _ in range(args.rounds):
                    uploaded = client.post("/v1/files", data={"purpose": kind,
                                                              "file": (io.BytesIO(content), "f.jsonl")}).get_json()
                    route, body = (("/v1/batches", {"input_file_id": uploaded["id"]}) if kind == "batch" else
                                   ("/v1/evaluations", {"task": "fill-mask", "input_file_id": uploaded["id"]}))
                    wall, cpu = time.perf_counter(), time.process_time()
                    created = client.post(route, json=body).get_json()
                    timings.append((time.perf_counter() - wall, time.process_time() - cpu))
                    if created["status"] not in ("in_progress", "queued"):
                        raise RuntimeError(f"the {kind} was not created: {created}")
                wall_s, cpu_s = min(timings)
                print(f"{kind} of {args.lines} lines checked and queued: {wall_s:.2f} s wall, {cpu_s:.2f} CPU s "
                      f"({cpu_s / args.lines * 1e6:.0f} CPU-µs a line), least of {args.rounds}", flush=True)


if __name__ == "__main__":
    main()
