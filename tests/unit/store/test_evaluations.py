"""`store.evaluations`: an evaluation's examples counted by status while it runs, and stored once it has ended
(they no longer change), so that its answers — a list page of many — count nothing again."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from core.tasks import TASK_FILL_MASK
from models.tables import Evaluation, Job
from store import evaluations, jobs
from store.jobs import Outcome
from tests.doubles import ManualClock
from tests.unit.conftest import AddLines


def _counts(sessions: sessionmaker[Session], evaluation_id: str) -> dict[str, int]:
    with sessions() as session:
        return evaluations.counts(session, session.get_one(Evaluation, evaluation_id))


def test_an_ended_evaluations_counts_are_stored_at_its_end(sessions: sessionmaker[Session], add_examples: AddLines,
                                                           clock: ManualClock) -> None:
    ids = add_examples(4)
    with sessions() as session:
        evaluation_id = str(session.get_one(Job, ids[0]).evaluation_id)
    assert _counts(sessions, evaluation_id) == {"queued": 4}
    claims = jobs.claim_more(sessions, TASK_FILL_MASK, 4, clock, 60).claims
    jobs.finish(sessions, [Outcome(claim, error={"code": "input_error", "message": "bad"}) if i == 0
                           else Outcome(claim, output=[[{"token_str": "a", "token": 5, "score": 0.5}]])
                           for i, claim in enumerate(claims)], clock(), 4, 1.0)
    assert _counts(sessions, evaluation_id) == {"succeeded": 3, "failed": 1}  # counted: it has not ended
    assert evaluations.due_for_finalizing(sessions, 10) == [evaluation_id]
    evaluations.finalize(sessions, evaluation_id, clock)
    with sessions() as session:
        ended = session.get_one(Evaluation, evaluation_id)
        assert ended.completed_at is not None and ended.final_counts == {"succeeded": 3, "failed": 1}
        # The stored counts are what its answers read from now on: a row changed behind its back does not show.
        session.execute(update(Job).where(Job.id == ids[1]).values(status="canceled"))
        session.commit()
    assert _counts(sessions, evaluation_id) == {"succeeded": 3, "failed": 1}


def test_an_evaluation_whose_file_failed_counts_no_example(sessions: sessionmaker[Session], add_examples: AddLines,
                                                           clock: ManualClock) -> None:
    add_examples(1)  # for its file and key
    with sessions() as session:
        template = session.query(Evaluation).one()
        failed = evaluations.failed_evaluation(
            session, error={"code": "invalid_file", "message": "no"}, id=evaluations.new_evaluation_id(),
            api_key_id=template.api_key_id, task=TASK_FILL_MASK, model="stub", input_file_id=template.input_file_id,
            metric_names=[], config={}, created_at=clock())
        assert failed.final_counts == {} and evaluations.counts(session, failed) == {}
