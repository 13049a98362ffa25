"""Where a GPU engine call's time goes: first calls, calls of new shapes, calls of shapes seen before, and a
profile of the device stage (`infer`) with the device's kernels and the CUDA runtime's calls.

The first H200 run (BENCHMARKS.md, session 29) left one question open: the engine's (c) ran 9,900 fill-mask
inputs/s from the texts but 14,500–28,600/s when the same batches ran again, and in the service every batch's
device stage took 45–70 ms, whatever its size (40 inputs or 500), where the bare encoder runs 512 × 48 tokens in
6 ms. A cost paid once per kernel (lazy loading: `CUDA_MODULE_LOADING`), once per new shape, or once per call
(pinned host memory, synchronisation, launches) each tells a different story; this bench separates them:

- **first**: the first calls after the engine's own `warm_up`, as a worker's first batches run;
- **new**: later calls of inputs never seen (new lengths, new pass shapes), as a service's batches are;
- **again**: the same calls once more (the same shapes): what the second run of (c) measured;
- **device process**: the new calls again through a device process of their own, as a CUDA worker runs them
  (`worker/engine/device_process.py`): the call's wall here and the device process's own time;
- **profile**: `torch.profiler` over a few new calls: the kernels' device time against the call's wall time,
  kernel launches per call, the CUDA runtime calls that took the host's time (allocation, pinning,
  synchronisation), the busiest kernels and host operators; and the bare encoder's call beside it.

    python -m bench.engine_profile --device cuda --dtype float16 --batch 512 --max-batch-tokens 131072

On a CPU it runs as a check of the command (no device activity to profile).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForMaskedLM

from bench.checkpoint import build
from bench.modes import QA_PARAMS, TOP_K
from bench.precision import CEILING_TOKENS, synchronize
from bench.workload import make_workload
from core.settings import Settings
from core.tasks import TASK_FILL_MASK
from worker.engine import JobPayload, StagedEngine
from worker.engine.device_process import DeviceProcess, RemoteEngine
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.question_answering import QuestionAnsweringEngine
from worker.engine.runtime import Runtime, configure_threads, load_model, resolve_runtime

#: Rows of each table of the profile.
TOP = 8


def timed_calls(engine: StagedEngine, batches: Sequence[list[JobPayload]],
                runtime: Runtime) -> list[tuple[float, float]]:
    """(wall, this process's CPU) milliseconds of each batch's device stage (`infer`, from its prepared batch;
    synchronised). CPU above wall is threads beside the one that launches: torch's intra-op threads spinning after
    a host operator, a synchronisation that spins."""
    times = []
    for jobs in batches:
        prepared = engine.prepare(jobs)
        synchronize(runtime)
        started, cpu = time.perf_counter(), time.process_time()
        engine.infer(jobs, prepared)
        synchronize(runtime)
        times.append(((time.perf_counter() - started) * 1e3, (time.process_time() - cpu) * 1e3))
    return times


def profiled(call: Callable[[], object], calls: int, runtime: Runtime) -> dict[str, Any]:
    """`call` run `calls` times under the profiler: per call, its wall and kernel time, its launches, and the
    busiest kernels, CUDA runtime calls and host operators."""
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if runtime.is_cuda else [])]
    with profile(activities=activities) as recorder:
        started = time.perf_counter()
        for _ in range(calls):
            call()
        synchronize(runtime)
        wall = time.perf_counter() - started
    events = recorder.key_averages()
    # Kernels and copies carry device time; the CUDA runtime's calls (cudaLaunchKernel, cudaHostAlloc, ...) the
    # host's.
    device = [e for e in events if e.self_device_time_total > 0 and not e.key.startswith("aten::")]
    runtime_calls = [e for e in events if e.key.startswith("cu") and e.self_device_time_total == 0]
    host_ops = [e for e in events if e.key.startswith("aten::")]
    launches = sum(e.count for e in runtime_calls if "LaunchKernel" in e.key)

    def per_call(us: float) -> float:
        return round(us / calls / 1e3, 3)

    return {
        "calls": calls,
        "wall_ms": round(wall / calls * 1e3, 3),
        "kernel_ms": per_call(sum(e.self_device_time_total for e in device)),
        "launches": round(launches / calls, 1),
        "kernels": [(e.key[:90], per_call(e.self_device_time_total), round(e.count / calls, 1))
                    for e in sorted(device, key=lambda e: -e.self_device_time_total)[:TOP]],
        "runtime_calls": [(e.key, per_call(e.cpu_time_total), round(e.count / calls, 1))
                          for e in sorted(runtime_calls, key=lambda e: -e.cpu_time_total)[:TOP]],
        "host_ops": [(e.key, per_call(e.self_cpu_time_total), round(e.count / calls, 1))
                     for e in sorted(host_ops, key=lambda e: -e.self_cpu_time_total)[:TOP]],
    }


def engine_profile(engine: FillMaskEngine | QuestionAnsweringEngine, jobs: list[JobPayload], batch: int, calls: int,
                   runtime: Runtime, through_device_process: bool = True) -> dict[str, Any]:
    """The first, new and again calls of `engine` over `jobs` in `batch`-sized calls, and a profile of new ones."""
    batches = [jobs[i: i + batch] for i in range(0, len(jobs), batch)]
    assert len(batches) >= 3 + calls + 3, "enough inputs for every phase: first, new (and again), profiled"
    engine.warm_up()
    first = [wall for wall, _ in timed_calls(engine, batches[:3], runtime)]
    new, new_cpu = zip(*timed_calls(engine, batches[3: 3 + calls], runtime), strict=True)
    again = [wall for wall, _ in timed_calls(engine, batches[3: 3 + calls], runtime)]
    fresh = iter(batches[3 + calls: 3 + calls + 3])
    ready = [(jobs_of, engine.prepare(jobs_of)) for jobs_of in fresh]
    queue = iter(ready)

    def call() -> None:
        jobs_of, prepared = next(queue)
        engine.infer(jobs_of, prepared)

    found = {"first_ms": [round(t, 1) for t in first], "new_ms": _spread(list(new)),
             "new_cpu_ms": _spread(list(new_cpu)),
             "again_ms": _spread(again), "profile": profiled(call, len(ready), runtime)}
    if through_device_process:
        found["device_process"] = remote_calls(engine, batches[3: 3 + calls], runtime)
    return found


def remote_calls(engine: FillMaskEngine | QuestionAnsweringEngine, batches: Sequence[list[JobPayload]],
                 runtime: Runtime) -> dict[str, Any]:
    """The same new calls through a device process, as a worker runs them on CUDA (`DISTILQ_DEVICE_PROCESS`): each
    call's wall here, and the device process's own time for it (from the batch's arrival to its reply)."""
    settings = Settings(device=str(runtime.device), dtype=str(runtime.dtype).removeprefix("torch."),
                        attention=runtime.attention, torch_threads=torch.get_num_threads(),
                        max_batch_size=engine.max_batch_size, max_batch_tokens=engine.max_batch_tokens)
    settings = settings.model_copy(update={"fill_mask_model" if engine.task == TASK_FILL_MASK else "qa_model":
                                           engine.model_id})
    device = DeviceProcess(settings, [engine.task])
    try:
        engine.phases.reset()
        walls = [wall for wall, _ in timed_calls(RemoteEngine(engine, device), batches, runtime)]
        there = engine.phases.reset()[0].get("device", 0.0) * 1e3 / len(batches)
    finally:
        device.close()
    return {"wall_ms": _spread(walls), "device_process_ms": round(there, 1)}


def bare_profile(model_dir: Path, runtime: Runtime, batch: int) -> dict[str, Any]:
    """The bare encoder (bench.precision's (g)) profiled the same way: the ceiling, call for call."""
    model = load_model(AutoModelForMaskedLM, str(model_dir), runtime)
    ids = torch.randint(model.config.vocab_size // 10, model.config.vocab_size, (batch, CEILING_TOKENS),
                        generator=torch.Generator().manual_seed(0)).to(runtime.device)
    with torch.inference_mode():
        model.distilbert(input_ids=ids)
        return profiled(lambda: model.distilbert(input_ids=ids), 3, runtime)


def _spread(times: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(times), 1), "min": round(min(times), 1), "max": round(max(times), 1)}


def _show(name: str, found: dict[str, Any]) -> list[str]:
    lines = [f"### {name}"]
    if "first_ms" in found:
        new, again = found["new_ms"], found["again_ms"]
        lines.append(f"device stage (infer) ms a call: first calls {found['first_ms']}; new inputs median "
                     f"{new['median']} (min {new['min']}, max {new['max']}; this process's CPU "
                     f"{found['new_cpu_ms']['median']} ms a call, all threads); the same again median "
                     f"{again['median']} (min {again['min']}, max {again['max']})")
    if "device_process" in found:
        remote, walls = found["device_process"], found["device_process"]["wall_ms"]
        lines.append(f"device stage through a device process, the same new inputs: median {walls['median']} ms a "
                     f"call (min {walls['min']}, max {walls['max']}), of which the device process's own "
                     f"{remote['device_process_ms']} ms")
    shown = found.get("profile", found)
    lines.append(f"profiled, a call: wall {shown['wall_ms']} ms, kernels {shown['kernel_ms']} ms on the device, "
                 f"{shown['launches']} launches")
    for title, rows in (("kernels (device ms a call, launches a call)", shown["kernels"]),
                        ("CUDA runtime calls (host ms a call, calls a call)", shown["runtime_calls"]),
                        ("host operators (self ms a call, calls a call)", shown["host_ops"])):
        if rows:
            lines += [f"| {title} | ms | count |", "| --- | ---: | ---: |",
                      *(f"| {key} | {ms} | {count} |" for key, ms, count in rows)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch", type=int, default=512, help="jobs a call, rows a pass")
    parser.add_argument("--max-batch-tokens", type=int, default=131072)
    parser.add_argument("--calls", type=int, default=8, help="calls of new inputs timed (and again)")
    parser.add_argument("--tasks", default="fill-mask,question-answering")
    parser.add_argument("--attention", default=os.environ.get("DISTILQ_ATTENTION", "auto"), help="as DISTILQ_ATTENTION")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (default: a worker's without "
                                                    "DISTILQ_TORCH_THREADS: one on CUDA, one per core on the CPU)")
    parser.add_argument("--models", type=Path, default=Path(".distilq/bench-models"))
    parser.add_argument("--device-process", action=argparse.BooleanOptionalAction, default=True,
                        help="time the new calls through a device process too")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    runtime = resolve_runtime(args.device, args.dtype, args.attention)
    configure_threads(args.threads, runtime)
    models = build(args.models)
    calls_in_all = args.calls + 6
    tasks = args.tasks.split(",")
    workload = make_workload(args.batch * calls_in_all if "fill-mask" in tasks else 0,
                             args.batch * calls_in_all if "question-answering" in tasks else 0, seed=7)
    print(f"torch {torch.__version__}, {runtime.device}, {str(runtime.dtype).removeprefix('torch.')}, "
          f"CUDA_MODULE_LOADING={os.environ.get('CUDA_MODULE_LOADING', '(default)')}, {args.batch} jobs a call, "
          f"{torch.get_num_threads()} intra-op threads, {runtime.attention} attention",
          flush=True)
    report: dict[str, Any] = {}
    if "fill-mask" in tasks:
        engine = FillMaskEngine(str(models["fill-mask"]), runtime, args.batch, args.max_batch_tokens)
        jobs = [JobPayload({"input_string": [text]}, {"top_k": TOP_K}) for text in workload.fill_mask]
        report["fill-mask"] = engine_profile(engine, jobs, args.batch, args.calls, runtime, args.device_process)
        print("\n".join(_show("fill-mask engine", report["fill-mask"])), flush=True)
        report["bare encoder"] = bare_profile(models["fill-mask"], runtime, args.batch)
        print("\n".join(_show(f"bare encoder, {args.batch} × {CEILING_TOKENS} tokens", report["bare encoder"])),
              flush=True)
    if "question-answering" in tasks:
        qa = QuestionAnsweringEngine(str(models["question-answering"]), runtime, args.batch, args.max_batch_tokens)
        pairs = [JobPayload({"question": [q], "context": [c]}, QA_PARAMS) for q, c in workload.qa]
        report["question-answering"] = engine_profile(qa, pairs, args.batch, args.calls, runtime,
                                                      args.device_process)
        print("\n".join(_show("question-answering engine", report["question-answering"])), flush=True)
    if args.output:
        args.output.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
