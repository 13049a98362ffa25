"""Dynamic batching across jobs, pipelined. A wake-up (`core/wakeups.py`) starts a drain of one task's queued
jobs: claim a batch of as many as fit in `max_batch_size` inputs, run all their inputs through one engine call,
write every job back in one transaction — until none is left. Three stages overlap, so that the device never
waits on the database while jobs are queued:

    claimer thread:  claim N+1, tokenize it, hand it to the device ─┐
    this thread:     engine N on the device ────────────────────────┴─ engine N+1 ─ …
    writer thread:   finish N−1 (outputs), write, announce ─ finish N, write, announce ─ …

With the engines' device stage in a device process (`worker/engine/device_process.py`), batch N+1 is sent to it as
soon as it is prepared (`Engine.start`), and it runs as N ends: the device does not wait for this thread to take
N's result and send the next.

Batch sizes follow the load: a wake-up finds the device idle and claims at once, topping the batch up once
`max_batch_wait_ms` later where its pass is long against that wait (a model on the CPU), so a lone job goes within
that and a burst's first long pass is not a pass of one — where passes are short (a GPU's), a lone job goes at
once; while jobs keep coming, the next claim is made `max_batch_wait_ms` after the last, or just before the running
pass should end when passes are long (`_next_claim_at`) — and then topped up as its pass starts, with the jobs that
came after it, where passes are long against a claim (`_top_up_late`); under a backlog, at once and full. A drain
gives its turn back after `DRAIN_SLICE_S` (a worker serving both tasks must not starve one), or once the batch at
hand is done when the worker is shutting down, asking for another wake-up if jobs are left."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
from models.tables import FAILED
from store import batch_rows
from store.jobs import Claim, ClaimedBatch, Finished, Outcome, claim_more, finish, renew_leases
from worker.engine import Engine, EngineLost, InputError, JobPayload
from worker.events import JobEvents
from worker.pass_cost import PassCost

log = logging.getLogger(__name__)

#: A drain hands the worker back to Celery after this long, in seconds (it asks for another wake-up if jobs remain).
DRAIN_SLICE_S = 2.0
#: Interactive jobs are "about" for this long, in seconds, after a claim took one: meanwhile a batch file's lines
#: fill passes only up to `lines_pass_ms` of the engine's time.
INTERACTIVE_WINDOW_S = 2.0
#: An idle worker's first batch waits `max_batch_wait_ms` to be topped up only where its pass should take at least
#: this many times that wait (`Batcher._worth_topping_up`).
TOP_UP_PASS_WAITS = 4
#: A batch claimed ahead is topped up as its pass starts when that pass should take at least this many times its
#: claim (`Batcher._top_up_late`): the device waits for the top-up, a twentieth of the pass at most.
LATE_TOP_UP_PASS_CLAIMS = 20


@dataclass
class _Pass:
    """A claimed batch on its way through the stages, with the milliseconds each stage took."""

    task: str
    batch: ClaimedBatch
    ms: dict[str, float] = field(default_factory=dict)
    #: When the claim ended (`time.monotonic()`).
    claimed_at: float = 0.0
    #: What the engine needs of each claimed job — of each line of a row of a batch's lines — made once; and how
    #: many of them each claim has, in the claims' order.
    payloads: list[JobPayload] = field(default_factory=list)
    payload_counts: list[int] = field(default_factory=list)
    #: The claim's budget of batch files' inputs (`Batcher._line_budget`), and whether interactive jobs were about.
    line_budget: int | None = None
    interactive_about: bool = False
    #: What the engine's `prepare` made of the batch's inputs, in the claimer thread (None: prepared when run).
    prepared: Any = None
    #: Whether `prepared` was handed to the device as it was made (`Engine.start`): then it is not topped up.
    started: bool = False
    #: What the engine's `infer` returned, for the writer thread to `finish` (None: `outcomes` are set already).
    inferred: Any = None
    outcomes: list[Outcome] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def payload_ids(self) -> list[str]:
        """The job's id of each payload — a line's own (`store.batch_rows.line_id`) for a row's lines —, in their
        order: made only for the log of a pass that failed."""
        return [claim.job_id if claim.batch_id is None else batch_rows.line_id(claim.job_id, index)
                for claim, count in zip(self.batch.claims, self.payload_counts, strict=True) for index in range(count)]

    @property
    def engine_s(self) -> float:
        """The engine's time for the batch, once run: the device's own where it reports it (the wait for a batch
        started ahead is shorter)."""
        return self.phase_seconds.get("device", self.ms["inference"] / 1000)


def _joined(batch: ClaimedBatch, more: ClaimedBatch) -> ClaimedBatch:
    """`batch` topped up with `more`, claimed after it: whether jobs are left behind is the later claim's word."""
    return ClaimedBatch(batch.claims + more.claims, batch.events + more.events, more.more_queued)


class _Leases:
    """The claims this worker holds, renewed every third of a lease by one thread for the worker's life."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime], lease_s: int) -> None:
        self.sessions, self.clock, self.lease_s = sessions, clock, lease_s
        self._held: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, claims: list[Claim]) -> None:
        with self._lock:
            self._held.update((claim.job_id, claim) for claim in claims)
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew, name="lease-renewal", daemon=True)
                self._thread.start()

    def release(self, claims: list[Claim]) -> None:
        with self._lock:
            for claim in claims:
                self._held.pop(claim.job_id, None)

    def _renew(self) -> None:
        while True:
            time.sleep(self.lease_s / 3)
            with self._lock:
                claims = list(self._held.values())
            if claims:
                try:
                    renew_leases(self.sessions, claims, self.clock(), self.lease_s)
                except Exception as error:
                    log.warning("lease renewal failed: %s", error)


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
        self.leases = _Leases(sessions, clock, settings.lease_s)
        #: Set when the worker begins a warm shutdown: the batch at hand finishes, no other is claimed.
        self.stopping = threading.Event()
        #: While jobs keep coming, the time from one claim to the next, in seconds.
        self.wait_s = settings.max_batch_wait_ms / 1000
        #: The engine's time of each task's passes, fitted on their sizes: when to claim the next one.
        self._engine_cost: dict[str, PassCost] = defaultdict(PassCost)
        #: What one more input costs a pass of each task: how many lines a pass may take.
        self._pass_cost: dict[str, PassCost] = defaultdict(PassCost)
        #: The last line budget of each task: the next is at most twice as large.
        self._line_budgets: dict[str, int] = {}
        #: When (`time.monotonic()`) a claim of each task last took an interactive job.
        self._interactive_at: dict[str, float] = {}
        self._claimer = ThreadPoolExecutor(1, thread_name_prefix="claimer")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="writer")

    def drain(self, task: str) -> int:
        """Runs queued jobs of `task` until none is left or the slice is over; returns how many batches ran."""
        self.events.wake_taken(task)  # before the first claim: a job committed after this gets its own wake-up
        slice_ends = time.monotonic() + DRAIN_SLICE_S
        passes = 0
        writing: Future[None] | None = None
        claiming: Future[_Pass] | None = None
        current = self._claim(task, top_up=True)  # the device is idle: a lone job goes within max_batch_wait_ms
        try:
            while current.batch.claims:
                if time.monotonic() < slice_ends and not self.stopping.is_set():
                    claiming = self._claimer.submit(self._claim, task, self._next_claim_at(current))
                self._infer(current)
                if writing is not None:
                    writing.result()  # at most one batch waits to be written: back-pressure on the engine
                writing = self._writer.submit(self._write, current)
                passes += 1
                if claiming is None:
                    break
                started = time.perf_counter()
                current, claiming = claiming.result(), None
                current.ms["idle"] = (time.perf_counter() - started) * 1000
                self._top_up_late(current)
        finally:
            if claiming is not None and not claiming.cancel() and claiming.exception() is None:
                # Claimed but not run (an error above): their leases run out and `beat` hands them on.
                self.leases.release(claiming.result().batch.claims)
            if writing is not None:
                writing.result()
        if time.monotonic() >= slice_ends or self.stopping.is_set():
            self.events.backlog(task)  # the slice is over: another turn (this or another worker) if jobs remain
        return passes

    def _next_claim_at(self, current: _Pass) -> float:
        """When to claim the batch after `current` (a `time.monotonic()`), which is about to run. Under a backlog:
        at once, it will be full. Otherwise jobs are given time to gather, so that a trickle makes fewer, fuller
        passes rather than one pass per job, each with its own claim and write: until `max_batch_wait_ms` after
        this claim, and, when passes are long (a model on the CPU), until just before this one should end — the
        engine's time for this many inputs fitted over the recent passes (`worker/pass_cost.py`), less the last
        claim's time and a quarter for slack (passes vary; a claim that ends after the pass leaves the device
        idle) — so that the jobs that came during it ride the next pass, not the one after. A backlog of a batch's
        lines is claimed that late too (a pass holding a line leaves only lines behind: interactive jobs are
        claimed first), so that an interactive job that comes meanwhile waits for the rest of this pass, not also
        for a next one already full of lines — while interactive jobs are about; a batch file alone is claimed at
        once, in full passes."""
        holds_lines = any(claim.from_file for claim in current.batch.claims)
        if current.batch.more_queued and not (holds_lines and self._interactive_about(current.task)):
            return 0.0
        pass_s = self._engine_cost[current.task].seconds(current.batch.n_inputs) or 0.0
        near_the_end = time.monotonic() + 0.75 * pass_s - current.ms["claim"] / 1000
        return max(current.claimed_at + self.wait_s, near_the_end)

    def seconds_per_input(self, task: str) -> float | None:
        """What one more input adds to a pass of `task` (its claim, engine and write), fitted over the recent passes;
        None until passes of different sizes were timed (`PassCost.marginal`): what this worker's presence tells
        the API (`store.batch_rows.row_inputs`)."""
        return self._pass_cost[task].marginal()

    def _interactive_about(self, task: str) -> bool:
        return time.monotonic() - self._interactive_at.get(task, float("-inf")) < INTERACTIVE_WINDOW_S

    def _line_budget(self, task: str) -> int | None:
        """How many inputs of batch files a pass may take while interactive jobs are about (the claim takes one, or
        one was taken in the last INTERACTIVE_WINDOW_S): as many as add `lines_pass_ms` to a pass — its claim,
        its time in the engine and its write, which an interactive job in it waits for (at least one;
        `worker/pass_cost.py`) — so that a pass of lines ends soon after an interactive job comes (a GPU's passes
        are full still; a CPU's shrink). None until a pass has been timed."""
        per_input_s = self._pass_cost[task].per_input()
        if per_input_s is None:
            return None
        budget = batch_rows.inputs_within(self.settings.lines_pass_ms, per_input_s)
        # At most double the last: a fit thrown by noise costs an interactive job a pass a little longer, not one
        # of a whole backlog's lines.
        last = self._line_budgets.get(task)
        self._line_budgets[task] = budget = budget if last is None else min(budget, 2 * last)
        return budget

    def _claim(self, task: str, not_before: float = 0.0, top_up: bool = False) -> _Pass:
        """The next batch of `task`, claimed no sooner than `not_before` (a `time.monotonic()`). With `top_up`
        (the device is idle), a batch that is not full is topped up once, `max_batch_wait_ms` later, with the
        jobs that came meanwhile, where its pass is long against that wait (`_worth_topping_up`): a burst's first
        long pass is not a pass of one."""
        delay = not_before - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        started = time.perf_counter()
        assert self.settings.max_batch_size is not None  # resolved for the device (WorkerContext.load_models)
        line_budget, about = self._line_budget(task), self._interactive_about(task)
        batch = claim_more(self.sessions, task, self.settings.max_batch_size, self.clock, self.settings.lease_s,
                           self.worker, max_line_inputs=line_budget, cap_lines=about)
        if top_up and self._room(batch) > 0 and self.wait_s > 0 and self._worth_topping_up(task, batch):
            time.sleep(self.wait_s)
            batch = _joined(batch, self._top_up_claim(task, batch, line_budget, about))
        claimed = _Pass(task, batch, line_budget=line_budget, interactive_about=about)
        self._claimed(claimed, batch)
        claimed.ms["claim"], claimed.claimed_at = (time.perf_counter() - started) * 1000, time.monotonic()
        if batch.claims:
            # Handed to the device at once (a device process runs it as soon as the pass before ends), unless it is
            # to be topped up as its pass starts.
            claimed.started = top_up or not self._tops_up_late(claimed)
            claimed.prepared = self._prepare(task, claimed.payloads, claimed.started)
        return claimed

    def _worth_topping_up(self, task: str, batch: ClaimedBatch) -> bool:
        """Whether an idle worker's first batch is worth topping up `max_batch_wait_ms` later, with the jobs that
        come meanwhile: where its pass should take at least TOP_UP_PASS_WAITS times that wait (the engine's time
        fitted over the recent passes; a model on the CPU: a burst's first pass is not a long pass of one), or
        before any pass was timed. A shorter pass (a GPU's, a small model's) costs less than the wait: a lone job
        would wait longer for company than a pass of one costs the jobs behind it, which the claim made during it
        takes into the next (the tiny checkpoint here: a lone job answered in 9–10 ms against 15–18 with the wait,
        BENCHMARKS.md)."""
        pass_s = self._engine_cost[task].seconds(batch.n_inputs)
        return pass_s is None or pass_s >= TOP_UP_PASS_WAITS * self.wait_s

    def _room(self, batch: ClaimedBatch) -> int:
        """How many more inputs a batch would take by topping it up: none when it is empty (nothing queued) or
        jobs were left behind (it is full)."""
        assert self.settings.max_batch_size is not None
        if not batch.claims or batch.more_queued:
            return 0
        return self.settings.max_batch_size - batch.n_inputs

    def _top_up_claim(self, task: str, batch: ClaimedBatch, line_budget: int | None, about: bool) -> ClaimedBatch:
        """The jobs that fit in `batch`'s room, claimed now; its lines within the pass's line budget."""
        lines = sum(claim.n_inputs for claim in batch.claims if claim.from_file)
        return claim_more(self.sessions, task, self._room(batch), self.clock, self.settings.lease_s, self.worker,
                          oversized_alone=False, cap_lines=about or len(batch.claims) > lines,
                          max_line_inputs=None if line_budget is None else max(0, line_budget - lines))

    def _claimed(self, claimed: _Pass, batch: ClaimedBatch) -> None:
        """What follows a claim of `batch` (all of the pass's or a top-up of it): its leases held, its webhook
        events published, another worker woken for a backlog; its jobs' payloads added to the pass."""
        if any(not claim.from_file for claim in batch.claims):
            self._interactive_at[claimed.task] = time.monotonic()
        self.leases.hold(batch.claims)
        if batch.more_queued:
            self.events.backlog(claimed.task)  # another worker may join
        self.events.webhooks(batch.events)
        for claim in batch.claims:
            payloads = _payloads(claim)
            claimed.payloads += payloads
            claimed.payload_counts.append(len(payloads))

    def _top_up_late(self, current: _Pass) -> None:
        """Tops up `current`, claimed ahead while the last pass ran, with the jobs that came since — when passes are
        long against a claim (a model on the CPU: a pass of 32 fill-mask inputs takes ~1.4 s, a claim ~15 ms): the
        clients answered by the last pass send their next jobs during this one's claim-ahead and after it, and
        without this they would wait a whole pass more while this one runs part-full. On a GPU, where a pass
        takes about as long as a claim, the device would wait for the claim: not done. What it adds is prepared
        with the rest, in this thread."""
        if current.started or not self._tops_up_late(current):
            return
        started = time.perf_counter()
        try:
            more = self._top_up_claim(current.task, current.batch, current.line_budget, current.interactive_about)
        except Exception as error:  # the pass runs as claimed; what is queued waits for the next claim
            log.warning("could not top up a pass: %s", error)
            return
        current.ms["top_up"] = (time.perf_counter() - started) * 1000
        current.batch = _joined(current.batch, more)
        if more.claims:  # else nothing to hold or announce: no Redis round trip while the device waits
            self._claimed(current, more)
            current.prepared = None  # prepared again whole by `_infer`

    def _tops_up_late(self, current: _Pass) -> bool:
        """Whether `current`, claimed ahead, is topped up as its pass starts (`_top_up_late`): it has room, and
        passes are long against a claim."""
        pass_s = self._engine_cost[current.task].seconds(current.batch.n_inputs)
        long_pass = pass_s is not None and pass_s >= LATE_TOP_UP_PASS_CLAIMS * current.ms["claim"] / 1000
        return self._room(current.batch) > 0 and long_pass

    def _prepare(self, task: str, payloads: list[JobPayload], start: bool) -> Any:
        """The engine's host-side work for the batch (tokenizing), done here — in the claimer thread while the
        engine runs the batch before — so that on a GPU the device does not wait for it; and with `start`, the
        batch handed to the device (`Engine.start`). A failure prepares nothing: `_infer` meets the same error
        preparing it again, and the batch is run job by job."""
        try:
            engine = self.engines(task)
            prepared = engine.prepare(payloads)
            return engine.start(prepared) if start else prepared
        except BaseException as error:  # the tokenizers library panics with a BaseException
            if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            return None

    def _infer(self, current: _Pass) -> None:
        """The device's part of the batch, in this thread; the host's part after it is `_finish`'s."""
        engine = self.engines(current.task)
        engine.phases.reset()
        started = time.perf_counter()
        payloads = current.payloads
        try:
            prepared = current.prepared if current.prepared is not None else engine.prepare(payloads)
            current.inferred = engine.infer(payloads, prepared)
        except BaseException as error:  # the tokenizers library panics with a BaseException
            if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit | EngineLost):
                raise
            current.outcomes = _outcomes(current, self._failed(engine, payloads, current.payload_ids(), error))
        current.ms["inference"] = (time.perf_counter() - started) * 1000
        current.phase_seconds, current.counts = engine.phases.reset()
        self._engine_cost[current.task].add(current.batch.n_inputs, current.engine_s)

    def _finish(self, current: _Pass) -> None:
        """The engine's host work after the device's (fill-mask's strings, QA's spans), in the writer thread, so
        that the device runs the next batch meanwhile."""
        if current.inferred is None:
            return
        started = time.perf_counter()
        engine = self.engines(current.task)
        try:
            results: list[_Result] = [(output, None) for output in engine.finish(current.payloads, current.inferred)]
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit | EngineLost):
                raise
            results = self._failed(engine, current.payloads, current.payload_ids(), error)
        current.outcomes = _outcomes(current, results)
        current.inferred = None
        current.ms["postprocess"] = (time.perf_counter() - started) * 1000

    def _write(self, current: _Pass) -> None:
        try:
            self._finish(current)
        except BaseException:
            self.leases.release(current.batch.claims)
            raise
        started = time.perf_counter()
        finished_at = self.clock()
        try:
            written, completed = finish(self.sessions, current.outcomes, finished_at, current.batch.n_inputs,
                                        current.ms["inference"])
        finally:
            self.leases.release(current.batch.claims)
        current.ms["write"] = (time.perf_counter() - started) * 1000
        # What an interactive job in this pass waited on: its claim, the engine and the write, each longer by
        # every line the pass held.
        turnaround_s = (current.ms["claim"] + current.ms["write"]) / 1000 + current.engine_s
        self._pass_cost[current.task].add(current.batch.n_inputs, turnaround_s)
        started = time.perf_counter()
        # Announced to the API process holding each job's request; a batch's lines and unheld jobs to nobody.
        self.events.finished([(done.job_id, done.status, done.held_by) for done in written],
                             {done.job_id: done.public for done in written if done.public is not None})
        self.events.webhooks(completed)
        current.ms["announce"] = (time.perf_counter() - started) * 1000
        if any(claim.from_file for claim in current.batch.claims):
            # Beat appends the lines to their batch's files now, and ends a file whose last line this was, rather
            # than at its next periodic sweep (`Sweeper.sweep_files`). After the announcements: the interactive
            # jobs of the pass do not wait for it.
            self.events.files_moved()
        self._observe(current, written, finished_at)

    def _observe(self, current: _Pass, written: list[Finished], finished_at: datetime) -> None:
        """Metrics, and one log line per batch and per interactive job (a batch's lines are counted in the batch's
        line: a 50,000-line batch would log 50,000): ids, statuses and durations, never inputs. The batch's
        line gives each stage's time: claim and write (database), inference (engine phases), announce (Redis),
        and idle (the engine waiting for this batch's claim after the last pass), so that where a batch's time
        goes can be read off the log."""
        task, claims, counts = current.task, current.batch.claims, current.counts
        batch_size = current.batch.n_inputs
        pass_id = uuid.uuid4().hex[:12]
        BATCH_INPUTS.labels(task).observe(batch_size)
        BATCH_TOKENS.labels(task).observe(counts.get("real_tokens", 0))
        INFERENCE_SECONDS.labels(task).observe(current.ms["inference"] / 1000)
        log.info("batch finished", extra={
            "pass_id": pass_id, "task": task, "jobs": len(claims), "inputs": batch_size,
            "batch_lines": sum(count for claim, count in zip(claims, current.payload_counts, strict=True)
                               if claim.from_file),
            "tokens": counts.get("real_tokens", 0), "attention_slots": counts.get("attention_slots", 0),
            **{f"{k}_ms": round(v, 1) for k, v in current.ms.items()},
            **{f"{k}_ms": round(v * 1000, 1) for k, v in current.phase_seconds.items()},
        })
        by_id = {claim.job_id: claim for claim in claims}
        # Each metric's child looked up once a pass, not once a job: a pass of 500 lines made 1,500 lookups.
        queue_wait, latency = QUEUE_WAIT_SECONDS.labels(task), JOB_LATENCY_SECONDS.labels(task)
        # A row of a batch's lines counts as its lines: those that failed, and the rest as the row ended.
        lines = {claim.job_id: count for claim, count in zip(claims, current.payload_counts, strict=True)}
        failed_lines = {outcome.claim.job_id: outcome.failed_lines for outcome in current.outcomes}
        finished: Counter[str] = Counter()
        for done in written:
            finished[done.status] += lines[done.job_id] - failed_lines.get(done.job_id, 0)
            finished[FAILED] += failed_lines.get(done.job_id, 0)
        for status, count in finished.items():
            if count:
                JOBS_FINISHED.labels(task, status).inc(count)
        for done in written:
            job_id, status, claim = done.job_id, done.status, by_id[done.job_id]
            queue_ms = claim.queue_ms
            queue_wait.observe(queue_ms / 1000)
            latency.observe((finished_at - claim.created_at).total_seconds())
            if claim.from_file:
                continue
            log.info("job finished", extra={"job_id": job_id, "task": task, "status": status, "pass_id": pass_id,
                                            "attempt": claim.attempt, "queue_ms": round(queue_ms, 1)})

    def _run(self, engine: Engine, payloads: list[JobPayload], ids: list[str]) -> list[_Result]:
        """The whole engine on `payloads` (of the jobs or lines `ids`), in this thread."""
        try:
            return [(output, None) for output in engine.run(payloads)]
        except BaseException as error:  # the tokenizers library panics with a BaseException
            if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit | EngineLost):
                raise
            return self._failed(engine, payloads, ids, error)

    def _failed(self, engine: Engine, payloads: list[JobPayload], ids: list[str],
                error: BaseException) -> list[_Result]:
        """The results of a batch the engine failed on: one job's (or batch line's) input spoiled it, so each runs
        alone and only that one fails — logged with its id (`ids`: each payload's job or line); a lone one fails
        with the error."""
        if len(payloads) > 1:
            return [result for payload, one in zip(payloads, ids, strict=True)
                    for result in self._run(engine, [payload], [one])]
        code = "invalid_input" if isinstance(error, InputError) else "inference_error"
        log.warning("an input failed: %s", error, extra={"job_id": ids[0], "code": code})
        return [(None, {"code": code, "message": str(error)})]


#: What the engine made of one payload: its output, or (None, its error).
_Result = tuple[list[Any] | None, dict[str, str] | None]


def _payloads(claim: Claim) -> list[JobPayload]:
    """What the engine needs of a claimed job: its one payload, or each line's of a row of a batch's lines."""
    if claim.batch_id is None:
        return [JobPayload(claim.input, claim.parameters, claim.token_ids)]
    return [JobPayload(*parts) for parts in batch_rows.line_parts(claim.input, claim.token_ids)]


def _outcomes(current: _Pass, results: list[_Result]) -> list[Outcome]:
    """The pass's outcomes, a claim's from its payloads' results: a row of a batch's lines succeeds with each line's
    output or error (`store/batch_rows.py`)."""
    outcomes, at = [], 0
    for claim, count in zip(current.batch.claims, current.payload_counts, strict=True):
        mine, at = results[at:at + count], at + count
        if claim.batch_id is not None:
            lines, failed = batch_rows.row_output(mine)
            outcomes.append(Outcome(claim, output=lines, failed_lines=failed))
        else:
            [(output, error)] = mine
            outcomes.append(Outcome(claim, output=output, error=error))
    return outcomes
