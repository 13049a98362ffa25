"""The API's reads of the jobs table: scoped to one key, newest first, a page at a time."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from models.tables import ApiKey
from store import job_reads
from tests.unit.conftest import Submit

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
