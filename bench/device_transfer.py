"""What crossing to a device process costs a batch (`worker/engine/device_process.py`): for each task, the bench's
inputs prepared from the ids the API stores (the tiny checkpoint's tokenizer), then what is sent (`for_device`:
made, pickled and read back) and what comes back (`detach`: pickled and read back), beside the whole prepared
batch's round trip — host CPU outside the forward pass, the same on any machine's host. Best of `--rounds`.

    python -m bench.device_transfer [--inputs 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.modes import TOP_K
from bench.workload import make_workload
from contract.requests import QuestionAnsweringParameters
from contract.tokens import pack_qa_pairs, pack_token_ids
from worker.engine import JobPayload
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.question_answering import QuestionAnsweringEngine
from worker.engine.runtime import Runtime


def _best_ms(work: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def _round_trip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def measure(engine: FillMaskEngine | QuestionAnsweringEngine, jobs: list[JobPayload], rounds: int) -> str:
    """One line: the sizes and best times of the whole prepared batch's, the sent part's and the reply's trips."""
    prepared = engine.prepare(jobs)
    sent = engine.for_device(prepared)
    found = engine.detach(engine.infer([], sent))
    whole = _best_ms(lambda: _round_trip(prepared), rounds)
    there = _best_ms(lambda: _round_trip(engine.for_device(prepared)), rounds)
    back = _best_ms(lambda: _round_trip(found), rounds)
    size = len(pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL)) / 1e6
    return (f"{engine.task}, {len(jobs)} inputs: sent {there:.1f} ms ({size:.2f} MB; made, written and read), back "
            f"{back:.1f} ms, {(there + back) / len(jobs) * 1000:.1f} µs an input; the whole prepared batch "
            f"{whole:.1f} ms ({len(pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)) / 1e6:.2f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=512, help="inputs (fill-mask) and pairs (QA) a batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", type=Path, default=Path(".distilq/bench-models"))
    args = parser.parse_args()
    from tests.tiny_model import build as build_tiny

    torch.set_num_threads(1)
    models = build_tiny(args.models / "tiny")
    runtime = Runtime(torch.device("cpu"), torch.float32)
    workload = make_workload(args.inputs, args.inputs)
    fill_mask = FillMaskEngine(str(models["fill-mask"]), runtime, args.inputs, 1 << 20)
    encodings = fill_mask.backend.encode_batch_fast(workload.fill_mask)
    print(measure(fill_mask, [JobPayload({"input_string": [text]}, {"top_k": TOP_K},
                                         pack_token_ids(fill_mask.fingerprint, [encoding.ids]))
                              for text, encoding in zip(workload.fill_mask, encodings, strict=True)], args.rounds))
    qa = QuestionAnsweringEngine(str(models["question-answering"]), runtime, args.inputs, 1 << 20)
    texts = qa.backend.encode_batch_fast([text for pair in workload.qa for text in pair], add_special_tokens=False)
    params = QuestionAnsweringParameters().model_dump()
    print(measure(qa, [JobPayload({"question": [question], "context": [context]}, params,
                                  pack_qa_pairs(qa.fingerprint, [texts[2 * i]], [texts[2 * i + 1]]))
                       for i, (question, context) in enumerate(workload.qa)], args.rounds))


if __name__ == "__main__":
    main()
