"""The engine's forward pass beside other Python: alone, beside a thread of pure Python in its own interpreter (as the
worker's claimer and writer threads are, `worker/batcher.py`) at the default switch interval and a short one, and
beside a process of pure Python; and its passes in a device process (`worker/engine/device_process.py`, the pipe's
round trip included) beside such a thread here — and a loop of passes there, each prepared here and sent as the one
before ends, or sent while the one before runs (`Engine.start`, as the batcher's claimer thread does). The tiny
checkpoint's engine on the bench's one-input fill-mask lines (the token ids the API's check stores), one torch thread,
in ms a pass: what sharing the worker's interpreter costs the engine, and what a device process gives back.

    python -m bench.forward_beside [--lines 512] [--seconds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from bench.modes import TOP_K
from bench.workload import make_workload
from contract.tokens import pack_token_ids
from core.settings import Settings
from core.tasks import TASK_FILL_MASK
from worker.engine import JobPayload, StagedEngine
from worker.engine.device_process import DeviceProcess, RemoteEngine
from worker.engine.fill_mask import FillMaskEngine
from worker.engine.runtime import Runtime

#: A loop of pure Python, never releasing the interpreter's lock of its own accord.
_SPIN = "x = 0\nwhile True:\n    x += 1\n"


@contextmanager
def _beside(kind: str | None) -> Iterator[None]:
    """Nothing, a thread of this process or a process, running pure Python for as long as the block runs."""
    if kind == "thread":
        stop = threading.Event()

        def spin() -> None:
            x = 0
            while not stop.is_set():
                x += 1

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
    elif kind == "process":
        process = subprocess.Popen([sys.executable, "-c", _SPIN])
        try:
            yield
        finally:
            process.kill()
            process.wait()
    else:
        yield


def _ms_a_pass(engine: StagedEngine, jobs: list[JobPayload], seconds: float) -> float:
    """The mean time of the engine's forward passes (`infer`) over `jobs`, each prepared anew, for `seconds`."""
    spent, passes = 0.0, 0
    while spent < seconds or passes < 2:
        ready = engine.prepare(jobs)
        started = time.perf_counter()
        engine.infer(jobs, ready)
        spent += time.perf_counter() - started
        passes += 1
    return spent / passes * 1000


def _ms_a_pass_in_turn(engine: StagedEngine, jobs: list[JobPayload], seconds: float, ahead: bool) -> float:
    """The wall time a pass of a loop that prepares passes and runs them one after another, for `seconds`: with
    `ahead`, each pass is handed to the device (`start`) before the one before is waited for."""
    passes, started = 0, time.perf_counter()
    waiting = engine.start(engine.prepare(jobs)) if ahead else None
    while time.perf_counter() - started < seconds or passes < 2:
        current = waiting
        if ahead:
            waiting = engine.start(engine.prepare(jobs))
        engine.infer(jobs, current if current is not None else engine.prepare(jobs))
        passes += 1
    elapsed = time.perf_counter() - started
    if waiting is not None:
        engine.infer(jobs, waiting)  # the one sent ahead, not counted
    return elapsed / passes * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=512, help="lines a pass")
    parser.add_argument("--seconds", type=float, default=3.0, help="time each case is measured for")
    parser.add_argument("--models", type=Path, default=Path(".distilq/bench-models"))
    args = parser.parse_args()
    from tests.tiny_model import build as build_tiny

    torch.set_num_threads(1)
    model = build_tiny(args.models / "tiny")["fill-mask"]
    engine = FillMaskEngine(str(model), Runtime(torch.device("cpu"), torch.float32), args.lines, 1 << 20)
    texts = make_workload(args.lines, 0).fill_mask
    jobs = [JobPayload({"input_string": [text]}, {"top_k": TOP_K}, pack_token_ids(engine.fingerprint, [encoding.ids]))
            for text, encoding in zip(texts, engine.backend.encode_batch_fast(texts), strict=True)]
    engine.run(jobs[:1])  # warm-up
    default = sys.getswitchinterval()
    for label, kind, interval in (("alone", None, default), ("beside a thread of pure Python", "thread", default),
                                  ("beside a thread of pure Python", "thread", 0.0002),
                                  ("beside a process of pure Python", "process", default)):
        sys.setswitchinterval(interval)
        try:
            with _beside(kind):
                ms = _ms_a_pass(engine, jobs, args.seconds)
        finally:
            sys.setswitchinterval(default)
        print(f"{label}, switch interval {interval * 1000:g} ms: {ms:.1f} ms a forward pass of {args.lines} lines")
    device = DeviceProcess(Settings(fill_mask_model=str(model), device="cpu", torch_threads=1,
                                    max_batch_size=args.lines, max_batch_tokens=1 << 20), [TASK_FILL_MASK])
    remote = RemoteEngine(engine, device)
    try:
        with _beside("thread"):
            ms = _ms_a_pass(remote, jobs, args.seconds)
            in_turn = [_ms_a_pass_in_turn(remote, jobs, args.seconds, ahead) for ahead in (False, True)]
    finally:
        device.close()
    print(f"in a device process, beside a thread of pure Python, switch interval {default * 1000:g} ms: {ms:.1f} ms "
          f"a forward pass of {args.lines} lines")
    print(f"passes in turn there, each prepared here: sent as the one before ends {in_turn[0]:.1f} ms a pass, sent "
          f"while it runs {in_turn[1]:.1f} ms")


if __name__ == "__main__":
    main()
