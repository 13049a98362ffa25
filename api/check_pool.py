"""Where a batch file's chunks are judged (`api/batch_lines.py`) and queued: in check processes beside the API
process, or in the request's own thread.

Judging — JSON, the schema, the tokenizer, the job rows — is ~80 % of a file's check and pure Python, held by
one interpreter's lock: one API process judges some 5,000–7,000 lines a second at best, where a GPU's engine runs
tens of thousands. `DISTILQ_CHECK_PROCESSES` processes judge chunks side by side while the API process keeps the
order and the custom_ids' uniqueness across chunks (`api/batches.py`). A chunk whose lines all pass (none
repeating another's custom_id) is queued where it was judged, at once (`judge_and_queue`): its job rows never cross
back to the API process, whose unpickling and inserting of them was the check's serial part (57–64 CPU-µs a line:
BENCHMARKS.md), and chunks are inserted side by side. A chunk queued ahead of a bad line or of a custom_id used in
an earlier chunk is deleted with the batch when it fails (`store.batches.fail_check`), as lines queued by the
request's thread always were; and a chunk judged once the batch is no longer validating queues nothing.

Check processes are spawned as an API process starts (under gunicorn; elsewhere at the first batch), all at once,
each loading the served models' tokenizers, and kept for its life; spawned, not forked, since an API process runs
threads; they leave with it, even killed outright. Each connects to the database for a chunk's insert only (on
PostgreSQL: no connection kept). A check process that dies fails the check it was judging for (503, the batch
failed) and the next batch starts a new pool. With 0 processes, chunks are judged and queued in the request's
thread, as the same code.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session, sessionmaker

from api.batch_lines import LineChunk, Verdict, judge
from api.errors import ApiError
from api.model_inputs import ServedModel, load_served_model, model_unavailable
from core.heap import freeze_heap
from core.settings import Settings
from core.tasks import TASKS, ModelUnavailable
from models.db import make_engine, make_session_factory
from store import batch_rows, batches


class CheckerModelUnavailable(Exception):
    """A check process could not load `task`'s model (its `ModelUnavailable`, with what to do about it)."""

    def __init__(self, task: str, message: str) -> None:
        super().__init__(task, message)
        self.task, self.message = task, message


@dataclass(frozen=True)
class JudgedChunk:
    """A chunk's verdicts, in its lines' order, and whether its lines were queued where it was judged (then its
    verdicts hold no job rows) and of which tasks."""

    verdicts: list[Verdict]
    queued: bool
    tasks: frozenset[str] = frozenset()


def judge_and_queue(chunk: LineChunk, settings: Settings, served: Callable[[str], ServedModel],
                    sessions: sessionmaker[Session]) -> JudgedChunk:
    """The chunk judged; and queued as jobs of its batch, while the batch is validating, when `chunk.queue` and its
    lines all pass with no custom_id twice among them (the API process checks them against earlier chunks')."""
    verdicts = judge(chunk, settings, served)
    lines = [verdict.line for verdict in verdicts if verdict.line is not None]
    # The API process needs no line back: it queues none.
    verdicts = [replace(verdict, line=None) for verdict in verdicts]
    if not chunk.queue or len(lines) < len(verdicts) or len({v.custom_id for v in verdicts}) < len(verdicts):
        return JudgedChunk(verdicts, False)
    # Not validating any more (failed, or abandoned): nothing queued, and the API process finds as much.
    rows = batch_rows.rows(lines, batch_id=chunk.batch_id, api_key_id=chunk.api_key_id, now=chunk.now,
                           row_inputs=chunk.row_inputs)
    batches.add_checked_lines(sessions, chunk.batch_id, rows, None, chunk.now)
    return JudgedChunk(verdicts, True, frozenset(line.task for line in lines))


# A check process's own state: its settings, the models it loaded, and its database sessions.
_settings: Settings | None = None
_models: dict[str, ServedModel] = {}
_sessions: sessionmaker[Session] | None = None


def _start_checker(settings: Settings) -> None:
    global _settings
    _settings = settings
    # The processes are the parallelism: the tokenizer's own thread pool in each would only contend.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # Each check process holds the writing end of the pool's queue of chunks too, so it would never see that queue
    # end: an API process killed outright would leave its check processes waiting for ever. They leave with it.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True, name="parent-watch").start()
    freeze_heap()  # the modules it imported: each chunk's rows would bring on full collections of them


def _exit_with(parent: int) -> None:
    multiprocessing.connection.wait([parent])
    os._exit(0)


def _served_here(task: str) -> ServedModel:
    assert _settings is not None
    if task not in _models:
        try:
            _models[task] = load_served_model(_settings.model_id(task))
        except ModelUnavailable as error:
            raise CheckerModelUnavailable(task, f"{error}{_settings.offline_hint(task)}") from None
    return _models[task]


def _warm() -> None:
    """Loads the served models' tokenizers, those that load: a check process is ready for any chunk."""
    for task in TASKS:
        try:
            _served_here(task)
        except CheckerModelUnavailable:
            pass  # a chunk that needs it says so


def _judge_here(chunk: LineChunk) -> JudgedChunk:
    global _sessions
    assert _settings is not None
    if _sessions is None:
        _sessions = make_session_factory(make_engine(_settings.resolved_database_url, pooled=False))
    return judge_and_queue(chunk, _settings, _served_here, _sessions)


def check_interrupted() -> ApiError:
    """The 503 of a check whose check process stopped (killed, out of memory) while it judged the file's chunks."""
    return ApiError(503, "check_interrupted", "a process checking the file stopped; create the batch again",
                    headers={"Retry-After": "5"})


def processes_for(settings: Settings) -> int:
    """The check processes an API process with these settings runs: `check_processes`, or `default_processes`."""
    return settings.check_processes if settings.check_processes is not None else default_processes()


def default_processes() -> int:
    """Half the cores this process may use, at most 8 — none below 4 cores. The other half runs the API's requests,
    the worker's Python and the database; on two cores a check process only takes the worker's core and adds the
    lines' pickling (BENCHMARKS.md); beyond 8 the API process's inserts are the bound."""
    cores = len(os.sched_getaffinity(0))
    return 0 if cores < 4 else min(8, cores // 2)


class CheckPool:
    """Judges chunks in `processes` check processes (0: in the caller's thread), one pool per API process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.processes = processes_for(settings)
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Chunks a check keeps submitted at once: every process busy, and one more waiting for each."""
        return max(1, 2 * self.processes)

    def start(self) -> None:
        """Starts the check processes now (an API process's start: `api/gunicorn_conf.py`), not at the first
        check; none where there are none to start."""
        if self.processes > 0:
            self._started()

    def submit(self, chunk: LineChunk, served: Callable[[str], ServedModel],
               sessions: sessionmaker[Session]) -> Future[JudgedChunk]:
        """The chunk judged (and maybe queued: `judge_and_queue`), to come. `served` gives the models, `sessions`
        the database, where the chunk is judged in this process."""
        if self.processes == 0:
            done: Future[JudgedChunk] = Future()
            try:
                done.set_result(judge_and_queue(chunk, self.settings, served, sessions))
            except BaseException as error:
                done.set_exception(error)
            return done
        try:
            return self._started().submit(_judge_here, chunk)
        except BrokenProcessPool:
            self._forget()
            raise check_interrupted() from None

    def result(self, judged: Future[JudgedChunk]) -> JudgedChunk:
        """The chunk judged; raises the API's 503 where a check process stopped (the pool is then started anew at the
        next submit) or could not load a model (`model_unavailable`, as the request's thread would)."""
        try:
            return judged.result()
        except BrokenProcessPool:
            self._forget()
            raise check_interrupted() from None
        except CheckerModelUnavailable as error:
            raise model_unavailable(error.task, error.message) from None

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(self.processes, multiprocessing.get_context("spawn"),
                                                     initializer=_start_checker, initargs=(self.settings,))
                # All of them at once, each loading the models (the pool would start one a chunk, while none is
                # idle): the first check does not wait for them one by one.
                for _ in range(self.processes):
                    self._executor.submit(_warm)
            return self._executor

    def close(self) -> None:
        """Stops the check processes, if any (an API process's exit does as much)."""
        self._forget(wait=True)

    def _forget(self, wait: bool = False) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)
