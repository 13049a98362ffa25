"""Retention (`store/retention.py`): what has outlived it goes with everything that hangs on it — the database's
foreign keys are on, so a row left behind, or one deleted before what names it, fails the sweep — and nothing else
goes: what is in flight, what is younger, what still has an event to deliver."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.tasks import TASK_FILL_MASK
from models.tables import (
    DELIVERED,
    ApiKey,
    Batch,
    Evaluation,
    File,
    FilePart,
    Job,
    WebhookAttempt,
    WebhookEvent,
)
from store import batch_output, batches, evaluations, files, jobs, retention
from tests.batch_rows import ran
from tests.doubles import ManualClock
from tests.unit.conftest import AddLines, Submit

RETENTION = timedelta(days=30)
BODY: dict[str, Any] = {"inputs": {"input_string": ["Paris is the [MASK] of France."]},
                        "webhook": "https://example.com/hook"}


def _run(sessions: sessionmaker[Session], clock: ManualClock, count: int) -> list[str]:
    """The `count` oldest queued jobs (interactive first, then lines) claimed and succeeded; their ids."""
    claims = jobs.claim_more(sessions, TASK_FILL_MASK, count, clock, 60).claims
    jobs.finish(sessions, [ran(claim, output=[[]]) for claim in claims], clock(), len(claims), 1.0)
    return [claim.job_id for claim in claims]


def _deliver_all(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """Every event delivered at its first attempt, as the sender records it."""
    with sessions() as session:
        for event_id in session.scalars(select(WebhookEvent.id)).all():
            session.add(WebhookAttempt(id=str(uuid.uuid4()), event_id=event_id, attempt=1, started_at=clock(),
                                       duration_ms=1.0, response_status=200))
        session.execute(update(WebhookEvent).values(status=DELIVERED, delivered_at=clock()))
        session.commit()


def _count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_an_ended_job_goes_with_its_events_once_it_has_outlived_retention(
        sessions: sessionmaker[Session], clock: ManualClock, submit: Submit) -> None:
    old, in_flight = submit(BODY), submit(BODY)
    assert _run(sessions, clock, 1) == [old.id]
    _deliver_all(sessions, clock)
    assert _count(sessions, WebhookEvent, WebhookEvent.job_id == old.id) == 2  # started, completed
    clock.advance(RETENTION.total_seconds() - 1)
    young = submit(BODY)
    assert _run(sessions, clock, 1) == [in_flight.id]  # ended now, but made 30 days ago
    _deliver_all(sessions, clock)
    assert retention.delete_expired(sessions, clock(), RETENTION)["jobs_expired"] == 0  # not yet
    clock.advance(2)

    assert retention.delete_expired(sessions, clock(), RETENTION)["jobs_expired"] == 2
    with sessions() as session:
        assert set(session.scalars(select(Job.id))) == {young.id}
    assert _count(sessions, WebhookEvent) == 0 and _count(sessions, WebhookAttempt) == 0


def test_a_job_waits_for_its_events_and_a_queued_one_stays_however_old(
        sessions: sessionmaker[Session], clock: ManualClock, submit: Submit) -> None:
    sent, queued = submit(BODY), submit(BODY)
    _run(sessions, clock, 1)  # its events pending: the sender has not delivered them
    clock.advance(RETENTION.total_seconds() + 1)
    assert retention.delete_expired(sessions, clock(), RETENTION)["jobs_expired"] == 0
    _deliver_all(sessions, clock)
    assert retention.delete_expired(sessions, clock(), RETENTION)["jobs_expired"] == 1
    with sessions() as session:
        assert set(session.scalars(select(Job.id))) == {queued.id}
        assert sent.id not in set(session.scalars(select(WebhookEvent.job_id)))


def test_an_ended_batch_goes_with_its_lines_and_files_and_its_input_once_nothing_names_it(
        sessions: sessionmaker[Session], clock: ManualClock, add_lines: AddLines, api_key: ApiKey) -> None:
    add_lines(3)
    with sessions() as session:
        batch = session.scalars(select(Batch)).one()
        batch_id, input_id = batch.id, batch.input_file_id
    _run(sessions, clock, 3)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 3
    with sessions() as session:  # as a batch created with a webhook: its end is an event
        session.execute(update(Batch).where(Batch.id == batch_id).values(webhook=BODY["webhook"]))
        session.commit()
    assert batches.finalize(sessions, batch_id, clock)
    _deliver_all(sessions, clock)
    with sessions() as session:
        ended = session.get_one(Batch, batch_id)
        assert ended.status == "completed" and ended.output_file_id and ended.error_file_id
        written = [ended.output_file_id, ended.error_file_id]
    running = add_lines(2)  # another batch, as old, its lines still queued: it stays, and so does its input
    clock.advance(RETENTION.total_seconds() + 1)

    counts = retention.delete_expired(sessions, clock(), RETENTION)
    assert counts["batches_expired"] == 1 and counts["files_expired"] == 2  # the first's input; the second's marked
    with sessions() as session:
        assert set(session.scalars(select(Batch.id))) != {batch_id} and session.get(Batch, batch_id) is None
        assert set(session.scalars(select(Job.id))) == set(running)
        assert session.get(File, input_id) is None and all(session.get(File, f) is None for f in written)
        kept = session.scalars(select(Batch.input_file_id)).one()
        marked = session.get_one(File, kept)
        assert marked.deleted_at == clock() and files.own_file(session, api_key.id, kept) is None
    assert _count(sessions, FilePart) == 0 and _count(sessions, WebhookEvent) == 0
    assert retention.delete_expired(sessions, clock(), RETENTION) == {
        "jobs_expired": 0, "batches_expired": 0, "evaluations_expired": 0, "files_expired": 0}  # once


def test_an_ended_evaluation_goes_with_its_examples_and_output(
        sessions: sessionmaker[Session], clock: ManualClock, add_examples: AddLines) -> None:
    examples = add_examples(2)
    with sessions() as session:
        evaluation_id = session.scalars(select(Evaluation.id)).one()
    assert sorted(_run(sessions, clock, 2)) == sorted(examples)
    with sessions() as session:
        session.execute(update(Evaluation).where(Evaluation.id == evaluation_id).values(webhook=BODY["webhook"]))
        session.commit()
    assert evaluations.finalize(sessions, evaluation_id, clock)
    _deliver_all(sessions, clock)
    with sessions() as session:
        assert session.get_one(Evaluation, evaluation_id).output_file_id is not None
    clock.advance(RETENTION.total_seconds() - 1)
    assert retention.delete_expired(sessions, clock(), RETENTION)["evaluations_expired"] == 0
    clock.advance(2)

    counts = retention.delete_expired(sessions, clock(), RETENTION)
    assert counts["evaluations_expired"] == 1 and counts["files_expired"] == 1  # its input, once nothing named it
    for model in (Evaluation, Job, File, FilePart, WebhookEvent, WebhookAttempt):
        assert _count(sessions, model) == 0


def test_a_file_deleted_by_hand_loses_its_row_once_nothing_names_it(
        sessions: sessionmaker[Session], clock: ManualClock, api_key: ApiKey) -> None:
    with sessions() as session:
        upload = files.write_file(session, api_key_id=api_key.id, purpose="batch", filename="a.jsonl",
                                  parts=[b"{}\n"], max_bytes=None, now=clock()).id
        assert files.delete_file(session, api_key.id, upload, clock())
        session.commit()
    assert retention.delete_expired(sessions, clock(), RETENTION)["files_expired"] == 1  # young, but deleted
    assert _count(sessions, File) == 0


def test_a_batch_kept_for_its_event_keeps_its_output_files(
        sessions: sessionmaker[Session], clock: ManualClock, add_lines: AddLines) -> None:
    """Its event still pending (a receiver down), an expired batch stays, and so do the files it names as its
    output: only its input's bytes go. Its output files go with it."""
    add_lines(2)
    with sessions() as session:
        batch_id = session.scalars(select(Batch.id)).one()
        session.execute(update(Batch).where(Batch.id == batch_id).values(webhook=BODY["webhook"]))
        session.commit()
    _run(sessions, clock, 2)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 2
    assert batches.finalize(sessions, batch_id, clock)  # its batch.completed event pending
    clock.advance(RETENTION.total_seconds() + 1)

    assert retention.delete_expired(sessions, clock(), RETENTION)["batches_expired"] == 0
    with sessions() as session:
        kept = session.get_one(Batch, batch_id)
        outputs = [kept.output_file_id, kept.error_file_id]
        assert all(session.get_one(File, file_id).deleted_at is None for file_id in outputs)
        assert session.get_one(File, kept.input_file_id).deleted_at == clock()
    assert _count(sessions, FilePart, FilePart.file_id.in_(outputs)) == 1  # the output's part (no errors)
    _deliver_all(sessions, clock)
    assert retention.delete_expired(sessions, clock(), RETENTION)["batches_expired"] == 1
    assert _count(sessions, File) == 0 and _count(sessions, FilePart) == 0
