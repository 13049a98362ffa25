"""A worker's models in a process of their own (`DISTILQ_DEVICE_PROCESS`): the device process.

The batcher's three stages overlap in threads (`worker/batcher.py`), but threads of one interpreter share one lock:
every torch call of a forward pass hands it over, and waits for it behind the claimer's and writer's Python (the
database's rows, the outputs' strings). Beside a busy Python thread a pass took 60 times as long
(`python -m bench.forward_beside`); on a GPU, whose kernels are launched one Python call at a time, the device
waits as long. So the device's stage of each batch — the engine's `infer`: passes packed, the forward, the head,
the selection on the device — runs in a child process that holds the models and does nothing else, while the
worker's process prepares batches with its tokenizers, finishes them and keeps the database and Redis.

What crosses the pipe is small: what the device stage reads of a prepared batch (`for_device`: token ids, mask
places, QA chunk bounds and parameters) one way, and the engine's `detach`ed findings (top-k scores and ids, QA
spans) with its phase timings back. One batch at a time, as the batcher runs them.

The device process lives and dies with its worker: it reads requests until the worker's end of the pipe closes
(the worker exited, or was killed), and ignores SIGINT, which a terminal sends to both (the worker finishes its
batch on it first). A worker whose device process is gone can run no batch: it exits (`EXIT_DEVICE_LOST`), its
jobs' claims run out and `beat` hands them on, as for a worker killed mid-batch, and its supervisor (`distilq
up`, the compose stack's restart policy) starts it again with a new one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from core.settings import Settings
from worker.engine import EngineLost, JobPayload, StagedEngine
from worker.engine.model_engine import ModelEngine

log = logging.getLogger(__name__)

#: The worker's exit status when its device process is gone.
EXIT_DEVICE_LOST = 70


def exit_worker(reason: str) -> None:
    """The worker can serve no batch: it exits at once, as if killed (`beat` hands its claimed jobs on)."""
    log.critical("%s; the worker exits (status %d) to be started again", reason, EXIT_DEVICE_LOST)
    logging.shutdown()
    os._exit(EXIT_DEVICE_LOST)


class DeviceProcess:
    """The child that runs the device stage of `tasks`' engines; started here, ready once its models are loaded
    and warm (raises RuntimeError saying why they did not load)."""

    def __init__(self, settings: Settings, tasks: Sequence[str],
                 on_lost: Callable[[str], None] = exit_worker) -> None:
        self.on_lost = on_lost
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads, CUDA or sockets
        self._connection, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_end, settings, list(tasks)),
                                       name="distilq-device", daemon=True)
        self.process.start()
        child_end.close()  # the child's end lives in the child only: its exit reads as EOF here
        self._lock = threading.Lock()
        try:
            kind, detail = self._connection.recv()
        except EOFError:
            self.process.join(5)
            raise RuntimeError(f"the device process exited (status {self.process.exitcode}) before its models "
                               "loaded") from None
        if kind != "ready":
            self.close()
            raise RuntimeError(detail)

    def infer(self, task: str, prepared: Any) -> tuple[Any, dict[str, float], dict[str, int]]:
        """The engine of `task`'s `infer` on `prepared`, `detach`ed, with its phases' seconds and counts. Raises
        what the engine raised there; EngineLost if the device process is gone (after `on_lost`)."""
        with self._lock:  # one batch at a time: a failed batch's jobs may be run alone from the writer thread
            try:
                self._connection.send((task, prepared))
                reply = self._connection.recv()
            except (EOFError, OSError) as error:
                self.process.join(1)
                reason = f"the device process is gone (status {self.process.exitcode})"
                self.on_lost(reason)
                raise EngineLost(reason) from error
        if reply[0] == "error":
            raise reply[1]
        _, found, seconds, counts = reply
        return found, seconds, counts

    def close(self) -> None:
        """Ends the device process: it reads the end of its pipe and exits."""
        self._connection.close()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class RemoteEngine(StagedEngine):
    """An engine whose device stage runs in the device process: `host` (the same engine, its weights never loaded)
    prepares and finishes batches here."""

    def __init__(self, host: ModelEngine, device: DeviceProcess) -> None:
        self.host, self.device = host, device
        self.task = host.task
        self.phases = host.phases

    def prepare(self, jobs: list[JobPayload]) -> tuple[Any, Any]:
        """The host engine's prepared batch and what of it the device process is sent, both made here: in the
        batcher's claimer thread, ahead, not while the device waits (QA: ~10 ms for 512 pairs)."""
        prepared = self.host.prepare(jobs)
        return prepared, self.host.for_device(prepared)

    def infer(self, jobs: list[JobPayload], prepared: Any) -> Any:
        whole, sent = prepared
        found, seconds, counts = self.device.infer(self.task, sent)
        self.phases.merge(seconds, counts)
        return self.host.attach(whole, found)

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        return self.host.finish(jobs, inferred)

    def warm_up(self) -> None:
        """Nothing: the device process warmed its engines before it said it was ready."""


def _serve(connection: Connection, settings: Settings, tasks: list[str]) -> None:
    """The device process: loads and warms the engines of `tasks`, says so, then runs each batch it is sent until
    the worker's end of the pipe closes."""
    from core.logs import configure_logging
    from worker.engine.registry import EngineRegistry

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the worker finishes its batch, with us
    configure_logging()
    registry = EngineRegistry(settings.model_copy(update={"device_process": False}), tasks)
    try:
        engines = {task: registry.get(task) for task in tasks}
    except Exception as error:
        connection.send(("unavailable", f"{error.__class__.__name__}: {error}"))
        return
    connection.send(("ready", None))
    while True:
        try:
            task, prepared = connection.recv()
        except (EOFError, OSError):
            return  # the worker is gone
        engine = engines[task]
        engine.phases.reset()
        try:
            # Every engine's infer works from the prepared batch alone (`Engine.infer`).
            reply: tuple[Any, ...] = ("ok", engine.detach(engine.infer([], prepared)), *engine.phases.reset())
        except BaseException as error:  # the tokenizers library panics with a BaseException
            if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            reply = ("error", error if _portable(error) else RuntimeError(f"{error.__class__.__name__}: {error}"))
        try:
            connection.send(reply)
        except OSError:
            return


def _portable(error: BaseException) -> bool:
    """Whether `error` crosses the pipe as itself (pickled and read back)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return False
    return True
