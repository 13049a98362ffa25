"""The API's reads of the jobs table: scoped to one key, newest first, a page at a time."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from models.tables import ApiKey
from store import job_reads
from tests.doubles import ManualClock
from tests.unit.conftest import AddLines, Submit

ONE = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}


def test_reads_are_scoped_to_the_key_and_page_newest_first(submit: Submit, sessions: sessionmaker[Session],
                                                           api_key: ApiKey) -> None:
    ids = [submit(ONE).id for _ in range(5)]
    with sessions() as session:
        assert job_reads.own_job(session, api_key.id, ids[0]) is not None
        assert job_reads.own_job(session, "another key", ids[0]) is None
        first = job_reads.list_jobs(session, api_key.id, status=None, task=None, limit=2, before=None)
        assert [j.id for j in first] == ids[::-1][:2]
        after = job_reads.list_jobs(session, api_key.id, status="queued", task="fill-mask", limit=10,
                               before=(first[-1].created_at, first[-1].id))
        assert [j.id for j in after] == ids[::-1][2:]
        assert job_reads.in_flight_counts(session) == {("fill-mask", "queued"): 5}


def test_a_keys_activity_counts_queued_running_and_recently_finished_jobs(
        submit: Submit, add_lines: AddLines, sessions: sessionmaker[Session], api_key: ApiKey,
        clock: ManualClock) -> None:
    from datetime import timedelta

    from store import jobs
    from store.jobs import Outcome

    old = submit(ONE)
    done = jobs.claim_more(sessions, "fill-mask", 1, clock, 30).claims
    jobs.finish(sessions, [Outcome(claim, output=[["out"]]) for claim in done], clock(), 1, 1.0)
    clock.advance(20)
    add_lines(3)  # lines of a batch count too: they are the key's work
    recent = [submit(ONE) for _ in range(2)]
    running = jobs.claim_more(sessions, "fill-mask", 2, clock, 30).claims
    jobs.finish(sessions, [Outcome(running[0], output=[["out"]])], clock(), 1, 1.0)
    with sessions() as session:
        since = clock() - timedelta(seconds=10)
        assert job_reads.key_activity(session, api_key.id, since) == (3, 1, 1)  # `old` finished 20 s ago
        assert job_reads.key_activity(session, "another key", since) == (0, 0, 0)
    assert {c.job_id for c in running} == {j.id for j in recent} and old.id == done[0].job_id
