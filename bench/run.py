"""`make bench` (`python -m bench.run`): builds the base-shaped checkpoint, runs modes (a)–(d) for fill-mask and
QA in one process run, prints the table and the ratios, and writes them as JSON."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import torch
from transformers import AutoConfig

from bench.batch_file import run_batch_file
from bench.checkpoint import build
from bench.e2e import API_PROCESSES, run_end_to_end
from bench.flops import Peak, Shape, padded_passes_flops, peak_for
from bench.measure import Result
from bench.modes import QA_PARAMS, fill_mask_engine, fill_mask_pipeline, grouped, qa_engine
from bench.precision import bare_encoder, fill_mask_agreement, qa_agreement
from bench.tf4 import run_script
from bench.workload import english_words, make_english_workload, make_workload
from worker.engine.runtime import Runtime, configure_threads, resolve_runtime

#: Inputs (fill-mask) and pairs (QA) mode (h) compares, at most: the reference figures' 400 and 80 fit.
AGREEMENT_INPUTS = 400

#: The QA pipeline's modes (a) and (b), run in transformers 4.57.6's venv.
TF4_QA = "tf4_qa.py"


def _qa_reference(python: str | None, model: Path, pairs: list[tuple[str, str]], batch: int,
                  engine_tokens: tuple[int, int], runtime: Runtime) -> list[Result]:
    """(a) and (b) for QA: the 4.57.6 pipeline in its own venv when given, else distilq's per-request path."""
    if python:
        data = run_script(python, TF4_QA, {"model": str(model), "pairs": pairs, "batch_size": batch,
                                           "device": str(runtime.device),
                                           "dtype": str(runtime.dtype).removeprefix("torch.")})
        lengths = data["chunk_lengths"]
        real = sum(lengths)
        passes_b = grouped(lengths, batch)
        padded_b = sum(rows * longest for rows, longest in passes_b)
        version = data["transformers"]
        a = Result("a", f"transformers {version} QA pipeline, one job per call", len(pairs), real, real,
                   data["a"]["wall_s"], data["a"]["latencies_s"])
        b = Result("b", f"transformers {version} QA pipeline, batch_size={batch}", len(pairs), real, padded_b,
                   data["b"]["wall_s"], data["b"]["latencies_s"])
        shape = Shape.of(AutoConfig.from_pretrained(model))
        a.flops = padded_passes_flops(shape, [(1, n) for n in lengths], shape.qa_head_per_token)
        b.flops = padded_passes_flops(shape, passes_b, shape.qa_head_per_token)
        return [a, b]
    note = "no transformers 4.57.6 venv given: (a) and (b) are distilq's engine one request per call"
    a = qa_engine(model, pairs, 1, engine_tokens[0], runtime, "distilq engine, one request per call, 1 row per pass",
                  "a")
    b = qa_engine(model, pairs, 1, engine_tokens[1], runtime, "distilq engine, one request per call, chunks batched",
                  "b")
    a.notes.append(note)
    return [a, b]


def _table(task: str, results: list[Result], peak: Peak) -> str:
    lines = [f"### {task}", "",
             "| mode | what | seq/s | real tokens/s | padding | GFLOP/s | % of peak | p50 ms | p95 ms | p99 ms |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        tokens = f"{r.tokens_per_s:.0f}" if r.real_tokens else "—"
        padding = f"{r.padding_ratio:.2f}" if r.real_tokens else "—"
        rate = r.flops_per_s
        gflops = f"{rate / 1e9:.1f}" if rate is not None else "—"
        share = f"{100 * rate / peak.flops_per_s:.0f}" if rate is not None else "—"
        lines.append(f"| ({r.mode}) | {r.label} | {r.sequences_per_s:.2f} | {tokens} | {padding} | {gflops} | "
                     f"{share} | {r.latency_ms(50):.0f} | {r.latency_ms(95):.0f} | {r.latency_ms(99):.0f} |")
    by = {r.mode: r for r in results}
    ratios = {f"{x}/{y}": by[x].sequences_per_s / by[y].sequences_per_s
              for x, y in (("c", "a"), ("c", "b"), ("d", "c"), ("d", "a"), ("d", "b"), ("e", "c"), ("e", "d"),
                           ("f", "e"), ("c", "g"), ("d", "g"))
              if x in by and y in by}
    if ratios:
        lines += ["", "ratios (sequences/s): " + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items())]
    c = by.get("c")
    if c is not None and c.flops and "a" in by and "b" in by:
        # The roofline: the engine's own work per job, done at the peak rate.
        ceiling = peak.flops_per_s / (c.flops / c.sequences)
        lines.append(f"(c) does {c.flops / c.sequences / 1e9:.2f} GFLOP per job; at the peak ({peak.label}) that is at "
                     f"most {ceiling:.2f} seq/s: c/a ≤ {ceiling / by['a'].sequences_per_s:.2f}, "
                     f"c/b ≤ {ceiling / by['b'].sequences_per_s:.2f}")
    for r in results:
        if r.phases_s:
            total = sum(r.phases_s.values())
            lines.append(f"({r.mode}) engine time: " + ", ".join(
                f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in r.phases_s.items()))
            per_input = {k: v / r.sequences * 1e6 for k, v in r.phases_s.items() if k not in ("forward", "head")}
            other = (r.outside_model_us or 0.0) - sum(per_input.values())
            lines.append(f"({r.mode}) CPU work outside the forward passes and the head's product: "
                         f"{r.outside_model_us:.0f} µs per input (" + ", ".join(
                             f"{k} {v:.0f}" for k, v in [*per_input.items(), ("packing, copies, Python", other)])
                         + f"); without select's kernels (a GPU runs those on the device), the host's own: "
                           f"{r.host_us:.0f} µs per input")
        lines += [f"({r.mode}) {note}" for note in r.notes]
    return "\n".join(lines)


CHECKPOINTS = {"base": "distilbert-base shape", "tiny": "the tiny test checkpoint",
               "tiny-lexicon": "the tiny shape with the bench's tokenizer"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--fill-mask-jobs", type=int, default=256)
    parser.add_argument("--qa-jobs", type=int, default=48)
    parser.add_argument("--batch", type=int, default=32, help="pipeline batch_size and DISTILQ_MAX_BATCH_SIZE")
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tf4-python", default=os.environ.get("DISTILQ_BENCH_TF4_PYTHON"),
                        help="python of a venv with transformers==4.57.6, for QA modes (a) and (b)")
    parser.add_argument("--models", type=Path, default=Path(".distilq/bench-models"))
    parser.add_argument("--output", type=Path, default=Path(".distilq/bench-results.json"))
    parser.add_argument("--tasks", default="fill-mask,question-answering")
    parser.add_argument("--modes", default="abcd", help="which of the modes (a)-(h) to run, e.g. c for the engine's "
                                                         "CPU work alone; e: the fill-mask inputs as one batch file; "
                                                         "f (with e): the same texts as a fill-mask evaluation; g: the "
                                                         "bare encoder, the ceiling; h: the outputs at --dtype against "
                                                         "float32's")
    parser.add_argument("--device", default=os.environ.get("DISTILQ_DEVICE", "auto"), help="as DISTILQ_DEVICE")
    parser.add_argument("--dtype", default=os.environ.get("DISTILQ_DTYPE", "auto"), help="as DISTILQ_DTYPE")
    parser.add_argument("--attention", default=os.environ.get("DISTILQ_ATTENTION", "auto"),
                        help="as DISTILQ_ATTENTION")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense peak, for a card bench/flops.py lacks")
    parser.add_argument("--checkpoint", choices=tuple(CHECKPOINTS), default="base",
                        help="base: distilbert-base's shape; tiny: the test suite's tiny model, whose forward pass is "
                             "small (as on a GPU), so that what is left is mostly the service's own cost; "
                             "tiny-lexicon: the tiny model's shape with base's tokenizer (the workload's words whole "
                             "or in a few pieces, as a real vocabulary holds its language's words, where the test "
                             "suite's spells the bench's made-up words letter by letter)")
    parser.add_argument("--workload", choices=("synthetic", "english"), default="synthetic",
                        help="synthetic: words of a made-up lexicon (the figures tracked since the first bench); "
                             "english: the same shapes cut from real English prose (bench/english.txt)")
    parser.add_argument("--inputs-per-job", type=int, default=1, help="inputs in each job of mode (d)")
    parser.add_argument("--workers", type=int, default=1, help="inference workers in modes (d) and (e) (on a GPU they "
                        "share the device, each with its own device process)")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes the clients of mode (d) run in (one holds ~1,500 jobs/s at most: its threads "
                             "share one interpreter lock)")
    parser.add_argument("--database-url", help="mode (d) on this (empty, migrated by the bench) database rather than "
                                               "SQLite, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--api-workers", type=int, default=API_PROCESSES,
                        help=f"API processes of mode (d) (default {API_PROCESSES}, as `distilq api`'s)")
    args = parser.parse_args(argv)
    if not 1 <= args.client_processes <= args.concurrency:
        parser.error("--client-processes must be between 1 and --concurrency")

    # The worker's thread count (DISTILQ_TORCH_THREADS) for the modes in this process too, so that (c) is the engine
    # (d) and (e) run, and (a)/(b) the pipeline beside it on the same footing.
    runtime = resolve_runtime(args.device, args.dtype, args.attention)
    configure_threads(int(os.environ.get("DISTILQ_TORCH_THREADS") or 0) or None, runtime)
    if args.checkpoint == "tiny":
        from tests.tiny_model import build as build_tiny

        models = build_tiny(args.models / "tiny")
    else:
        shape = "tiny" if args.checkpoint == "tiny-lexicon" else "base"
        # The base checkpoint's directory is the models folder itself, as the first benches wrote it.
        root = args.models / args.checkpoint if shape == "tiny" else args.models
        if args.workload == "english":
            words = english_words()
            # Named by its words: a checkpoint built from another english.txt is not taken for this one.
            models = build(root / f"english-{hashlib.sha256(' '.join(words).encode()).hexdigest()[:8]}", words, shape)
        else:
            models = build(root, shape=shape)
    workload = (make_english_workload if args.workload == "english" else make_workload)(args.fill_mask_jobs,
                                                                                         args.qa_jobs)
    # One key stands for every client: the per-key limits must not be what is measured.
    env = {"DISTILQ_MAX_BATCH_SIZE": str(args.batch), "DISTILQ_MAX_BATCH_TOKENS": str(args.max_batch_tokens),
           "DISTILQ_DEVICE": str(runtime.device), "DISTILQ_DTYPE": str(runtime.dtype).removeprefix("torch."),
           "DISTILQ_ATTENTION": runtime.attention_choice,
           "HF_HUB_OFFLINE": "1", "DISTILQ_RATE_LIMIT": "1000000/minute", "DISTILQ_MAX_JOBS_IN_FLIGHT": "1000000",
           "DISTILQ_MAX_WAITING_PER_KEY": str(args.concurrency),
           **({"DISTILQ_DATABASE_URL": args.database_url} if args.database_url else {})}
    per_job = args.inputs_per_job
    peak, measured = peak_for(runtime.device, runtime.dtype, args.peak_tflops)
    print(f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {runtime.device}, "
          f"{str(runtime.dtype).removeprefix('torch.')}, {runtime.attention} attention; model: "
          f"{CHECKPOINTS[args.checkpoint]}, random weights; "
          f"workload: {args.workload}; (d): {per_job} input(s) per job\n{measured}")
    report: dict[str, object] = {"peak": {"flops_per_s": peak.flops_per_s, "what": peak.label}}
    tasks = args.tasks.split(",")
    if "fill-mask" in tasks:
        texts = workload.fill_mask
        results = []
        if "a" in args.modes:
            results.append(fill_mask_pipeline(models["fill-mask"], texts, None, runtime))
        if "b" in args.modes:
            results.append(fill_mask_pipeline(models["fill-mask"], texts, args.batch, runtime))
        if "c" in args.modes:
            results.append(fill_mask_engine(models["fill-mask"], texts, args.batch, args.max_batch_tokens, runtime))
        if "g" in args.modes:
            results.append(bare_encoder(models["fill-mask"], runtime, args.batch, len(texts)))
        if "h" in args.modes:
            agreement = fill_mask_agreement(models["fill-mask"], texts[:AGREEMENT_INPUTS], runtime, args.batch,
                                            args.max_batch_tokens)
            print(f"(h) fill-mask at {agreement['dtype']} against the float32 pipeline: top-5 lists "
                  f"{agreement['top5_lists_equal']}/{agreement['inputs']} equal, top-1 "
                  f"{agreement['top1_equal']}/{agreement['inputs']}", flush=True)
            report["fill-mask agreement"] = agreement
        if "e" in args.modes:
            results += run_batch_file(models, texts, env, evaluate="f" in args.modes, workers=args.workers)
        if "d" in args.modes:
            d, rss = run_end_to_end(models, "fill-mask",
                                    [{"inputs": {"input_string": texts[i: i + per_job]}, "parameters": {"top_k": 5}}
                                     for i in range(0, len(texts), per_job)], args.concurrency, env,
                                    args.api_workers, args.workers, args.client_processes)
            d.notes.append(f"worker RSS after the run: {rss:.0f} MB")
            results.append(d)
        if "a" in args.modes and ("d" in args.modes or "e" in args.modes):
            at = [r.mode for r in results].index("a")
            results[at] = results[at].bracketed(fill_mask_pipeline(models["fill-mask"], texts, None, runtime),
                                                "the end-to-end modes")
        print(_table("fill-mask", results, peak), flush=True)
        report["fill-mask"] = [r.as_dict() for r in results]
    if "question-answering" in tasks:
        pairs = workload.qa
        results = []
        if "a" in args.modes or "b" in args.modes:
            results += [r for r in _qa_reference(args.tf4_python, models["question-answering"], pairs, args.batch,
                                                 (384, args.max_batch_tokens), runtime) if r.mode in args.modes]
        if "c" in args.modes:
            results.append(qa_engine(models["question-answering"], pairs, args.batch, args.max_batch_tokens, runtime))
        if "h" in args.modes:
            agreement = qa_agreement(models["question-answering"], pairs[:AGREEMENT_INPUTS], runtime, args.batch,
                                     args.max_batch_tokens)
            print(f"(h) question answering at {agreement['dtype']} against float32 (the engine, equal to the 4.57.6 "
                  f"pipeline): best spans {agreement['best_span_equal']}/{agreement['pairs']} equal", flush=True)
            report["question-answering agreement"] = agreement
        if "d" in args.modes:
            bodies = [{"inputs": {"question": [q for q, _ in pairs[i: i + per_job]],
                                  "context": [c for _, c in pairs[i: i + per_job]]}, "parameters": QA_PARAMS}
                      for i in range(0, len(pairs), per_job)]
            d, rss = run_end_to_end(models, "question-answering", bodies, args.concurrency, env, args.api_workers,
                                    args.workers, args.client_processes)
            d.notes.append(f"worker RSS after the run: {rss:.0f} MB")
            results.append(d)
        print(_table("question-answering", results, peak), flush=True)
        report["question-answering"] = [r.as_dict() for r in results]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
