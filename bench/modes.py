"""Modes (a), (b) and (c): transformers' pipeline once per job, the pipeline with `batch_size`, and distilq's
engine alone fed batches as the batcher claims them under saturation. All on the runtime's device and dtype."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer, pipeline

from bench.flops import Shape, engine_flops, padded_passes_flops
from bench.measure import Result
from contract.requests import QuestionAnsweringParameters
from contract.tokens import pack_qa_pairs, pack_token_ids
from worker.engine import JobPayload
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.question_answering import QuestionAnsweringEngine
from worker.engine.runtime import Runtime

TOP_K = 5


def _lengths(model_dir: Path, texts: list[str]) -> list[int]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]


def grouped(lengths: list[int], size: int) -> list[tuple[int, int]]:
    """(rows, longest) of each batch of `size` in arrival order: how a pipeline with `batch_size` pads."""
    return [(len(lengths[i : i + size]), max(lengths[i : i + size])) for i in range(0, len(lengths), size)]


def fill_mask_pipeline(model_dir: Path, texts: list[str], batch_size: int | None, runtime: Runtime) -> Result:
    pipe = pipeline("fill-mask", model=str(model_dir), device=runtime.device, dtype=runtime.dtype)
    pipe(texts[0], top_k=TOP_K)  # warm-up
    lengths = _lengths(model_dir, texts)
    latencies: list[float] = []
    size = batch_size or 1
    started = time.perf_counter()
    for i in range(0, len(texts), size):
        chunk = texts[i : i + size]
        t0 = time.perf_counter()
        pipe(chunk if batch_size else chunk[0], top_k=TOP_K, **({"batch_size": batch_size} if batch_size else {}))
        latencies += [time.perf_counter() - t0] * len(chunk)
    wall = time.perf_counter() - started
    passes = grouped(lengths, size)
    mode, label = ("b", f"pipeline, batch_size={batch_size}") if batch_size else ("a", "pipeline, one job per call")
    result = Result(mode, label, len(texts), sum(lengths), sum(rows * longest for rows, longest in passes), wall,
                    latencies)
    shape = Shape.of(AutoConfig.from_pretrained(model_dir))
    result.flops = padded_passes_flops(shape, passes, shape.mlm_head_per_token)  # the head at every token
    return result


def _engine_mode(engine: FillMaskEngine | QuestionAnsweringEngine, jobs: list[JobPayload], batch: int, label: str,
                 head_per_token: int, kept: bool, overlap: bool = True) -> Result:
    batches = [jobs[i: i + batch] for i in range(0, len(jobs), batch)]
    # Warm-up: a whole call of other passes' shapes (every other input of the first two calls). On a GPU the first
    # calls load their kernels, seconds a call (session 29's H200 run: 1.3 s passes among 70 ms ones, 1,855 inputs/s
    # from the texts against 14,528 from the same shapes again); a worker pays that in its own warm-up.
    engine.run(jobs[: 2 * batch: 2])
    engine.prepare(batches[0])  # ... which leaves torch's threads spinning for a while after its forward pass
    engine.phases.reset()
    # Each stage over every batch in turn, as a GPU host runs them (the batcher's claimer thread tokenizes, its
    # writer thread finishes, neither sharing the cores with a forward pass): on a CPU, a tokenizer call right after
    # a pass takes 2-3x as long (torch's threads still spinning, caches cold), which is not the host's own cost.
    times = [0.0] * len(batches)
    started = time.perf_counter()
    prepared = []
    for i, jobs_of in enumerate(batches):
        t0 = time.perf_counter()
        prepared.append(engine.prepare(jobs_of))
        times[i] += time.perf_counter() - t0
    inferred = []
    for i, (jobs_of, ready) in enumerate(zip(batches, prepared, strict=True)):
        t0 = time.perf_counter()
        inferred.append(engine.infer(jobs_of, ready))
        times[i] += time.perf_counter() - t0
    outputs = []
    for i, (jobs_of, done) in enumerate(zip(batches, inferred, strict=True)):
        t0 = time.perf_counter()
        with engine.phases.timed("postprocess"):
            outputs.append(engine.finish(jobs_of, done))
        times[i] += time.perf_counter() - t0
    wall = time.perf_counter() - started
    latencies = [seconds for seconds, jobs_of in zip(times, batches, strict=True) for _ in jobs_of]
    seconds, counts = engine.phases.reset()
    # The linear layers compute the real tokens only (packed); attention's padding is reported in a note.
    result = Result("c", label, len(jobs), counts["real_tokens"], counts["real_tokens"], wall, latencies, seconds)
    result.notes.append(f"{counts['rows'] / len(jobs) * batch:.1f} rows per {batch} jobs; attention computed "
                        f"{counts['attention_slots'] / counts['real_tokens']:.2f} slots per real token")
    result.flops = engine_flops(Shape.of(engine.model.config), counts, head_per_token, kept)
    if overlap:
        overlapped_wall, result.overlapped_equal = _overlapped(engine, batches, outputs)
        engine.phases.reset()
        result.overlapped_per_s = len(jobs) / overlapped_wall
        result.notes.append(f"the stages overlapped as the worker runs them: {_overlap(result)}")
    return result


def _overlapped(engine: FillMaskEngine | QuestionAnsweringEngine, batches: list[list[JobPayload]],
                expected: list[list[list[Any]]]) -> tuple[float, bool]:
    """The same batches with the engine's stages overlapped, as the batcher runs them without a device process: the
    next batch prepared in one thread (the claimer's) and the one before finished in another (the writer's) while
    this one's forward pass runs in the caller's. On a GPU the host's stages and the device's then take about the
    longest of their times rather than their sum (the engine alone ran its stages one after another: session 30's
    H200 measured 8 ms a 512-input call on the device against 15–25 of host work around it). The wall seconds, and
    whether every output equals `expected` (the stages run in turn)."""
    with ThreadPoolExecutor(1, "prepare") as preparer, ThreadPoolExecutor(1, "finish") as finisher:
        started = time.perf_counter()
        ready = preparer.submit(engine.prepare, batches[0])
        finished = []
        for i, jobs_of in enumerate(batches):
            prepared = ready.result()
            if i + 1 < len(batches):
                ready = preparer.submit(engine.prepare, batches[i + 1])
            finished.append(finisher.submit(engine.finish, jobs_of, engine.infer(jobs_of, prepared)))
        outputs = [done.result() for done in finished]
        wall = time.perf_counter() - started
    return wall, outputs == expected


def fill_mask_engine(model_dir: Path, texts: list[str], batch: int, max_tokens: int, runtime: Runtime) -> Result:
    """(c) from the texts, as the pipeline is given them; and in a note, from the token ids the API's check stores
    with each job (made beforehand, as the API makes them: the service's own path)."""
    engine = FillMaskEngine(str(model_dir), runtime, batch, max_tokens)
    jobs = [JobPayload({"input_string": [t]}, {"top_k": TOP_K}) for t in texts]
    shape = Shape.of(engine.model.config)
    result = _engine_mode(engine, jobs, batch, f"distilq engine, {batch} jobs per batch", shape.mlm_head_per_token,
                          kept=True)
    given = [JobPayload(job.input, job.parameters, pack_token_ids(engine.fingerprint, [encoding.ids]))
             for job, encoding in zip(jobs, engine.backend.encode_batch_fast(texts), strict=True)]
    _note_from_stored(result, _engine_mode(engine, given, batch, "", shape.mlm_head_per_token, kept=True))
    return result


QA_PARAMS: dict[str, Any] = QuestionAnsweringParameters().model_dump()


def qa_engine(model_dir: Path, pairs: list[tuple[str, str]], batch: int, max_tokens: int, runtime: Runtime,
              label: str | None = None, mode: str = "c") -> Result:
    """(c) from the texts; and, when it is (c), in a note, from what the API's check stores with each job."""
    engine = QuestionAnsweringEngine(str(model_dir), runtime, batch, max_tokens)
    jobs = [JobPayload({"question": [q], "context": [c]}, QA_PARAMS) for q, c in pairs]
    shape = Shape.of(engine.model.config)
    result = _engine_mode(engine, jobs, batch, label or f"distilq engine, {batch} jobs per batch",
                          shape.qa_head_per_token, kept=False, overlap=mode == "c")
    result.mode = mode
    if mode == "c":
        encodings = engine.backend.encode_batch([text for pair in pairs for text in pair], add_special_tokens=False)
        given = [JobPayload(job.input, job.parameters,
                            pack_qa_pairs(engine.fingerprint, [encodings[2 * i]], [encodings[2 * i + 1]]))
                 for i, job in enumerate(jobs)]
        _note_from_stored(result, _engine_mode(engine, given, batch, "", shape.qa_head_per_token, kept=False))
    return result


def _note_from_stored(result: Result, stored: Result) -> None:
    tokenize_us = stored.phases_s.get("tokenize", 0.0) / stored.sequences * 1e6
    result.notes.append(
        f"given what the API's check stores with each job (the service's path, `contract.tokens`): "
        f"{stored.sequences_per_s:.1f} inputs/s; outside the model {stored.outside_model_us:.0f} µs per input, "
        f"the host's own {stored.host_us:.0f} (of which reading what was stored {tokenize_us:.0f})"
        + (f"; with the stages overlapped {_overlap(stored)}" if stored.overlapped_per_s else ""))


def _overlap(result: Result) -> str:
    """The overlapped run's rate, against the stages in turn, and whether its outputs were theirs."""
    assert result.overlapped_per_s is not None
    return (f"{result.overlapped_per_s:.1f} inputs/s ({result.overlapped_per_s / result.sequences_per_s:.2f}x one "
            f"after another), outputs {'equal' if result.overlapped_equal else 'NOT equal'} to theirs")
