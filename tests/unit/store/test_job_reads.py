"""The API's reads of the jobs table: scoped to one key, newest first, a page at a time; a poll's read of one job
as its public JSON, its stored JSON embedded as it is."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from contract.job_json import job_to_public
from models.tables import ApiKey, Job
from store import job_reads, jobs
from store.jobs import Outcome
from tests.doubles import ManualClock
from tests.unit.conftest import AddLines, Submit, claim_next

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
        submit: Submit, add_lines: AddLines, add_examples: AddLines, sessions: sessionmaker[Session],
        api_key: ApiKey, clock: ManualClock) -> None:
    old = submit(ONE)
    done = jobs.claim_more(sessions, "fill-mask", 1, clock, 30).claims
    jobs.finish(sessions, [Outcome(claim, output=[["out"]]) for claim in done], clock(), 1, 1.0)
    clock.advance(20)
    add_lines(3)  # lines of a batch count too: they are the key's work
    add_examples(2)  # and an evaluation's examples
    recent = [submit(ONE) for _ in range(2)]
    running = jobs.claim_more(sessions, "fill-mask", 2, clock, 30).claims
    jobs.finish(sessions, [Outcome(running[0], output=[["out"]])], clock(), 1, 1.0)
    with sessions() as session:
        since = clock() - timedelta(seconds=10)
        assert job_reads.key_activity(session, api_key.id, since) == (5, 1, 1)  # `old` finished 20 s ago
        assert job_reads.key_activity(session, "another key", since) == (0, 0, 0)
    assert {c.job_id for c in running} == {j.id for j in recent} and old.id == done[0].job_id
    # Lines are counted in their batch's index, interactive jobs in theirs: a running line is running work.
    line = jobs.claim_more(sessions, "fill-mask", 1, clock, 30).claims
    assert line[0].from_file
    with sessions() as session:
        assert job_reads.key_activity(session, api_key.id, since)[:2] == (4, 2)


OUTPUT = [[{"score": 0.25, "token": 7, "token_str": "capital", "sequence": "Paris is the capital of France."}]]


def _read(sessions: sessionmaker[Session], api_key_id: str, job_id: str) -> bytes | None:
    return job_reads.own_job_json(sessions.kw["bind"], api_key_id, job_id)


def test_a_job_reads_as_its_public_json_at_each_status(submit: Submit, sessions: sessionmaker[Session],
                                                         api_key: Any, clock: ManualClock) -> None:
    metadata = {"order": 123456789012345678901234567890, "ratio": 0.1, "nested": [{"é": None}]}
    job = submit({**ONE, "metadata": metadata,
                  "webhook": "https://example.com/hook"})

    def expected() -> dict[str, Any]:
        with sessions() as session:
            return job_to_public(session.get_one(Job, job.id))

    for step in ("queued", "running", "succeeded"):
        if step == "running":
            claim, _ = claim_next(sessions, clock, 30)
            assert claim is not None
        elif step == "succeeded":
            clock.advance(1.5)
            jobs.finish(sessions, [Outcome(claim, output=OUTPUT)], clock(), 1, 12.5)
        text = _read(sessions, api_key.id, job.id)
        assert text is not None
        read = json.loads(text)
        assert read == expected() and read["status"] == step
    assert read["output"] == OUTPUT and read["metadata"] == metadata
    assert type(read["metadata"]["order"]) is int  # the stored text, not a float made of it


def test_another_key_s_job_reads_as_none(submit: Submit, sessions: sessionmaker[Session], api_key: Any) -> None:
    job = submit(ONE)
    assert _read(sessions, api_key.id, job.id) is not None
    assert _read(sessions, "another-key", job.id) is None
    assert _read(sessions, api_key.id, "no-such-job") is None
