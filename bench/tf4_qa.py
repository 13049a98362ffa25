# mypy: ignore-errors
# (It runs against transformers 4.57.6 in its own venv; this repository type-checks against 5.x.)
"""QA modes (a) and (b) with transformers 4.57.6's QuestionAnsweringPipeline. Runs in that version's own
throwaway venv (transformers 5 removed the pipeline): imports nothing of distilq.

    python bench/tf4_qa.py REQUEST.json  → JSON results on stdout
"""

import json
import sys
import time

import transformers
from transformers import AutoTokenizer, pipeline


def main(path: str) -> None:
    request = json.load(open(path))
    model, pairs, batch_size = request["model"], request["pairs"], request["batch_size"]
    import torch

    pipe = pipeline("question-answering", model=model, device=request.get("device", "cpu"),
                    torch_dtype=getattr(torch, request.get("dtype", "float32")))
    tokenizer = AutoTokenizer.from_pretrained(model)
    chunk_lengths = []
    for question, context in pairs:
        enc = tokenizer(question, context, truncation="only_second", max_length=384, stride=128,
                        return_overflowing_tokens=True)
        chunk_lengths += [len(ids) for ids in enc["input_ids"]]
    pipe(question=pairs[0][0], context=pairs[0][1])  # warm-up
    results = {"transformers": transformers.__version__, "chunk_lengths": chunk_lengths}
    for mode, size in (("a", 1), ("b", batch_size)):
        latencies = []
        started = time.perf_counter()
        for i in range(0, len(pairs), size):
            chunk = pairs[i : i + size]
            t0 = time.perf_counter()
            if mode == "a":
                pipe(question=chunk[0][0], context=chunk[0][1])
            else:
                pipe(question=[q for q, _ in chunk], context=[c for _, c in chunk], batch_size=size)
            latencies += [time.perf_counter() - t0] * len(chunk)
        results[mode] = {"wall_s": time.perf_counter() - started, "latencies_s": latencies}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
