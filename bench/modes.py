"""Modes (a), (b) and (c): transformers' pipeline once per job, the pipeline with `batch_size`, and distilq's
engine alone fed batches as the batcher claims them under saturation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, pipeline

from bench.measure import Result
from models.schemas import QuestionAnsweringParameters
from worker.engine import Engine, JobPayload
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.question_answering import QuestionAnsweringEngine
from worker.engine.runtime import resolve_runtime

TOP_K = 5


def _lengths(model_dir: Path, texts: list[str]) -> list[int]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]


def fill_mask_pipeline(model_dir: Path, texts: list[str], batch_size: int | None) -> Result:
    pipe = pipeline("fill-mask", model=str(model_dir), device="cpu")
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
    padded = sum(max(lengths[i : i + size]) * len(lengths[i : i + size]) for i in range(0, len(lengths), size))
    mode, label = ("b", f"pipeline, batch_size={batch_size}") if batch_size else ("a", "pipeline, one job per call")
    return Result(mode, label, len(texts), sum(lengths), padded, wall, latencies)


def _engine_mode(engine: Engine, jobs: list[JobPayload], batch: int, label: str) -> Result:
    engine.run(jobs[:1])  # warm-up
    engine.phases.reset()  # type: ignore[attr-defined]
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(0, len(jobs), batch):
        t0 = time.perf_counter()
        engine.run(jobs[i : i + batch])
        latencies += [time.perf_counter() - t0] * len(jobs[i : i + batch])
    wall = time.perf_counter() - started
    seconds, counts = engine.phases.reset()  # type: ignore[attr-defined]
    # The linear layers compute the real tokens only (packed); attention's padding is reported in a note.
    result = Result("c", label, len(jobs), counts["real_tokens"], counts["real_tokens"], wall, latencies, seconds)
    result.notes.append(f"{counts['rows'] / len(jobs) * batch:.1f} rows per {batch} jobs; attention computed "
                        f"{counts['attention_slots'] / counts['real_tokens']:.2f} slots per real token")
    return result


def fill_mask_engine(model_dir: Path, texts: list[str], batch: int, max_tokens: int) -> Result:
    engine = FillMaskEngine(str(model_dir), resolve_runtime("cpu"), batch, max_tokens)
    jobs = [JobPayload({"input_string": [t]}, {"top_k": TOP_K}) for t in texts]
    return _engine_mode(engine, jobs, batch, f"distilq engine, {batch} jobs per batch")


QA_PARAMS: dict[str, Any] = QuestionAnsweringParameters().model_dump()


def qa_engine(model_dir: Path, pairs: list[tuple[str, str]], batch: int, max_tokens: int,
              label: str | None = None, mode: str = "c") -> Result:
    engine = QuestionAnsweringEngine(str(model_dir), resolve_runtime("cpu"), batch, max_tokens)
    jobs = [JobPayload({"question": [q], "context": [c]}, QA_PARAMS) for q, c in pairs]
    result = _engine_mode(engine, jobs, batch, label or f"distilq engine, {batch} jobs per batch")
    result.mode = mode
    return result
