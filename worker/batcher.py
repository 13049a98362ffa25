"""Dynamic batching across jobs. A queue message only wakes the worker: it claims that job, then as many other
queued jobs of the same task as fit in `max_batch_size` inputs (waiting up to `max_batch_wait_ms` for more),
runs all their inputs through one engine call, and writes every job back in one transaction."""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from core.metrics import (
    BATCH_INPUTS,
    BATCH_TOKENS,
    INFERENCE_SECONDS,
    JOB_LATENCY_SECONDS,
    JOBS_FINISHED,
    QUEUE_WAIT_SECONDS,
)
from core.settings import Settings
from store.jobs import Claim, Outcome, claim_job, claim_more, finish, renew_leases
from worker.engine import Engine, InputError, JobPayload
from worker.events import JobEvents

log = logging.getLogger(__name__)

#: Job ids this process finished lately: their redundant messages are dropped without a database round trip.
RECENT_JOBS = 4096
#: Pause between looks for more jobs while a batch waits to fill, in seconds.
FILL_POLL_S = 0.002


class _Stopwatch:
    """Milliseconds of each step of a batch, in order."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, step: str) -> float:
        now = time.perf_counter()
        self.ms[step] = (now - self._last) * 1000
        self._last = now
        return self.ms[step]


class Batcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        engines: Callable[[str], Engine],
        events: JobEvents,
        settings: Settings,
        clock: Callable[[], datetime],
        worker: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.engines = engines
        self.events = events
        self.settings = settings
        self.clock = clock
        #: This worker's presence name, written on the jobs it claims so that `beat` can tell when it is gone.
        self.worker = worker
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: Redundant messages (of jobs an earlier batch took) dropped since the last batch's log line.
        self._skipped = 0

    def handle(self, job_id: str) -> None:
        if job_id in self._recent:
            self._skipped += 1
            return
        steps = _Stopwatch()
        first, started_events = claim_job(self.sessions, job_id, self.clock, self.settings.lease_s, self.worker)
        if first is None:
            return  # canceled, finished, or claimed by another worker's batch: nothing to do
        assert self.settings.max_batch_size is not None  # resolved for the device (WorkerContext.load_models)
        more, more_started_events = self._fill(first.task, self.settings.max_batch_size - first.n_inputs)
        claims = [first, *more]
        self.events.webhooks(started_events + more_started_events)
        steps.lap("claim")
        engine = self.engines(first.task)
        engine.phases.reset()
        with self._leases_held(claims):
            outcomes = self._run(engine, claims)
        inference_ms = steps.lap("inference")
        batch_size = sum(claim.n_inputs for claim in claims)
        finished_at = self.clock()
        written, completed = finish(self.sessions, outcomes, finished_at, batch_size, inference_ms)
        for claim in claims:
            self._remember(claim.job_id)
        steps.lap("write")
        self.events.finished(written)
        self.events.webhooks(completed)
        steps.lap("announce")
        self._observe(first.task, claims, written, engine, batch_size, steps.ms, finished_at)

    def _observe(self, task: str, claims: list[Claim], written: list[tuple[str, str]], engine: Engine,
                 batch_size: int, steps_ms: dict[str, float], finished_at: datetime) -> None:
        """Metrics and one log line per batch and per job: ids, statuses and durations, never inputs. The batch's
        line splits its time into claim (database), inference (engine phases), write (database) and announce
        (Redis), so that where a batch's time goes can be read off the log."""
        inference_ms = steps_ms["inference"]
        seconds, counts = engine.phases.reset()
        batch_id = uuid.uuid4().hex[:12]
        BATCH_INPUTS.labels(task).observe(batch_size)
        BATCH_TOKENS.labels(task).observe(counts.get("real_tokens", 0))
        INFERENCE_SECONDS.labels(task).observe(inference_ms / 1000)
        log.info("batch finished", extra={
            "batch_id": batch_id, "task": task, "jobs": len(claims), "inputs": batch_size,
            "tokens": counts.get("real_tokens", 0), "attention_slots": counts.get("attention_slots", 0),
            "messages_skipped": self._skipped, **{f"{k}_ms": round(v, 1) for k, v in steps_ms.items()},
            **{f"{k}_ms": round(v * 1000, 1) for k, v in seconds.items()},
        })
        self._skipped = 0
        by_id = {claim.job_id: claim for claim in claims}
        for job_id, status in written:
            claim = by_id[job_id]
            queue_ms = claim.queue_ms
            JOBS_FINISHED.labels(task, status).inc()
            QUEUE_WAIT_SECONDS.labels(task).observe(queue_ms / 1000)
            JOB_LATENCY_SECONDS.labels(task).observe((finished_at - claim.created_at).total_seconds())
            log.info("job finished", extra={"job_id": job_id, "task": task, "status": status, "batch_id": batch_id,
                                            "attempt": claim.attempt, "queue_ms": round(queue_ms, 1)})

    def _fill(self, task: str, budget: int) -> tuple[list[Claim], list[str]]:
        claims: list[Claim] = []
        events: list[str] = []
        deadline = time.monotonic() + self.settings.max_batch_wait_ms / 1000
        while budget > 0:
            more, started = claim_more(self.sessions, task, budget, self.clock, self.settings.lease_s, self.worker)
            claims += more
            events += started
            budget -= sum(claim.n_inputs for claim in more)
            if budget <= 0 or time.monotonic() >= deadline:
                break
            time.sleep(FILL_POLL_S)
        return claims, events

    def _run(self, engine: Engine, claims: list[Claim]) -> list[Outcome]:
        try:
            outputs = engine.run([JobPayload(c.input, c.parameters) for c in claims])
            return [Outcome(claim, output=output) for claim, output in zip(claims, outputs, strict=True)]
        except BaseException as error:  # the tokenizers library panics with a BaseException
            if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            if len(claims) > 1:
                # One job's input spoiled the batch: run each alone so that only that job fails.
                return [outcome for claim in claims for outcome in self._run(engine, [claim])]
            code = "invalid_input" if isinstance(error, InputError) else "inference_error"
            log.warning("job %s failed: %s", claims[0].job_id, error)
            return [Outcome(claims[0], error={"code": code, "message": str(error)})]

    @contextmanager
    def _leases_held(self, claims: list[Claim]) -> Iterator[None]:
        """Renews the batch's leases every third of a lease while it runs."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.settings.lease_s / 3):
                try:
                    renew_leases(self.sessions, claims, self.clock(), self.settings.lease_s)
                except Exception as error:
                    log.warning("lease renewal failed: %s", error)

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _remember(self, job_id: str) -> None:
        self._recent[job_id] = None
        if len(self._recent) > RECENT_JOBS:
            self._recent.popitem(last=False)
