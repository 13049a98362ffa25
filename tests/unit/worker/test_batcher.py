"""The batcher through the stub engine, on SQLite, no processes: one wake-up claims a batch, runs it in one engine
call and writes every job back; a bad input fails its own job only; a job canceled mid-batch keeps `canceled`."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from contract.job_json import job_to_public
from core.settings import Settings
from distilq.stack import wait_until
from models.tables import ApiKey, Job
from tests.doubles import ManualClock, RecordingEvents
from tests.unit.conftest import AddLines, Submit
from worker.batcher import Batcher
from worker.engine import EngineLost, JobPayload
from worker.engine.stub import StubEngine, fill_mask_output, question_answering_output


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    """The heap out of full collections, as a worker's is (`core.heap.freeze_heap`; without its collection first,
    which takes ~100 ms here): several tests here time passes, and in this process — pytest and every module the
    suite imported — a full collection took 100–200 ms, landed in a pass now and then, and priced lines as if that
    pass's claim had taken that long (passes of 10–13 lines where 5 were due)."""
    gc.freeze()
    yield
    gc.unfreeze()


ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 2}}


def make_batcher(sessions: sessionmaker[Session], clock: ManualClock, engine: StubEngine,
                 max_batch_size: int = 32) -> tuple[Batcher, RecordingEvents]:
    events = RecordingEvents()
    settings = Settings(max_batch_size=max_batch_size, max_batch_wait_ms=0, lease_s=30)
    return Batcher(sessions, lambda task: engine, events, settings, clock), events  # type: ignore[arg-type]


def stored(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as session:
        return session.get_one(Job, job_id)


def test_one_wake_up_runs_every_queued_job_of_the_task_in_one_call(submit: Submit, sessions: sessionmaker[Session],
                                                                   clock: ManualClock) -> None:
    texts = [f"Text {i} has a [MASK]." for i in range(5)]
    ids = [submit({"inputs": {"input_string": [text]}, "parameters": {"top_k": 3}}).id for text in texts]
    other_task = submit({"inputs": {"question": ["Who?"], "context": ["Ada wrote it."]}}, task="question-answering")
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine)

    batcher.drain("fill-mask")

    assert len(engine.calls) == 1 and len(engine.calls[0]) == 5
    assert sorted(events.finished_jobs) == sorted((job_id, "succeeded") for job_id in ids)
    for job_id, text in zip(ids, texts, strict=True):
        job = stored(sessions, job_id)
        assert job.status == "succeeded" and job.batch_size == 5 and job.attempts == 1
        assert job.output == [fill_mask_output(text, 3)]
    assert stored(sessions, other_task.id).status == "queued"


def test_a_held_job_is_announced_to_its_process_with_its_json_and_an_unheld_one_without(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    held, unheld = submit(ONE, held_by="process-a"), submit(ONE)
    batcher, events = make_batcher(sessions, clock, StubEngine("fill-mask"))
    batcher.drain("fill-mask")
    assert sorted(events.finished_jobs) == sorted([(held.id, "succeeded"), (unheld.id, "succeeded")])
    assert events.held_by == {held.id: "process-a"}
    # The JSON is built for the held job alone: nobody reads an unheld one's announcement.
    assert list(events.finished_public) == [held.id]
    assert events.finished_public[held.id] == job_to_public(stored(sessions, held.id))


def test_a_batch_holds_at_most_max_batch_size_inputs(submit: Submit, sessions: sessionmaker[Session],
                                                     clock: ManualClock) -> None:
    ids = [submit({"inputs": {"input_string": ["a [MASK]"] * 3}}).id for _ in range(4)]
    engine = StubEngine("fill-mask")
    batcher, _ = make_batcher(sessions, clock, engine, max_batch_size=7)
    batcher.drain("fill-mask")
    assert [len(call) for call in engine.calls] == [2, 2]  # 3 + 3 inputs a pass; a third job would make 9
    assert [stored(sessions, i).batch_size for i in ids] == [6, 6, 6, 6]


@pytest.fixture
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """The batcher's warnings, whatever an earlier test of this process did to logging (a bench's main run in-process
    turned warnings off; `logging.config.dictConfig` disables the loggers made before it): a handler of its own."""
    logger = logging.getLogger("worker.batcher")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    disabled, logger_disabled = logging.root.manager.disable, logger.disabled
    logging.disable(logging.NOTSET)
    logger.disabled = False
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.disabled = logger_disabled
    logging.disable(disabled)


def test_a_bad_input_fails_its_own_job_only(submit: Submit, sessions: sessionmaker[Session],
                                            clock: ManualClock, warnings_logged: list[logging.LogRecord]) -> None:
    good = submit(ONE)
    bad = submit({"inputs": {"input_string": ["no mask token here"]}})
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine)
    batcher.drain("fill-mask")
    assert [len(call) for call in engine.calls] == [2, 1, 1]  # the batch, then each job alone
    assert stored(sessions, good.id).status == "succeeded"
    failed = stored(sessions, bad.id)
    assert failed.status == "failed" and failed.output is None
    assert failed.error is not None and failed.error["code"] == "invalid_input"
    assert sorted(events.finished_jobs) == sorted([(good.id, "succeeded"), (bad.id, "failed")])
    # The log says which job's input failed, and why.
    assert [(record.job_id, record.code) for record in warnings_logged  # type: ignore[attr-defined]
            if record.getMessage().startswith("an input failed")] == [(bad.id, "invalid_input")]


class _LostEngine(StubEngine):
    def infer(self, jobs: list[JobPayload], prepared: object) -> list[JobPayload]:
        raise EngineLost("the device process is gone")


class _LostWhileFinishing(StubEngine):
    """Its first batch's outputs fail, and the device is gone by the time the batcher runs its jobs one by one."""

    def finish(self, jobs: list[JobPayload], inferred: Any) -> list[list[Any]]:
        raise ValueError("an output could not be made")

    def infer(self, jobs: list[JobPayload], prepared: object) -> list[JobPayload]:
        if self.calls:
            raise EngineLost("the device process is gone")
        return super().infer(jobs, prepared)


@pytest.mark.parametrize("engine", [_LostEngine, _LostWhileFinishing], ids=["on-the-device", "running-job-by-job"])
def test_a_lost_engine_fails_no_job_and_stops_the_drain(submit: Submit, sessions: sessionmaker[Session],
                                                        clock: ManualClock, engine: type[StubEngine]) -> None:
    """Not the jobs' fault: they are neither failed nor run one by one, but left to their claims' expiry (the worker
    exits on it, `worker/engine/device_process.py`) — lost on the device, or in the writer thread while a batch
    whose outputs failed runs again job by job."""
    ids = [submit(ONE).id for _ in range(3)]
    batcher, events = make_batcher(sessions, clock, engine("fill-mask"))
    with pytest.raises(EngineLost):
        batcher.drain("fill-mask")
    assert [stored(sessions, job_id).status for job_id in ids] == ["running"] * 3
    assert events.finished_jobs == []


def test_question_answering_jobs_get_the_engines_answers(submit: Submit, sessions: sessionmaker[Session],
                                                          clock: ManualClock) -> None:
    body = {"inputs": {"question": ["Who?", "What?"], "context": ["Ada wrote it.", "A short program."]},
            "parameters": {"top_k": 2}}
    job = submit(body, task="question-answering")
    batcher, _ = make_batcher(sessions, clock, StubEngine("question-answering"))
    batcher.drain("question-answering")
    assert stored(sessions, job.id).output == [question_answering_output("Who?", "Ada wrote it.", 2),
                                               question_answering_output("What?", "A short program.", 2)]


def test_a_redundant_wake_up_runs_nothing(submit: Submit, sessions: sessionmaker[Session],
                                          clock: ManualClock) -> None:
    first, second = submit(ONE), submit(ONE)
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine)
    assert batcher.drain("fill-mask") == 1
    assert batcher.drain("fill-mask") == 0  # a wake-up arriving after the drain that took both jobs
    assert len(engine.calls) == 1 and [stored(sessions, i).attempts for i in (first.id, second.id)] == [1, 1]
    # Each drain clears the wake-up flag before it claims, so that a job committed later gets its own wake-up.
    assert events.wakeups == [("taken", "fill-mask"), ("taken", "fill-mask")]


def test_a_drain_runs_the_backlog_in_full_batches_and_asks_another_worker_to_join(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    ids = [submit(ONE).id for _ in range(10)]
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine, max_batch_size=4)
    assert batcher.drain("fill-mask") == 3
    assert [len(call) for call in engine.calls] == [4, 4, 2]
    assert all(stored(sessions, i).status == "succeeded" for i in ids)
    # Jobs were left behind after the first two claims: each asked for a wake-up another worker can take.
    assert events.wakeups == [("taken", "fill-mask"), ("backlog", "fill-mask"), ("backlog", "fill-mask")]


def test_what_an_input_costs_is_told_only_once_passes_of_different_sizes_were_timed(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """Passes of one job each tell the presence nothing (`store.batch_rows.row_inputs` then goes by the device):
    their time is the pass's fixed cost, and priced at it one input would keep a GPU's rows of lines at one line."""
    engine = StubEngine("fill-mask", delay_s=0.020, delay_per_input_s=0.001)
    batcher, _ = make_batcher(sessions, clock, engine, max_batch_size=8)
    for _ in range(3):
        submit(ONE)
        batcher.drain("fill-mask")
    assert [len(call) for call in engine.calls] == [1, 1, 1]
    assert batcher.seconds_per_input("fill-mask") is None
    for _ in range(8):
        submit(ONE)
    batcher.drain("fill-mask")
    assert [len(call) for call in engine.calls][3:] == [8]
    # Less than a pass of one takes (20 ms its delay alone): that pass's fixed part is not an input's.
    assert 0 < batcher.seconds_per_input("fill-mask") < 0.020


def test_the_next_batch_is_claimed_while_the_engine_runs_the_current_one(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    ids = [submit(ONE).id for _ in range(4)]
    engine = StubEngine("fill-mask")
    engine.proceed.clear()  # hold the first pass inside the engine
    batcher, _ = make_batcher(sessions, clock, engine, max_batch_size=2)
    worker = threading.Thread(target=batcher.drain, args=("fill-mask",))
    worker.start()
    assert engine.running.wait(10)
    # While the first batch is on the engine, the second is claimed (running, not yet on the engine).
    wait_until(lambda: [stored(sessions, i).status for i in ids] == ["running"] * 4, 10, "the second claim")
    # …and prepared (tokenized) there, in the claimer thread, and handed to the device (which a device process
    # starts as the first ends), while the first is still on the engine.
    wait_until(lambda: len(engine.started) == 2, 10, "the second batch to be prepared and started")
    assert len(engine.calls) == 1 and engine.prepared[1][0].startswith("claimer")
    assert engine.started[1] == engine.prepared[1]
    engine.proceed.set()
    worker.join(10)
    assert [len(call) for call in engine.calls] == [2, 2]
    assert [stored(sessions, i).status for i in ids] == ["succeeded"] * 4
    # The outputs are made after the device's part, in the writer thread.
    assert [name.startswith("writer") for name, _ in engine.finished] == [True, True]


class _TimedOnTheDevice(StubEngine):
    """Reports the device's own time for each batch, as a device process does (`device_ms`): 3 s."""

    def infer(self, jobs: list[JobPayload], prepared: object) -> list[JobPayload]:
        self.phases.add("device", 3.0)
        return super().infer(jobs, prepared)


def test_the_next_claim_is_timed_by_the_device_s_own_time_not_the_wait_for_a_batch_started_ahead(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    submit(ONE)
    batcher, _ = make_batcher(sessions, clock, _TimedOnTheDevice("fill-mask"))
    batcher.drain("fill-mask")
    assert batcher._engine_cost["fill-mask"].seconds(1) == pytest.approx(3.0)  # the wait itself took milliseconds


def test_a_drain_gives_its_turn_back_after_its_slice_and_asks_for_another(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.batcher

    monkeypatch.setattr(worker.batcher, "DRAIN_SLICE_S", 0.0)  # the slice is over after the first pass
    ids = [submit(ONE).id for _ in range(3)]
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine, max_batch_size=1)
    assert batcher.drain("fill-mask") == 1
    assert [stored(sessions, i).status for i in ids] == ["succeeded", "queued", "queued"]
    assert events.wakeups[-1] == ("backlog", "fill-mask")
    assert batcher.drain("fill-mask") == 1  # the next wake-up goes on where it stopped
    assert [stored(sessions, i).status for i in ids] == ["succeeded", "succeeded", "queued"]


def test_a_worker_shutting_down_finishes_the_batch_at_hand_and_claims_no_other(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    ids = [submit(ONE).id for _ in range(3)]
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine, max_batch_size=1)
    batcher.stopping.set()  # Celery's warm shutdown began
    assert batcher.drain("fill-mask") == 1
    assert [stored(sessions, i).status for i in ids] == ["succeeded", "queued", "queued"]
    assert events.wakeups[-1] == ("backlog", "fill-mask")  # another worker takes the rest


def test_a_job_canceled_while_on_the_engine_keeps_canceled(submit: Submit, sessions: sessionmaker[Session],
                                                           clock: ManualClock) -> None:
    from store import jobs

    victim, other = submit(ONE), submit(ONE)
    engine = StubEngine("fill-mask")
    engine.proceed.clear()  # hold the batch inside the engine
    batcher, events = make_batcher(sessions, clock, engine)
    worker = threading.Thread(target=batcher.drain, args=("fill-mask",))
    worker.start()
    assert engine.running.wait(10)
    with sessions() as session:
        assert jobs.cancel(session, victim.id, clock())[0]
    engine.proceed.set()
    worker.join(10)
    assert not worker.is_alive()
    canceled = stored(sessions, victim.id)
    assert canceled.status == "canceled" and canceled.output is None
    assert stored(sessions, other.id).status == "succeeded"
    assert events.finished_jobs == [(other.id, "succeeded")]


@pytest.mark.parametrize("task", ["fill-mask", "question-answering"])
def test_the_stub_engine_refuses_what_the_real_one_refuses(task: str) -> None:
    from worker.engine import InputError, JobPayload

    engine = StubEngine(task)
    payload = (JobPayload({"input_string": ["no mask"]}, {"top_k": 1}) if task == "fill-mask"
               else JobPayload({"question": [" "], "context": ["text"]}, {"top_k": 1}))
    with pytest.raises(InputError):
        engine.run([payload])


def test_the_next_claim_waits_for_a_trickle_to_gather_but_not_for_a_backlog(
        sessions: sessionmaker[Session], clock: ManualClock) -> None:
    import time

    from store.jobs import Claim, ClaimedBatch
    from worker.batcher import _Pass

    batcher, _ = make_batcher(sessions, clock, StubEngine("fill-mask"))
    batcher.wait_s = 0.005
    claim = Claim({"id": "job", "n_inputs": 1, "priority": 0}, clock())
    now = time.monotonic()
    backlog = _Pass("fill-mask", ClaimedBatch([], [], more_queued=True), {"claim": 2.0}, claimed_at=now)
    trickle = _Pass("fill-mask", ClaimedBatch([], [], more_queued=False), {"claim": 2.0}, claimed_at=now)
    assert batcher._next_claim_at(backlog) == 0.0
    assert batcher._next_claim_at(trickle) == now + 0.005  # short passes: max_batch_wait_ms after the last claim
    batcher._engine_cost["fill-mask"].add(10, 0.5)  # long passes (a model on the CPU): just before this one ends
    long = _Pass("fill-mask", ClaimedBatch([claim] * 10, [], more_queued=False), {"claim": 2.0}, claimed_at=now)
    assert now + 0.34 < batcher._next_claim_at(long) < now + 0.375  # 10 inputs × 50 ms, less slack and the claim


@pytest.mark.parametrize("pass_s", [None, 10.0], ids=["no-pass-timed-yet", "passes-long-against-the-wait"])
def test_an_idle_workers_first_batch_is_topped_up_with_the_jobs_of_the_same_burst(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock, pass_s: float | None) -> None:
    first = submit(ONE)
    engine = StubEngine("fill-mask")
    batcher, _ = make_batcher(sessions, clock, engine)
    batcher.wait_s = 2.0  # the window in which the burst's second job arrives
    if pass_s is not None:
        batcher._engine_cost["fill-mask"].add(1, pass_s)
    worker = threading.Thread(target=batcher.drain, args=("fill-mask",))
    worker.start()
    wait_until(lambda: stored(sessions, first.id).status == "running", 10, "the first claim")
    second = submit(ONE)  # within max_batch_wait_ms of the first claim
    worker.join(30)
    assert [len(call) for call in engine.calls] == [2]
    assert stored(sessions, second.id).batch_size == 2


def test_where_a_pass_is_short_against_the_wait_an_idle_workers_lone_job_goes_at_once(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """A GPU's pass (a small model's) costs less than waiting `max_batch_wait_ms` for company: the first batch is
    not topped up, and a job that comes after its claim rides the next pass."""
    first = submit(ONE)
    engine = StubEngine("fill-mask")
    batcher, _ = make_batcher(sessions, clock, engine)
    batcher.wait_s = 2.0  # as above: a top-up would take the second job into the first pass
    batcher._engine_cost["fill-mask"].add(1, 0.001)  # passes of 1 ms
    engine.proceed.clear()  # the first pass holds until the second job is in: its job stays running till then
    worker = threading.Thread(target=batcher.drain, args=("fill-mask",))
    worker.start()
    wait_until(lambda: stored(sessions, first.id).status == "running", 10, "the first claim")
    second = submit(ONE)
    engine.proceed.set()
    worker.join(30)
    assert [len(call) for call in engine.calls] == [1, 1]
    assert stored(sessions, first.id).batch_size == stored(sessions, second.id).batch_size == 1


def test_a_batch_claimed_ahead_of_a_long_pass_is_topped_up_with_the_jobs_sent_after_its_claim(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """On a CPU a pass is long against a claim: the jobs that come after the next batch was claimed ahead ride the
    pass that batch starts, not the one after it."""
    first = submit(ONE)
    engine = StubEngine("fill-mask")
    batcher, _ = make_batcher(sessions, clock, engine, max_batch_size=4)
    batcher._engine_cost["fill-mask"].add(1, 1.0)  # long passes: the batch after the first is claimed late in it
    engine.proceed.clear()
    worker = threading.Thread(target=batcher.drain, args=("fill-mask",))
    worker.start()
    wait_until(lambda: stored(sessions, first.id).status == "running", 10, "the first claim")
    ahead = submit(ONE)
    wait_until(lambda: stored(sessions, ahead.id).status == "running", 10, "the claim ahead of the second pass")
    late = submit(ONE)  # during the first pass, after the second pass's claim
    engine.proceed.set()
    worker.join(30)
    assert [len(call) for call in engine.calls] == [1, 2]
    assert stored(sessions, late.id).batch_size == 2 and stored(sessions, late.id).status == "succeeded"


def test_only_a_pass_long_against_its_claim_is_topped_up_as_it_starts(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """A GPU's pass takes about as long as a claim: the device would wait for a top-up, so the batch claimed ahead
    goes to the device as it is prepared (`Engine.start`), as claimed. On a CPU it waits to be topped up as its pass
    starts, and is started then."""
    engine = StubEngine("fill-mask")
    batcher, _ = make_batcher(sessions, clock, engine, max_batch_size=4)
    batcher._engine_cost["fill-mask"].add(1, 0.001)  # a pass as long as a claim
    first = submit(ONE)
    ahead = batcher._claim("fill-mask")
    late = submit(ONE)
    batcher._top_up_late(ahead)
    assert [claim.job_id for claim in ahead.batch.claims] == [first.id] and ahead.started
    assert [jobs for _, jobs in engine.started] == [ahead.prepared] and stored(sessions, late.id).status == "queued"
    batcher._engine_cost["fill-mask"].add(1, 100.0)  # passes of 100 s: long against any claim
    ahead = batcher._claim("fill-mask")
    latest = submit(ONE)
    assert [claim.job_id for claim in ahead.batch.claims] == [late.id] and not ahead.started
    batcher._top_up_late(ahead)
    assert [claim.job_id for claim in ahead.batch.claims] == [late.id, latest.id]
    assert len(ahead.payloads) == 2 and ahead.prepared is None  # prepared again, whole, and started when it runs
    assert stored(sessions, latest.id).status == "running" and len(engine.started) == 1


def test_while_interactive_jobs_are_about_a_pass_takes_only_lines_pass_ms_of_lines(
        submit: Submit, add_lines: AddLines, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """Lines are priced at what one more input adds to a pass (here 4 ms in the engine, on top of 80 ms a pass, and
    its share of the claim and the write), not at a small pass's average (14 ms an input for the last pass, of 8),
    which would leave one line a pass."""
    lines = add_lines(40)
    engine = StubEngine("fill-mask", delay_s=0.08, delay_per_input_s=0.004)
    batcher, _ = make_batcher(sessions, clock, engine, max_batch_size=32)
    batcher.settings.lines_pass_ms = 22
    batcher.drain("fill-mask")  # a batch file alone: full passes
    assert [len(call) for call in engine.calls] == [32, 8]

    more = add_lines(40)
    job = submit(ONE)
    engine.calls.clear()
    batcher.drain("fill-mask")
    # The interactive job with up to 5 lines (22 ms of 4-ms lines, with their claim and write), then passes of lines
    # of about that much.
    assert 3 <= len(engine.calls[0]) - 1 <= 5 and all(3 <= len(call) <= 10 for call in engine.calls[1:4])
    assert stored(sessions, job.id).status == "succeeded"
    assert all(stored(sessions, job_id).status == "succeeded" for job_id in lines + more)


def test_every_pass_with_a_file_s_lines_asks_beat_to_write_them(
        submit: Submit, add_lines: AddLines, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """Beat appends them to the batch's files and ends a file whose last line the pass wrote, rather than at its
    next periodic sweep: on a GPU that comes later than a whole batch runs."""
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine, max_batch_size=32)
    add_lines(40)
    batcher.drain("fill-mask")
    assert [len(call) for call in engine.calls] == [32, 8]
    assert events.files_moved_asks == 2
    submit(ONE)
    batcher.drain("fill-mask")
    assert len(engine.calls) == 3 and events.files_moved_asks == 2  # no file's line in that pass


def test_a_row_of_a_batch_s_lines_runs_each_line_as_a_job_and_a_bad_line_fails_alone(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock,
        warnings_logged: list[logging.LogRecord]) -> None:
    """A row of 4 lines (`store/batch_rows.py`) is 4 of the engine's jobs, each with its own parameters and token
    ids; a line the engine refuses fails alone, and the row succeeds with each line's output or error."""
    from store import batch_rows, batches
    from store.batch_rows import BatchLine
    from tests.unit.conftest import begun_batch

    batch_id = begun_batch(sessions, api_key, clock)
    texts = ["A [MASK] one.", "no mask token here", "A [MASK] three.", "A [MASK] four."]
    lines = [BatchLine(n, f"r{n}", "fill-mask", "stub", {"input_string": [text]}, {"top_k": n}, 1, None,
                       f"ids{n}".encode() if n % 2 else None) for n, text in enumerate(texts, start=1)]
    rows = list(batch_rows.rows(lines, batch_id=batch_id, api_key_id=api_key.id, now=clock(),
                                row_inputs={"fill-mask": 4}))
    assert len(rows) == 1 and batches.add_checked_lines(sessions, batch_id, rows, 4, clock())
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine)
    batcher.drain("fill-mask")
    assert [len(call) for call in engine.calls] == [4, 1, 1, 1, 1]  # the pass, then each line alone
    assert [(job.parameters, job.token_ids) for job in engine.calls[0]] == [
        ({"top_k": 1}, b"ids1"), ({"top_k": 2}, None), ({"top_k": 3}, b"ids3"), ({"top_k": 4}, None)]
    row = stored(sessions, rows[0]["id"])
    assert row.status == "succeeded" and row.failed_lines == 1 and row.error is None
    assert row.output == [{"output": [fill_mask_output(texts[0], 1)]},
                          {"error": {"code": "invalid_input", "message": "an input has no mask token [MASK]"}},
                          {"output": [fill_mask_output(texts[2], 3)]}, {"output": [fill_mask_output(texts[3], 4)]}]
    assert events.finished_jobs == [(row.id, "succeeded")] and events.files_moved_asks == 1
    # The failed line logged by its own id (what `GET /v1/jobs/{id}` reads), not its row's.
    assert [record.job_id for record in warnings_logged  # type: ignore[attr-defined]
            if record.getMessage().startswith("an input failed")] == [batch_rows.line_id(row.id, 1)]
