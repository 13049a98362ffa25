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
spans) with its phase timings back. Batches run in the order they are sent, and a batch may be sent while the one
before runs (`submit`; the batcher's claimer thread sends the next batch as soon as it is prepared, `Engine.start`):
the device process reads it as it ends the one before, and does not wait for the worker's process to take that
one's result, then claim, prepare and send — a wait of the worker's interpreter lock, behind its claimer and
writer threads, on every pass. A thread of the worker's reads the replies and hands each to its batch's future.

The device process lives and dies with its worker: it reads requests until the worker's end of the pipe closes
(the worker exited, or was killed), and ignores SIGINT, which a terminal sends to both (the worker finishes its
batch on it first). A worker whose device process is gone can run no batch: it exits (`EXIT_DEVICE_LOST`), its
jobs' claims run out and `beat` hands them on, as for a worker killed mid-batch, and its supervisor (`distilq
up`, the compose stack's restart policy) starts it again with a new one.
"""

from __future__ import annotations

import atexit
import collections
import logging
import multiprocessing
import multiprocessing.util
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from core.heap import freeze_heap
from core.settings import Settings
from worker.engine import Engine, EngineLost, JobPayload, StagedEngine
from worker.engine.model_engine import ModelEngine

log = logging.getLogger(__name__)

#: The worker's exit status when its device process is gone.
EXIT_DEVICE_LOST = 70


def exit_worker(reason: str) -> None:
    """The worker can serve no batch: it exits at once, as if killed (`beat` hands its claimed jobs on)."""
    log.critical("%s; the worker exits (status %d) to be started again", reason, EXIT_DEVICE_LOST)
    logging.shutdown()
    os._exit(EXIT_DEVICE_LOST)


#: What a batch's future holds: the engine's `detach`ed findings, and its phases' seconds and counts.
Reply = tuple[Any, dict[str, float], dict[str, int]]


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
        try:
            kind, detail = self._connection.recv()
        except EOFError:
            self.process.join(5)
            raise RuntimeError(f"the device process exited (status {self.process.exitcode}) before its models "
                               "loaded") from None
        if kind != "ready":
            self._connection.close()
            self.process.join(10)
            raise RuntimeError(detail)
        #: The futures of the batches sent and not answered yet, in the order they were sent (and are run).
        self._pending: collections.deque[Future[Reply]] = collections.deque()
        #: Held to send a batch and queue its future together: the replies come back in the order sent.
        self._sending = threading.Lock()
        #: Why the device process is gone, once it is; whether the worker is closing it.
        self._lost: str | None = None
        self._closing = False
        self._receiver = threading.Thread(target=self._receive, name="device-replies", daemon=True)
        self._receiver.start()
        # Closed as the worker exits, unless multiprocessing's exit handler ends it first (Celery's billiard
        # registers that one again, to run first): the reader knows that end from a lost device process.
        atexit.register(self.close)

    def submit(self, task: str, prepared: Any) -> Future[Reply]:
        """Sends a batch for the engine of `task`'s `infer` on `prepared`, and returns at once: the future holds its
        `detach`ed findings with its phases' seconds and counts, or raises what the engine raised there, or
        EngineLost when the device process is gone (after `on_lost`). Batches run in the order they are sent."""
        future: Future[Reply] = Future()
        with self._sending:
            if self._lost is not None or self._closing:
                raise EngineLost(self._lost or "the device process is closed")
            self._pending.append(future)
            try:
                self._connection.send((task, prepared))
            except OSError:
                pass  # the device process is gone: the reader finds its end, and fails this batch with the rest
            except BaseException:  # not picklable: nothing was sent
                self._pending.remove(future)
                raise
        return future

    def infer(self, task: str, prepared: Any) -> Reply:
        """`submit`, and its reply."""
        return self.submit(task, prepared).result()

    def _receive(self) -> None:
        """Hands each reply to the future of its batch, until the pipe ends: then, unless the worker closed it, the
        device process is gone — `on_lost`, and every batch sent and not answered fails with EngineLost."""
        while True:
            try:
                reply = self._connection.recv()
            except (EOFError, OSError):
                break
            if reply[0] == "closed":
                return
            future = self._pending.popleft()
            if reply[0] == "error":
                future.set_exception(reply[1])
            else:
                future.set_result(reply[1:])
        if self._closing or multiprocessing.util.is_exiting():
            return  # the worker closed it, or is exiting and multiprocessing's exit handler ended it
        self.process.join(1)
        reason = f"the device process is gone (status {self.process.exitcode})"
        self.on_lost(reason)  # first: by default the worker exits here, and no batch is failed for it
        with self._sending:
            self._lost = reason
            lost = list(self._pending)
            self._pending.clear()
        for future in lost:
            future.set_exception(EngineLost(reason))

    def close(self) -> None:
        """Ends the device process: it answers the batches sent, says it is closing, and exits. Again: nothing."""
        atexit.unregister(self.close)
        with self._sending:
            self._closing = True
            try:
                self._connection.send(None)
            except OSError:
                pass  # gone already, or closed
        self._receiver.join(10)
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

    def start(self, prepared: Any) -> tuple[Any, Future[Reply]]:
        """Sends the batch to the device process now (it runs after those sent before); `infer` takes its result."""
        whole, sent = prepared
        return prepared if isinstance(sent, Future) else (whole, self.device.submit(self.task, sent))

    def infer(self, jobs: list[JobPayload], prepared: Any) -> Any:
        whole, pending = self.start(prepared)
        found, seconds, counts = pending.result()
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

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the worker finishes its batch, with us
    configure_logging()
    try:
        engines = _load(settings, tasks)
    except Exception as error:
        connection.send(("unavailable", f"{error.__class__.__name__}: {error}"))
        return
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return  # the worker is gone
        if request is None:  # the worker closes: it has every reply
            connection.send(("closed",))
            return
        started = time.perf_counter()
        task, prepared = request
        engine = engines[task]
        engine.phases.reset()
        try:
            # Every engine's infer works from the prepared batch alone (`Engine.infer`).
            found = engine.detach(engine.infer([], prepared))
            # The batch's whole time here, from its arrival: the device's time for it, which the batcher times its
            # next claim by (its own wait for a batch sent ahead is shorter).
            engine.phases.add("device", time.perf_counter() - started)
            reply: tuple[Any, ...] = ("ok", found, *engine.phases.reset())
        except BaseException as error:  # the tokenizers library panics with a BaseException
            if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            reply = ("error", error if _portable(error) else RuntimeError(f"{error.__class__.__name__}: {error}"))
        try:
            connection.send(reply)
        except OSError:
            return


def _load(settings: Settings, tasks: list[str]) -> dict[str, Engine]:
    """The engines of `tasks`, loaded and warm; then this process's heap — torch's, transformers', the models' —
    frozen (`core.heap`), as a worker's is: a pass's batch and findings, alive across young collections, would
    otherwise bring on full collections of it, each a stall of the device's stage."""
    from worker.engine.registry import EngineRegistry

    registry = EngineRegistry(settings.model_copy(update={"device_process": False}), tasks)
    engines = {task: registry.get(task) for task in tasks}
    freeze_heap()
    return engines


def _portable(error: BaseException) -> bool:
    """Whether `error` crosses the pipe as itself (pickled and read back)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return False
    return True
