"""Fixtures of the unit suite: a migrated SQLite database in the test's folder (no server, no process), an API
key in it, and a helper that submits jobs through the job store as the API does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from contract.requests import FillMaskRequest, QuestionAnsweringRequest
from core.tasks import TASK_FILL_MASK
from migrations import run_migrations
from models.db import make_engine, make_session_factory, transaction
from models.tables import ApiKey, Job
from store import jobs
from store.keys import create_key, hash_key
from tests.batch_rows import line_rows
from tests.doubles import ManualClock

Submit = Callable[..., Job]


def claim_next(sessions: sessionmaker[Session], clock: ManualClock, lease_s: int,
               worker: str | None = None) -> tuple[jobs.Claim | None, list[str]]:
    """Claims the oldest queued one-input fill-mask job, as a worker's batch of one would: (claim, events)."""
    batch = jobs.claim_more(sessions, TASK_FILL_MASK, 1, clock, lease_s, worker)
    return (batch.claims[0] if batch.claims else None), batch.events


@pytest.fixture()
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'distilq.db'}"
    run_migrations(url)
    return make_session_factory(make_engine(url, eager_writer=True))


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def api_key(sessions: sessionmaker[Session]) -> ApiKey:
    with transaction(sessions) as session:
        key = create_key(session, "unit")
    with sessions() as session:
        return session.query(ApiKey).filter_by(key_hash=hash_key(key)).one()


@pytest.fixture()
def submit(sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> Submit:
    """`submit(body, task=…, idempotency_key=…, max_in_flight=…, held_by=…)`: stores a job as POST would; the
    stored row (`jobs.submit`'s own answer is `test_jobs.py`'s)."""

    def submit_job(body: dict[str, Any], task: str = TASK_FILL_MASK, idempotency_key: str | None = None,
                   max_in_flight: int = 1000, token_ids: bytes | None = None, held_by: str | None = None) -> Job:
        schema = FillMaskRequest if task == TASK_FILL_MASK else QuestionAnsweringRequest
        job, _ = jobs.submit(sessions.kw["bind"], task=task, model="stub", api_key_id=api_key.id,
                             body=schema.model_validate(body), raw_body=body, idempotency_key=idempotency_key,
                             idempotency_ttl_s=60, max_in_flight=max_in_flight, now=clock(), token_ids=token_ids,
                             held_by=held_by)
        clock.advance(0.001)  # submissions in order, as created_at orders them
        with sessions() as session:
            stored = session.get(Job, job["id"])
        assert stored is not None
        return stored

    return submit_job


AddLines = Callable[[int], list[str]]


def begun_batch(sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> str:
    """A batch of an empty file, `validating` as the API's check begins one; its id."""
    from store import batches, files

    with sessions() as session:
        file = files.write_file(session, api_key_id=api_key.id, purpose="batch", filename="lines.jsonl", parts=[],
                                max_bytes=None, now=clock())
        batch_id = batches.new_batch_id()
        batches.begin_batch(session, batch_id=batch_id, api_key_id=api_key.id, input_file_id=file.id, endpoint=None,
                            completion_window="24h", webhook=None, metadata=None, now=clock())
    return batch_id


@pytest.fixture()
def add_lines(sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> AddLines:
    """`add_lines(count)`: a batch file of `count` one-input fill-mask lines, created as the API does, a row each;
    their rows' ids, in line order."""

    def add(count: int) -> list[str]:
        from store import batches

        batch_id = begun_batch(sessions, api_key, clock)
        rows = line_rows(batch_id, api_key.id, range(1, count + 1), clock(), parameters={"top_k": 5}, metadata={},
                         custom_id="r{n}", text="Line {n} has a [MASK].")
        assert batches.add_checked_lines(sessions, batch_id, rows, len(rows), clock())
        with sessions() as session:
            assert batches.start_batch(session, batch_id, len(rows), clock())
        clock.advance(0.001)
        return [row["id"] for row in rows]

    return add


@pytest.fixture()
def add_examples(sessions: sessionmaker[Session], api_key: ApiKey, clock: ManualClock) -> AddLines:
    """`add_examples(count)`: a queued evaluation of `count` one-input fill-mask examples labelled "a", created as
    the API does once its file has passed; their job ids, in line order."""

    def add(count: int) -> list[str]:
        from store import evaluations, files

        with sessions() as session:
            file = files.write_file(session, api_key_id=api_key.id, purpose="evaluation", filename="e.jsonl",
                                    parts=[], max_bytes=None, now=clock())
            evaluation_id = evaluations.new_evaluation_id()
            rows = [jobs.evaluation_example(evaluation_id=evaluation_id, line=i + 1, task=TASK_FILL_MASK,
                                            model="stub", api_key_id=api_key.id,
                                            inputs={"input_string": [f"Line {i} has a [MASK]."]},
                                            parameters={"top_k": 5}, n_inputs=1, gold={"label": "a", "label_id": 5},
                                            now=clock())
                    for i in range(count)]
            evaluations.create_evaluation(session, examples=iter(rows), id=evaluation_id, api_key_id=api_key.id,
                                          task=TASK_FILL_MASK, model="stub", input_file_id=file.id, metric_names=[],
                                          config={}, created_at=clock())
        clock.advance(0.001)
        return [row["id"] for row in rows]

    return add
