"""`beat`'s sweep on SQLite with a hand-moved clock, no processes: jobs of dead workers handed on, lost messages
re-published, expired idempotency keys freed, due webhook events published."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from models.tables import Job
from store import jobs
from tests.doubles import ManualClock, RecordingEvents
from tests.unit.conftest import Submit
from worker.sweeper import Sweeper

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}
SETTINGS = Settings(lease_s=10, requeue_after_s=60, max_attempts=2)


def make_sweeper(sessions: sessionmaker[Session], clock: ManualClock) -> tuple[Sweeper, RecordingEvents]:
    events = RecordingEvents()
    return Sweeper(sessions, events, SETTINGS, clock), events  # type: ignore[arg-type]


def test_a_dead_workers_job_is_requeued_then_failed(submit: Submit, sessions: sessionmaker[Session],
                                                    clock: ManualClock) -> None:
    job = submit({**ONE, "webhook": "https://example.com/hook", "webhook_events_filter": ["completed"]})
    sweeper, events = make_sweeper(sessions, clock)

    jobs.claim_job(sessions, job.id, clock, SETTINGS.lease_s)
    assert sweeper.sweep()["reclaimed"] == 0
    clock.advance(SETTINGS.lease_s + 1)
    assert sweeper.sweep()["reclaimed"] == 1
    assert events.queued_jobs == [(job.id, "fill-mask")]

    jobs.claim_job(sessions, job.id, clock, SETTINGS.lease_s)
    clock.advance(SETTINGS.lease_s + 1)
    counts = sweeper.sweep()
    assert counts["reclaimed"] == 1
    assert events.finished_jobs == [(job.id, "failed")]
    assert len(events.webhook_events) == 1  # job.completed, published by the same sweep
    with sessions() as session:
        failed = session.get_one(Job, job.id)
    assert failed.error == {"code": "worker_lost", "message": "the worker running this job was lost 2 times"}


def test_a_job_whose_message_was_lost_is_published_again(submit: Submit, sessions: sessionmaker[Session],
                                                         clock: ManualClock) -> None:
    job = submit(ONE)
    sweeper, events = make_sweeper(sessions, clock)
    assert sweeper.sweep()["republished"] == 0
    clock.advance(SETTINGS.requeue_after_s + 1)
    assert sweeper.sweep()["republished"] == 1
    assert sweeper.sweep()["republished"] == 0  # once per period, not once per sweep
    assert events.queued_jobs == [(job.id, "fill-mask")]


def test_expired_idempotency_keys_are_freed(submit: Submit, sessions: sessionmaker[Session],
                                            clock: ManualClock) -> None:
    submit(ONE, idempotency_key="k")
    sweeper, _ = make_sweeper(sessions, clock)
    assert sweeper.sweep()["keys_freed"] == 0
    clock.advance(61)
    assert sweeper.sweep()["keys_freed"] == 1


def test_a_webhook_event_whose_message_was_lost_is_published_again(submit: Submit, sessions: sessionmaker[Session],
                                                                    clock: ManualClock) -> None:
    job = submit({**ONE, "webhook": "https://example.com/hook"})
    _, started = jobs.claim_job(sessions, job.id, clock, SETTINGS.lease_s)
    sweeper, events = make_sweeper(sessions, clock)
    assert sweeper.sweep()["webhooks_published"] == 0  # the claim's caller publishes it
    clock.advance(31)  # still undelivered after the republish window: that message was lost
    assert sweeper.sweep()["webhooks_published"] == 1
    assert events.webhook_events == started
    assert sweeper.sweep()["webhooks_published"] == 0
