"""`store.job_reads`: a poll's read of one job as its public JSON, its stored JSON embedded as it is."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from contract.job_json import job_to_public
from models.tables import Job
from store import job_reads, jobs
from store.jobs import Outcome
from tests.doubles import ManualClock
from tests.unit.conftest import Submit, claim_next

OUTPUT = [[{"score": 0.25, "token": 7, "token_str": "capital", "sequence": "Paris is the capital of France."}]]


def _read(sessions: sessionmaker[Session], api_key_id: str, job_id: str) -> bytes | None:
    return job_reads.own_job_json(sessions.kw["bind"], api_key_id, job_id)


def test_a_job_reads_as_its_public_json_at_each_status(submit: Submit, sessions: sessionmaker[Session],
                                                         api_key: Any, clock: ManualClock) -> None:
    metadata = {"order": 123456789012345678901234567890, "ratio": 0.1, "nested": [{"é": None}]}
    job = submit({"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "metadata": metadata,
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
    job = submit({"inputs": {"input_string": ["Paris is the [MASK] of France."]}})
    assert _read(sessions, api_key.id, job.id) is not None
    assert _read(sessions, "another-key", job.id) is None
    assert _read(sessions, api_key.id, "no-such-job") is None
