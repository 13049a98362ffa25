"""Modes (g) and (h): the ceiling and the precision.

(g) the bare encoder — `model.distilbert(input_ids)`, no tokenizer, no head, no outputs — on full batches of 48
tokens, the shape of the reference figure (89,500 sequences/s on an H100 in fp16): what the engine's passes could
run at if nothing else took time.

(h) how far the runtime's dtype moves the outputs from float32's: fill-mask's top-5 lists and top-1 tokens against
transformers' pipeline in float32, QA's best span against distilq's engine in float32 (which equals transformers
4.57.6's pipeline: the equality tests hold it to the fixtures), on the same device. The speed of each dtype is
mode (c) run with `--dtype`; this is the other half of choosing it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, pipeline

from bench.flops import Shape, padded_passes_flops
from bench.measure import Result
from bench.modes import QA_PARAMS, TOP_K
from worker.engine import JobPayload
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.question_answering import QuestionAnsweringEngine
from worker.engine.runtime import Runtime, load_model

#: Tokens per sequence of mode (g), as in the reference figure.
CEILING_TOKENS = 48


def synchronize(runtime: Runtime) -> None:
    """Waits for the device's queued work (on a GPU; nothing to wait for on the CPU)."""
    if runtime.is_cuda:
        torch.cuda.synchronize(runtime.device)


@torch.inference_mode()
def bare_encoder(model_dir: Path, runtime: Runtime, batch: int, sequences: int) -> Result:
    """(g): `sequences` (rounded up to whole batches) of CEILING_TOKENS random tokens through the encoder alone."""
    model = load_model(AutoModelForMaskedLM, str(model_dir), runtime)
    generator = torch.Generator().manual_seed(0)
    vocabulary = model.config.vocab_size
    ids = torch.randint(vocabulary // 10, vocabulary, (batch, CEILING_TOKENS), generator=generator)
    ids = ids.to(runtime.device)
    model.distilbert(input_ids=ids)  # warm-up
    synchronize(runtime)
    passes = max(1, -(-sequences // batch))
    latencies = []
    started = time.perf_counter()
    for _ in range(passes):
        t0 = time.perf_counter()
        model.distilbert(input_ids=ids)
        synchronize(runtime)
        latencies += [time.perf_counter() - t0] * batch
    wall = time.perf_counter() - started
    tokens = passes * batch * CEILING_TOKENS
    result = Result("g", f"bare encoder, model.distilbert(input_ids), {batch} × {CEILING_TOKENS} tokens",
                    passes * batch, tokens, tokens, wall, latencies)
    result.flops = padded_passes_flops(Shape.of(model.config), [(batch, CEILING_TOKENS)] * passes, 0)
    return result


def _outputs(engine: FillMaskEngine | QuestionAnsweringEngine, jobs: list[JobPayload], batch: int) -> list[Any]:
    """The output of each one-input job, the engine taking `batch` jobs a call."""
    return [output[0] for start in range(0, len(jobs), batch) for output in engine.run(jobs[start: start + batch])]


def fill_mask_agreement(model_dir: Path, texts: list[str], runtime: Runtime, batch: int,
                        max_tokens: int) -> dict[str, Any]:
    """(h), fill-mask: how many of the engine's top-5 lists (tokens in order) and top-1 tokens at the runtime's dtype
    equal the float32 pipeline's."""
    engine = FillMaskEngine(str(model_dir), runtime, batch, max_tokens)
    outputs = _outputs(engine, [JobPayload({"input_string": [text]}, {"top_k": TOP_K}) for text in texts], batch)
    reference = pipeline("fill-mask", model=str(model_dir), device=runtime.device, dtype=torch.float32)
    expected = [reference(text, top_k=TOP_K) for text in texts]
    lists = [([c["token"] for c in got], [c["token"] for c in want]) for got, want in zip(outputs, expected,
                                                                                       strict=True)]
    return {"dtype": str(runtime.dtype).removeprefix("torch."), "inputs": len(texts),
            "top5_lists_equal": sum(got == want for got, want in lists),
            "top1_equal": sum(got[0] == want[0] for got, want in lists)}


def qa_agreement(model_dir: Path, pairs: list[tuple[str, str]], runtime: Runtime, batch: int,
                 max_tokens: int) -> dict[str, Any]:
    """(h), QA: how many best answers' (start, end) at the runtime's dtype equal the float32 engine's."""
    jobs = [JobPayload({"question": [q], "context": [c]}, QA_PARAMS) for q, c in pairs]

    def best(engine_runtime: Runtime) -> list[tuple[int, int]]:
        engine = QuestionAnsweringEngine(str(model_dir), engine_runtime, batch, max_tokens)
        return [(answer["start"], answer["end"]) for answer in _outputs(engine, jobs, batch)]

    got, want = best(runtime), best(replace(runtime, dtype=torch.float32))
    return {"dtype": str(runtime.dtype).removeprefix("torch."), "pairs": len(pairs),
            "best_span_equal": sum(a == b for a, b in zip(got, want, strict=True))}
