"""Inference engines: each turns the inputs of many jobs into one list of outputs per job.

`Engine` is the seam the batcher depends on; the real engines run DistilBERT, tests may pass any object of
this shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from worker.engine.phases import Phases


@dataclass(frozen=True)
class JobPayload:
    """What an engine needs of a job: its input, its (defaults-filled) parameters, and its inputs' token ids as
    the API's check made them, when it stored them (`contract.tokens.pack_token_ids`; an engine whose tokenizer
    has another fingerprint tokenizes the input itself)."""

    input: dict[str, Any]
    parameters: dict[str, Any]
    token_ids: bytes | None = None


class Engine(Protocol):
    task: str
    #: Time per phase and tokens computed since the last reset.
    phases: Phases

    def prepare(self, jobs: list[JobPayload]) -> Any:
        """The host's work of `run` before the device's: tokenizing and checking the inputs. Thread-safe, so that
        the batcher prepares the next batch while the device runs this one. Raises what `run` would."""
        ...

    def infer(self, jobs: list[JobPayload], prepared: Any) -> Any:
        """The device's work on a prepared batch, up to its results back on the host. From `prepared` alone, or
        what `for_device` kept of it: a device process (`worker/engine/device_process.py`) is sent that, not the
        jobs."""
        ...

    def for_device(self, prepared: Any) -> Any:
        """What `infer` reads of a prepared batch: what a device process is sent."""
        ...

    def start(self, prepared: Any) -> Any:
        """The prepared batch handed to the device now, ahead of its `infer` (which takes what this returns): a
        device process runs it as soon as the batches handed before are done. Where the device stage runs in
        `infer`'s own thread, the batch as it is."""
        ...

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        """The host's work after the device's: one output list per job, in job order, each with one entry per
        input of that job. Thread-safe and device-free, so that the batcher finishes a batch in its writer
        thread while the device runs the next."""
        ...

    def run(self, jobs: list[JobPayload], prepared: Any = None) -> list[list[Any]]:
        """prepare (unless `prepared` is given), infer and finish, in this thread."""
        ...

    def detach(self, inferred: Any) -> Any:
        """What `infer` found, without the prepared batch it holds: what a device process sends back
        (`worker/engine/device_process.py`), where the batch was prepared and will be finished."""
        ...

    def attach(self, prepared: Any, found: Any) -> Any:
        """`infer`'s result again, from the prepared batch and what `detach` kept of it."""
        ...

    def warm_up(self) -> None:
        """A call before the first batch, so that it does not pay for lazy initialisation (on a GPU, a whole pass's
        worth of inputs: its kernels load on first use)."""
        ...


class InputError(ValueError):
    """An input the model cannot take; fails its own job only."""


class EngineLost(RuntimeError):
    """The engine can run no batch any more (its device process is gone): no job's fault, so none fails for it."""


class StagedEngine:
    """`run` made of the three stages, which an engine defines (the real ones and the stub alike)."""

    phases: Phases

    def prepare(self, jobs: list[JobPayload]) -> Any:
        raise NotImplementedError

    def infer(self, jobs: list[JobPayload], prepared: Any) -> Any:
        raise NotImplementedError

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        raise NotImplementedError

    def run(self, jobs: list[JobPayload], prepared: Any = None) -> list[list[Any]]:
        inferred = self.infer(jobs, prepared if prepared is not None else self.prepare(jobs))
        with self.phases.timed("postprocess"):
            return self.finish(jobs, inferred)

    def for_device(self, prepared: Any) -> Any:
        return prepared

    def start(self, prepared: Any) -> Any:
        return prepared

    def detach(self, inferred: Any) -> Any:
        return inferred

    def attach(self, prepared: Any, found: Any) -> Any:
        return found
