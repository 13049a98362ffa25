"""`beat`'s sweep on SQLite with a hand-moved clock, no processes: jobs of dead workers handed on, lost messages
re-published, expired idempotency keys freed, due webhook events published, a batch whose check stopped failed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from models.tables import ApiKey, Batch, Job
from store import jobs
from tests.batch_rows import line_rows, ran
from tests.doubles import ManualClock, RecordingEvents
from tests.unit.conftest import Submit, begun_batch, claim_next
from worker.sweeper import DEAD_AFTER, Sweeper

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}
SETTINGS = Settings(lease_s=10, requeue_after_s=60, max_attempts=2)


def make_sweeper(sessions: sessionmaker[Session], clock: ManualClock) -> tuple[Sweeper, RecordingEvents]:
    events = RecordingEvents()
    return Sweeper(sessions, events, SETTINGS, clock), events  # type: ignore[arg-type]


def test_a_dead_workers_job_is_requeued_then_failed(submit: Submit, sessions: sessionmaker[Session],
                                                    clock: ManualClock) -> None:
    job = submit({**ONE, "webhook": "https://example.com/hook", "webhook_events_filter": ["completed"]},
                 held_by="process-a")
    sweeper, events = make_sweeper(sessions, clock)

    claim_next(sessions, clock, SETTINGS.lease_s)
    assert sweeper.sweep()["reclaimed"] == 0
    clock.advance(SETTINGS.lease_s + 1)
    assert sweeper.sweep()["reclaimed"] == 1
    assert events.queued_jobs == [(job.id, "fill-mask")]

    claim_next(sessions, clock, SETTINGS.lease_s)
    clock.advance(SETTINGS.lease_s + 1)
    counts = sweeper.sweep()
    assert counts["reclaimed"] == 1
    assert events.finished_jobs == [(job.id, "failed")]
    assert events.held_by == {job.id: "process-a"}  # announced to the process holding its request
    assert len(events.webhook_events) == 1  # job.completed, published by the same sweep
    with sessions() as session:
        failed = session.get_one(Job, job.id)
    assert failed.error == {"code": "worker_lost", "message": "the worker running this job was lost 2 times"}


def test_a_job_whose_message_was_lost_is_published_again(submit: Submit, sessions: sessionmaker[Session],
                                                         clock: ManualClock) -> None:
    job = submit(ONE)
    sweeper, events = make_sweeper(sessions, clock)
    assert sweeper.sweep()["stale_woken"] == 0
    clock.advance(SETTINGS.requeue_after_s + 1)
    assert sweeper.sweep()["stale_woken"] == 1
    assert sweeper.sweep()["stale_woken"] == 0  # once per period, not once per sweep
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
    submit({**ONE, "webhook": "https://example.com/hook"})
    _, started = claim_next(sessions, clock, SETTINGS.lease_s)
    sweeper, events = make_sweeper(sessions, clock)
    assert sweeper.sweep()["webhooks_published"] == 0  # the claim's caller publishes it
    clock.advance(31)  # still undelivered after the republish window: that message was lost
    assert sweeper.sweep()["webhooks_published"] == 1
    assert events.webhook_events == started
    assert sweeper.sweep()["webhooks_published"] == 0


def test_the_jobs_of_a_worker_known_dead_are_handed_on_before_their_lease_ends(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """Once only the lease (120 s by default) told that a worker died; its presence key (30 s) is gone sooner."""
    live = {"host:1", "host:2"}
    settings = Settings(lease_s=120, max_attempts=3)
    events = RecordingEvents()
    sweeper = Sweeper(sessions, events, settings, clock, lambda: set(live))  # type: ignore[arg-type]
    mine, other = submit(ONE), submit(ONE)
    claim_next(sessions, clock, settings.lease_s, "host:1")
    claim_next(sessions, clock, settings.lease_s, "host:2")

    live.discard("host:1")
    assert sweeper.sweep()["reclaimed"] == 0  # missing once: maybe Redis restarted and it has not written it yet
    clock.advance(DEAD_AFTER.total_seconds() - 1)
    assert sweeper.sweep()["reclaimed"] == 0
    clock.advance(1)
    assert sweeper.sweep()["reclaimed"] == 1
    assert events.queued_jobs == [(mine.id, "fill-mask")]
    with sessions() as session:
        assert session.get_one(Job, other.id).status == "running"  # its worker lives


def test_a_worker_that_comes_back_in_time_keeps_its_jobs(submit: Submit, sessions: sessionmaker[Session],
                                                        clock: ManualClock) -> None:
    live: set[str] = set()
    sweeper = Sweeper(sessions, RecordingEvents(), Settings(lease_s=120), clock,  # type: ignore[arg-type]
                      lambda: set(live))
    submit(ONE)
    claim_next(sessions, clock, 120, "host:1")
    sweeper.sweep()
    clock.advance(DEAD_AFTER.total_seconds() - 1)
    live.add("host:1")  # Redis came back empty and the worker wrote its key again
    sweeper.sweep()
    live.discard("host:1")
    clock.advance(DEAD_AFTER.total_seconds() - 1)
    assert sweeper.sweep()["reclaimed"] == 0  # missing anew: counted from now


def test_presence_unknown_leaves_the_decision_to_leases(submit: Submit, sessions: sessionmaker[Session],
                                                       clock: ManualClock) -> None:
    def redis_away() -> set[str]:
        raise ConnectionError("Redis is away")

    sweeper = Sweeper(sessions, RecordingEvents(), Settings(lease_s=120), clock, redis_away)  # type: ignore[arg-type]
    submit(ONE)
    claim_next(sessions, clock, 120, "host:1")
    clock.advance(3 * DEAD_AFTER.total_seconds())
    assert sweeper.sweep()["reclaimed"] == 0


def test_a_batch_whose_check_stopped_is_failed_and_its_lines_deleted(sessions: sessionmaker[Session],
                                                                     api_key: ApiKey, clock: ManualClock) -> None:
    """The API process checking a batch's file died: beat fails the batch once its check has not moved for
    `check_lease_s`, and deletes the lines that check queued."""
    from store import batches

    batch_id = begun_batch(sessions, api_key, clock)
    assert batches.add_checked_lines(sessions, batch_id, line_rows(batch_id, api_key.id, [1], clock()), 1, clock())
    sweeper, _ = make_sweeper(sessions, clock)
    clock.advance(SETTINGS.check_lease_s - 1)
    assert sweeper.sweep()["checks_abandoned"] == 0
    clock.advance(2)
    assert sweeper.sweep()["checks_abandoned"] == 1
    with sessions() as session:
        batch = session.get_one(Batch, batch_id)
        assert batch.status == "failed" and batch.errors is not None
        assert [error["code"] for error in batch.errors["data"]] == ["check_interrupted"]
        assert session.scalars(select(Job).where(Job.batch_id == batch_id)).all() == []
    assert sweeper.sweep()["checks_abandoned"] == 0


def test_asked_beat_writes_a_batch_s_ended_lines_a_part_at_a_time_then_ends_it(
        sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> None:
    """What a worker's ask after a pass makes beat do (`Sweeper.sweep_files`): nothing until a part's worth of a
    batch's lines have ended (`FEWEST_LINES`); then those lines; once none is in flight, the rest and the end."""
    from store import batch_output, batches, jobs

    count = batch_output.FEWEST_LINES + 3
    batch_id = begun_batch(sessions, api_key, clock)
    rows = line_rows(batch_id, api_key.id, range(1, count + 1), clock())
    assert batches.add_checked_lines(sessions, batch_id, rows, count, clock())
    with sessions() as session:
        assert batches.start_batch(session, batch_id, count, clock())
    sweeper, events = make_sweeper(sessions, clock)

    def run(lines: int) -> None:
        claims = jobs.claim_more(sessions, "fill-mask", lines, clock, SETTINGS.lease_s).claims
        jobs.finish(sessions, [ran(claim, output=[[]]) for claim in claims], clock(), lines, 1.0)

    run(batch_output.FEWEST_LINES - 1)
    assert sweeper.sweep_files() == {"batch_lines_written": 0, "batches_finalized": 0, "evaluations_finalized": 0}
    run(2)
    assert sweeper.sweep_files()["batch_lines_written"] == batch_output.FEWEST_LINES + 1
    run(2)
    assert sweeper.sweep_files() == {"batch_lines_written": 0, "batches_finalized": 1, "evaluations_finalized": 0}
    assert len(events.webhook_events) == 0  # the batch asked for no webhook
    with sessions() as session:
        batch = session.get_one(Batch, batch_id)
    assert batch.status == "completed" and batch.output_through == count


def test_what_has_outlived_retention_is_deleted_unless_retention_is_0(submit: Submit, sessions: sessionmaker[Session],
                                                                     clock: ManualClock) -> None:
    job = submit(ONE)
    claim, _ = claim_next(sessions, clock, SETTINGS.lease_s)
    assert claim is not None
    jobs.finish(sessions, [ran(claim, output=[[]])], clock(), 1, 1.0)
    clock.advance(Settings().retention_s + 1)  # the default: 30 days
    keeping = Sweeper(sessions, RecordingEvents(), Settings(retention_s=0), clock)  # type: ignore[arg-type]
    assert "jobs_expired" not in keeping.sweep()
    with sessions() as session:
        assert session.get(Job, job.id) is not None
    assert make_sweeper(sessions, clock)[0].sweep()["jobs_expired"] == 1
    with sessions() as session:
        assert session.get(Job, job.id) is None
