"""`store.batches`: a batch's lines queued chunk by chunk while its file is checked, run at once, and deleted with
the batch when the check fails — on SQLite with a hand-moved clock, no processes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.tasks import TASK_FILL_MASK
from models.tables import ApiKey, Batch, Job
from store import batches, jobs
from tests.batch_rows import line_rows, ran
from tests.doubles import ManualClock
from tests.unit.conftest import begun_batch

ERROR = {"code": "invalid_line", "message": "line 3: not valid JSON", "line": 3, "param": None}


def _rows(batch_id: str, api_key: ApiKey, clock: ManualClock, first: int, count: int) -> list[dict[str, Any]]:
    return line_rows(batch_id, api_key.id, range(first, first + count), clock())


def _batch(sessions: sessionmaker[Session], batch_id: str) -> Batch:
    with sessions() as session:
        return session.get_one(Batch, batch_id)


def _lines(sessions: sessionmaker[Session], batch_id: str) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(Job.batch_id == batch_id)) or 0)


def test_checked_lines_run_while_the_rest_of_the_file_is_checked(sessions: sessionmaker[Session], api_key: ApiKey,
                                                                 clock: ManualClock) -> None:
    batch_id = begun_batch(sessions, api_key, clock)
    assert _batch(sessions, batch_id).status == "validating"
    assert batches.add_checked_lines(sessions, batch_id, _rows(batch_id, api_key, clock, 1, 3), 3, clock())
    claimed = jobs.claim_more(sessions, TASK_FILL_MASK, 10, clock, 60)
    assert len(claimed.claims) == 3  # queued at once: a worker takes them before the check ends
    jobs.finish(sessions, [ran(claim, output=[[]]) for claim in claimed.claims], clock(), 3, 1.0)
    # Every line done, but the batch is not due to end before its check has: its file may still fail.
    assert batches.due_for_finalizing(sessions, 10) == []
    clock.advance(1)
    assert batches.add_checked_lines(sessions, batch_id, _rows(batch_id, api_key, clock, 4, 2), 5, clock())
    with sessions() as session:
        assert batches.start_batch(session, batch_id, 5, clock())
    started = _batch(sessions, batch_id)
    assert started.status == "in_progress" and started.total == 5 and started.in_progress_at is not None
    assert _lines(sessions, batch_id) == 5
    assert batches.due_for_finalizing(sessions, 10) == []  # two lines still queued


def test_a_failed_check_deletes_every_line_it_queued_run_or_not(sessions: sessionmaker[Session], api_key: ApiKey,
                                                                clock: ManualClock) -> None:
    batch_id = begun_batch(sessions, api_key, clock)
    assert batches.add_checked_lines(sessions, batch_id, _rows(batch_id, api_key, clock, 1, 4), 4, clock())
    first = jobs.claim_more(sessions, TASK_FILL_MASK, 1, clock, 60)
    jobs.finish(sessions, [ran(claim, output=[[]]) for claim in first.claims], clock(), 1, 1.0)
    running = jobs.claim_more(sessions, TASK_FILL_MASK, 2, clock, 60)  # in a worker's pass as the check fails

    assert batches.fail_check(sessions, batch_id, [ERROR], clock(), total=4)
    failed = _batch(sessions, batch_id)
    assert (failed.status, failed.total, failed.errors) == ("failed", 4, {"object": "list", "data": [ERROR]})
    assert failed.failed_at is not None and _lines(sessions, batch_id) == 0
    # The worker's write-back of the lines it was running keeps nothing.
    finished, _ = jobs.finish(sessions, [ran(claim, output=[[]]) for claim in running.claims], clock(), 2, 1.0)
    assert finished == [] and _lines(sessions, batch_id) == 0
    # Once failed, the check adds nothing more, and neither failing nor starting it again moves it.
    assert not batches.add_checked_lines(sessions, batch_id, _rows(batch_id, api_key, clock, 5, 1), 5, clock())
    assert _lines(sessions, batch_id) == 0
    assert not batches.fail_check(sessions, batch_id, [ERROR], clock())
    with sessions() as session:
        assert not batches.start_batch(session, batch_id, 5, clock())


def test_a_check_that_stopped_moving_is_found_as_abandoned(sessions: sessionmaker[Session], api_key: ApiKey,
                                                           clock: ManualClock) -> None:
    stalled = begun_batch(sessions, api_key, clock)
    assert batches.add_checked_lines(sessions, stalled, _rows(stalled, api_key, clock, 1, 2), 2, clock())
    moving, done = begun_batch(sessions, api_key, clock), begun_batch(sessions, api_key, clock)
    with sessions() as session:
        assert batches.start_batch(session, done, 0, clock())
    clock.advance(30)
    assert batches.add_checked_lines(sessions, moving, [], 512, clock())  # progress with no line queued
    clock.advance(31)
    assert batches.abandoned_checks(sessions, clock() - timedelta(seconds=60), 10) == [stalled]
