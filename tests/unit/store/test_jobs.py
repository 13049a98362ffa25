"""The job store on SQLite, no processes: every transition, its compare-and-set, and the webhook event it
records in the same transaction."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, sessionmaker

from contract.job_json import job_to_public
from contract.requests import FillMaskRequest
from core.tasks import TASK_FILL_MASK
from models.tables import Job, WebhookEvent
from store import batches, jobs
from store.jobs import Outcome
from tests.batch_rows import ran
from tests.doubles import ManualClock
from tests.unit.conftest import AddLines, Submit, claim_next

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}
HOOKED = {**ONE, "webhook": "https://example.com/hook"}
LEASE_S = 30


def row(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as session:
        return session.get_one(Job, job_id)


def events(sessions: sessionmaker[Session], job_id: str) -> list[str]:
    with sessions() as session:
        return [e.type for e in session.scalars(select(WebhookEvent).where(WebhookEvent.job_id == job_id)
                                                .order_by(WebhookEvent.created_at))]


def test_submit_stores_a_queued_job_with_every_default(submit: Submit, sessions: sessionmaker[Session]) -> None:
    job = submit({"inputs": {"input_string": ["a [MASK]", "b [MASK]"]}})
    stored = row(sessions, job.id)
    assert (stored.status, stored.n_inputs, stored.attempts) == ("queued", 2, 0)
    assert stored.parameters == {"top_k": 5}  # the contract's default, written once, filled in here
    assert stored.webhook_events_filter == ["start", "completed"]


@pytest.mark.parametrize("idempotency_key", [None, "k"])
def test_submit_answers_with_every_attribute_of_the_row_it_stored(
    sessions: sessionmaker[Session], api_key: Any, clock: ManualClock, idempotency_key: str | None
) -> None:
    """`submit` builds its answer rather than reading the row back: it must be that row, every attribute of it (a
    held request's response and its `held_by` check are made from it), and a replay's answer the first job's."""
    body = {**HOOKED, "metadata": {"team": "a"}, "parameters": {"top_k": 2}}

    def submitted() -> tuple[dict[str, Any], bool]:
        return jobs.submit(sessions.kw["bind"], task=TASK_FILL_MASK, model="stub", api_key_id=api_key.id,
                           body=FillMaskRequest.model_validate(body), raw_body=body, idempotency_key=idempotency_key,
                           idempotency_ttl_s=60, max_in_flight=10, now=clock(), token_ids=b"\x01\x02",
                           held_by="api-1")

    job, created = submitted()
    with sessions() as session:
        stored = session.get_one(Job, job["id"])
        attributes = {attribute.key: getattr(stored, attribute.key) for attribute in sa_inspect(Job).column_attrs}
    assert created and job == attributes
    assert job_to_public(job) == job_to_public(stored)
    if idempotency_key is not None:
        replay, created_again = submitted()
        assert not created_again and replay == attributes


@pytest.mark.parametrize("idempotency_key", [None, "k"])
def test_a_submission_holds_sqlite_s_write_lock_only_while_its_insert_runs(
    submit: Submit, sessions: sessionmaker[Session], idempotency_key: str | None
) -> None:
    """Right after the INSERT ran, and before `submit` returns, another writer gets the lock at once: the
    statement committed by itself, so no wait of the API's thread for the interpreter holds up the worker."""
    engine = sessions.kw["bind"]
    database = engine.url.database
    other_writer_got_the_lock: list[bool] = []

    @event.listens_for(engine, "after_cursor_execute")
    def _try_the_lock(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO jobs"):
            other = sqlite3.connect(database, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                other_writer_got_the_lock.append(True)
            except sqlite3.OperationalError:
                other_writer_got_the_lock.append(False)
            finally:
                other.close()

    job = submit(ONE, idempotency_key=idempotency_key)
    event.remove(engine, "after_cursor_execute", _try_the_lock)
    assert other_writer_got_the_lock == [True]
    assert row(sessions, job.id).status == "queued"
    with pytest.raises(jobs.TooManyJobsInFlight):  # the cap holds in this mode too
        submit(ONE, max_in_flight=1)


def test_idempotency_key_replays_conflicts_and_expires(submit: Submit, clock: ManualClock) -> None:
    first = submit(ONE, idempotency_key="k")
    assert submit(ONE, idempotency_key="k").id == first.id
    with pytest.raises(jobs.IdempotencyKeyReused):
        submit({**ONE, "parameters": {"top_k": 2}}, idempotency_key="k")
    clock.advance(61)  # past the 60 s time to live
    assert submit(ONE, idempotency_key="k").id != first.id


def test_in_flight_cap(submit: Submit) -> None:
    submit(ONE, max_in_flight=2)
    submit(ONE, max_in_flight=2)
    with pytest.raises(jobs.TooManyJobsInFlight) as refused:
        submit(ONE, max_in_flight=2)
    assert refused.value.in_flight == 2


def test_claim_takes_a_queued_job_once_and_records_its_start(submit: Submit, sessions: sessionmaker[Session],
                                                             clock: ManualClock) -> None:
    job = submit(HOOKED)
    claim, started = claim_next(sessions, clock, LEASE_S)
    assert claim is not None and claim.attempt == 1 and len(started) == 1
    assert claim_next(sessions, clock, LEASE_S) == (None, [])  # a claimed job is not claimed twice
    stored = row(sessions, job.id)
    assert stored.status == "running" and stored.lease_until == clock() + timedelta(seconds=LEASE_S)
    assert events(sessions, job.id) == ["job.started"]


def test_claim_more_takes_the_oldest_jobs_that_fit(submit: Submit, sessions: sessionmaker[Session],
                                                   clock: ManualClock) -> None:
    ids = [submit({"inputs": {"input_string": ["x [MASK]"] * n}}).id for n in (2, 3, 1, 1)]
    batch = jobs.claim_more(sessions, "fill-mask", 5, clock, LEASE_S)
    assert [c.job_id for c in batch.claims] == ids[:2]  # 2 + 3 inputs fill 5; the rest wait, in order
    assert batch.n_inputs == 5 and batch.more_queued
    rest = jobs.claim_more(sessions, "fill-mask", 5, clock, LEASE_S)
    assert [c.job_id for c in rest.claims] == ids[2:] and not rest.more_queued
    assert jobs.claim_more(sessions, "question-answering", 5, clock, LEASE_S) == jobs.ClaimedBatch([], [], False)


def test_a_job_larger_than_a_batch_is_claimed_alone_but_never_tops_a_batch_up(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    big, small = submit({"inputs": {"input_string": ["x [MASK]"] * 9}}), submit(ONE)
    topping_up = jobs.claim_more(sessions, "fill-mask", 4, clock, LEASE_S, oversized_alone=False)
    assert topping_up.claims == [] and topping_up.more_queued
    alone = jobs.claim_more(sessions, "fill-mask", 4, clock, LEASE_S)
    assert [c.job_id for c in alone.claims] == [big.id] and alone.n_inputs == 9 and alone.more_queued
    assert [c.job_id for c in jobs.claim_more(sessions, "fill-mask", 4, clock, LEASE_S).claims] == [small.id]


def test_finish_writes_only_while_the_claim_holds(submit: Submit, sessions: sessionmaker[Session],
                                                  clock: ManualClock) -> None:
    kept, canceled = submit(HOOKED, held_by="process-a"), submit(HOOKED)
    claims = jobs.claim_more(sessions, "fill-mask", 10, clock, LEASE_S).claims
    with sessions() as session:
        assert jobs.cancel(session, canceled.id, clock())[0]
    clock.advance(0.25)
    written, completed = jobs.finish(sessions, [Outcome(c, output=[["out"]]) for c in claims], clock(), 2, 1.5)
    assert [(done.job_id, done.status) for done in written] == [(kept.id, "succeeded")] and len(completed) == 1
    assert row(sessions, kept.id).output == [["out"]]
    # The JSON announced to the process holding the job's request, built without reading it back, is what
    # GET /v1/jobs/{id} shows.
    assert (written[0].held_by, written[0].public) == ("process-a", job_to_public(row(sessions, kept.id)))
    late = row(sessions, canceled.id)
    assert late.status == "canceled" and late.output is None
    assert events(sessions, canceled.id) == ["job.started", "job.completed"]  # the cancel's, not the worker's


def test_a_job_s_token_ids_go_to_its_claim_and_are_cleared_when_it_finishes(
        submit: Submit, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    ids = b"fingerpr" + bytes(range(12))
    job, plain = submit(ONE, token_ids=ids, held_by="process-a"), submit(ONE)
    claims = jobs.claim_more(sessions, "fill-mask", 10, clock, LEASE_S).claims
    assert [(c.job_id, c.token_ids) for c in claims] == [(job.id, ids), (plain.id, None)]
    written, _ = jobs.finish(sessions, [Outcome(c, output=[["out"]]) for c in claims], clock(), 2, 1.5)
    assert [done.status for done in written] == ["succeeded", "succeeded"]
    assert row(sessions, job.id).token_ids is None and written[0].public is not None
    assert "token_ids" not in written[0].public


def test_cancel_leaves_a_finished_job_as_it_is(submit: Submit, sessions: sessionmaker[Session],
                                               clock: ManualClock) -> None:
    job = submit(ONE)
    claim, _ = claim_next(sessions, clock, LEASE_S)
    assert claim is not None
    jobs.finish(sessions, [Outcome(claim, error={"code": "invalid_input", "message": "no"})], clock(), 1, 1.0)
    with sessions() as session:
        assert jobs.cancel(session, job.id, clock()) == (False, None)
    assert row(sessions, job.id).status == "failed"


def test_reclaim_requeues_then_fails_a_job_whose_worker_keeps_dying(submit: Submit, sessions: sessionmaker[Session],
                                                                     clock: ManualClock) -> None:
    job = submit(HOOKED)
    for attempt in (1, 2):
        claim, _ = claim_next(sessions, clock, LEASE_S)
        assert claim is not None and claim.attempt == attempt
        assert jobs.reclaim_expired(sessions, clock(), 2, 100) == ([], [], [])  # the lease still holds
        clock.advance(LEASE_S + 1)
        failed, requeued, completed = jobs.reclaim_expired(sessions, clock(), 2, 100)
        if attempt == 1:
            assert (failed, requeued, completed) == ([], [(job.id, "fill-mask")], [])
            stale = jobs.finish(sessions, [Outcome(claim, output=[[]])], clock(), 1, 1.0)
            assert stale == ([], [])  # the dead worker's late write-back is refused
    assert (failed, requeued, len(completed)) == ([(job.id, "failed", None)], [], 1)  # nobody holds its request
    stored = row(sessions, job.id)
    assert stored.error is not None and stored.error["code"] == "worker_lost" and stored.attempts == 2


def test_stale_queued_jobs_are_taken_once_per_period(submit: Submit, sessions: sessionmaker[Session],
                                                     clock: ManualClock) -> None:
    job, second = submit(ONE), submit(ONE)
    period, tasks = timedelta(seconds=60), ["fill-mask", "question-answering"]
    assert jobs.take_stale_queued(sessions, clock(), period, tasks) == []
    clock.advance(61)
    assert jobs.take_stale_queued(sessions, clock(), period, tasks) == [(job.id, "fill-mask")]  # one a task
    assert jobs.take_stale_queued(sessions, clock(), period, tasks) == [(second.id, "fill-mask")]
    assert jobs.take_stale_queued(sessions, clock(), period, tasks) == []  # both marked published just now


def test_expired_idempotency_keys_are_freed(submit: Submit, sessions: sessionmaker[Session],
                                            clock: ManualClock) -> None:
    job = submit(ONE, idempotency_key="k")
    assert jobs.free_idempotency_keys(sessions, clock()) == 0
    clock.advance(61)
    assert jobs.free_idempotency_keys(sessions, clock()) == 1
    assert row(sessions, job.id).idempotency_key is None


def test_freeing_idempotency_keys_reads_only_the_keys_still_held(submit: Submit, sessions: sessionmaker[Session],
                                                                  clock: ManualClock) -> None:
    """Beat frees keys every sweep: its statement must search the index of held keys by expiry (the migrated
    schema's), not scan every job, and must not begin a transaction that holds SQLite's write lock around it."""
    submit(ONE, idempotency_key="k")
    engine = sessions.kw["bind"]
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    jobs.free_idempotency_keys(sessions, clock())
    event.remove(engine, "before_cursor_execute", seen)
    assert not [sql for sql, _ in statements if sql.lstrip().upper().startswith("BEGIN")]
    [(update, parameters)] = [(sql, p) for sql, p in statements if sql.lstrip().upper().startswith("UPDATE")]
    with engine.connect() as connection:
        plan = " ".join(str(step[-1]) for step in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {update}",
                                                                              parameters))
    assert "ix_jobs_idempotency_expires" in plan, plan


def test_a_claim_finds_its_jobs_by_their_ids_not_by_every_queued_job(
        submit: Submit, add_lines: AddLines, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """With a batch's lines queued, SQLite's planner took the status index for the claim's UPDATE … WHERE id IN …
    AND status = 'queued' and walked every queued line for a few ids: 2.4 ms a claim beside 10,000 lines, on every
    pass. Each claim statement must search the primary key."""
    add_lines(50)
    submit(ONE)
    engine = sessions.kw["bind"]
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    claimed = jobs.claim_more(sessions, TASK_FILL_MASK, 10, clock, LEASE_S, max_line_inputs=4)
    event.remove(engine, "before_cursor_execute", seen)
    assert len(claimed.claims) == 5 and claimed.more_queued  # the job and four lines
    updates = [(sql, p) for sql, p in statements if sql.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 2  # the interactive job's claim and the lines'
    with engine.connect() as connection:
        for update, parameters in updates:
            plan = " ".join(str(step[-1]) for step in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {update}",
                                                                                  parameters))
            assert "(id=?)" in plan and "status" not in plan, plan


def test_a_job_never_starts_before_it_was_created(submit: Submit, sessions: sessionmaker[Session],
                                                  clock: ManualClock) -> None:
    """The worker's clock may run behind the one that stamped the job (another host, or a time read before the
    job committed): queue_ms once came out negative."""
    job = submit(ONE)
    behind = ManualClock(clock() - timedelta(seconds=2))
    claim, _ = claim_next(sessions, behind, LEASE_S)
    assert claim is not None and claim.queue_ms == 0
    stored = row(sessions, job.id)
    assert stored.started_at == stored.created_at


def test_interactive_jobs_are_claimed_before_lines_which_keep_to_their_budget(
        submit: Submit, add_lines: AddLines, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    lines = add_lines(5)
    capped = jobs.claim_more(sessions, TASK_FILL_MASK, 10, clock, 30, max_line_inputs=1, cap_lines=True)
    assert [claim.job_id for claim in capped.claims] == lines[:1]  # interactive jobs about: capped alone too
    lines = lines[1:]
    interactive = [submit({"inputs": {"input_string": ["a [MASK]"]}}).id for _ in range(2)]
    batch = jobs.claim_more(sessions, TASK_FILL_MASK, 10, clock, 30, max_line_inputs=2)
    assert {claim.job_id for claim in batch.claims} == {*interactive, *lines[:2]} and batch.more_queued
    alone = jobs.claim_more(sessions, TASK_FILL_MASK, 10, clock, 30, max_line_inputs=2)  # lines alone: as many as fit
    assert {claim.job_id for claim in alone.claims} == set(lines[2:]) and not alone.more_queued


def test_a_claim_holding_a_line_and_an_interactive_job_gives_each_everything_a_claim_reads(
        submit: Submit, add_lines: AddLines, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """A file's line is claimed with only the columns a Claim reads (an interactive job with every column, for its
    finished JSON): each must still read as its row — the token ids included, which a missing column would turn
    into a silent second tokenization."""
    [line_id] = add_lines(1)
    with sessions() as session:
        session.get_one(Job, line_id).token_ids = b"\x01\x02ids"
        session.commit()
    job = submit(HOOKED)
    claimed = jobs.claim_more(sessions, TASK_FILL_MASK, 10, clock, LEASE_S).claims
    assert sorted(claim.job_id for claim in claimed) == sorted([line_id, job.id])
    for claim in claimed:
        stored = row(sessions, claim.job_id)
        assert (claim.attempt, claim.task, claim.input, claim.parameters, claim.created_at, claim.n_inputs,
                claim.webhook, claim.token_ids, claim.from_file, claim.batch_id, claim.evaluation_id) == (
            stored.attempts, stored.task, stored.input, stored.parameters, stored.created_at, stored.n_inputs,
            stored.webhook, stored.token_ids, stored.batch_id is not None, stored.batch_id, stored.evaluation_id)
    assert {claim.job_id: claim.token_ids for claim in claimed}[line_id] == b"\x01\x02ids"
    assert {claim.job_id: claim.webhook for claim in claimed}[job.id] == "https://example.com/hook"


def test_a_batch_is_due_to_end_once_none_of_its_lines_is_queued_or_running(
        submit: Submit, add_lines: AddLines, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """What beat's sweep looks for, after every pass of a file's lines: a read that leaves the write lock free."""
    first, second = add_lines(2), add_lines(1)
    submit(ONE)
    with sessions() as session:
        batch_id, other_id = (session.get_one(Job, ids[0]).batch_id for ids in (first, second))
    assert batch_id is not None and other_id is not None
    assert batches.due_for_finalizing(sessions, 10) == []
    claims = jobs.claim_more(sessions, TASK_FILL_MASK, 10, clock, LEASE_S).claims  # both files' lines, the job
    assert batches.due_for_finalizing(sessions, 10) == []  # running
    jobs.finish(sessions, [ran(claim, output=[]) for claim in claims if claim.batch_id == batch_id], clock(),
                2, 1.0)
    statements: list[str] = []
    engine = sessions.kw["bind"]
    record = lambda _conn, _cursor, statement, *_args: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", record)
    assert batches.due_for_finalizing(sessions, 10) == [batch_id]
    event.remove(engine, "before_cursor_execute", record)
    assert statements and not any("BEGIN" in statement for statement in statements)  # the worker's write lock free
