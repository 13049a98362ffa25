"""The batcher through the stub engine, on SQLite, no processes: one wake-up claims a batch, runs it in one engine
call and writes every job back; a bad input fails its own job only; a job canceled mid-batch keeps `canceled`."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from models.tables import Job
from tests.doubles import ManualClock, RecordingEvents
from tests.unit.conftest import Submit
from worker.batcher import Batcher
from worker.engine.stub import StubEngine, fill_mask_output, question_answering_output

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

    batcher.handle(ids[2])

    assert len(engine.calls) == 1 and len(engine.calls[0]) == 5
    assert sorted(events.finished_jobs) == sorted((job_id, "succeeded") for job_id in ids)
    for job_id, text in zip(ids, texts, strict=True):
        job = stored(sessions, job_id)
        assert job.status == "succeeded" and job.batch_size == 5 and job.attempts == 1
        assert job.output == [fill_mask_output(text, 3)]
    assert stored(sessions, other_task.id).status == "queued"


def test_a_batch_holds_at_most_max_batch_size_inputs(submit: Submit, sessions: sessionmaker[Session],
                                                     clock: ManualClock) -> None:
    ids = [submit({"inputs": {"input_string": ["a [MASK]"] * 3}}).id for _ in range(4)]
    engine = StubEngine("fill-mask")
    batcher, _ = make_batcher(sessions, clock, engine, max_batch_size=7)
    batcher.handle(ids[0])
    assert [len(call) for call in engine.calls] == [2]  # 3 + 3 inputs; a third job would make 9
    assert [stored(sessions, i).status for i in ids] == ["succeeded", "succeeded", "queued", "queued"]


def test_a_bad_input_fails_its_own_job_only(submit: Submit, sessions: sessionmaker[Session],
                                            clock: ManualClock) -> None:
    good = submit(ONE)
    bad = submit({"inputs": {"input_string": ["no mask token here"]}})
    engine = StubEngine("fill-mask")
    batcher, events = make_batcher(sessions, clock, engine)
    batcher.handle(good.id)
    assert [len(call) for call in engine.calls] == [2, 1, 1]  # the batch, then each job alone
    assert stored(sessions, good.id).status == "succeeded"
    failed = stored(sessions, bad.id)
    assert failed.status == "failed" and failed.output is None
    assert failed.error is not None and failed.error["code"] == "invalid_input"
    assert sorted(events.finished_jobs) == sorted([(good.id, "succeeded"), (bad.id, "failed")])


def test_question_answering_jobs_get_the_engines_answers(submit: Submit, sessions: sessionmaker[Session],
                                                          clock: ManualClock) -> None:
    body = {"inputs": {"question": ["Who?", "What?"], "context": ["Ada wrote it.", "A short program."]},
            "parameters": {"top_k": 2}}
    job = submit(body, task="question-answering")
    batcher, _ = make_batcher(sessions, clock, StubEngine("question-answering"))
    batcher.handle(job.id)
    assert stored(sessions, job.id).output == [question_answering_output("Who?", "Ada wrote it.", 2),
                                               question_answering_output("What?", "A short program.", 2)]


def test_a_redundant_wake_up_runs_nothing(submit: Submit, sessions: sessionmaker[Session],
                                          clock: ManualClock) -> None:
    first, second = submit(ONE), submit(ONE)
    engine = StubEngine("fill-mask")
    batcher, _ = make_batcher(sessions, clock, engine)
    batcher.handle(first.id)
    batcher.handle(second.id)  # its message arrives after the batch that took it
    batcher.handle("no-such-job")
    assert len(engine.calls) == 1


def test_a_job_canceled_while_on_the_engine_keeps_canceled(submit: Submit, sessions: sessionmaker[Session],
                                                           clock: ManualClock) -> None:
    from store import jobs

    victim, other = submit(ONE), submit(ONE)
    engine = StubEngine("fill-mask")
    engine.proceed.clear()  # hold the batch inside the engine
    batcher, events = make_batcher(sessions, clock, engine)
    worker = threading.Thread(target=batcher.handle, args=(victim.id,))
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
