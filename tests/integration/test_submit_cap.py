"""The key's cap on jobs in flight, checked by the INSERT itself, on each database the service runs on: exact on
SQLite (one writer) and, near the cap, on PostgreSQL, where the key's row is locked only there — far below it,
submissions of one key do not wait for each other's commit, and each is one statement committing by itself."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select

from contract.requests import FillMaskRequest
from core.tasks import TASK_FILL_MASK
from models.db import make_engine, make_session_factory
from models.tables import ApiKey
from store import jobs, keys
from tests.doubles import ManualClock

BODY = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}


def test_the_cap_holds_and_only_submissions_near_it_lock_the_key(backend: tuple[str, str]) -> None:
    engine = make_engine(backend[0])
    sessions = make_session_factory(engine)
    with sessions() as session:
        keys.create_key(session, "cap")
        session.commit()
        key_id = session.scalars(select(ApiKey.id).where(ApiKey.name == "cap")).one()
    locked: list[bool] = []
    #: (statement, whether the driver commits it by itself), on PostgreSQL.
    autocommit: list[tuple[str, bool]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("SELECT api_keys.id"):
            locked.append(True)
        if engine.dialect.name == "postgresql" and statement.startswith(("SELECT api_keys.id", "INSERT INTO jobs")):
            autocommit.append((statement.split()[0], conn.connection.driver_connection.autocommit))

    clock, cap = ManualClock(), jobs.UNLOCKED_CAP_MARGIN + 2

    def submit() -> int:
        """One more submission; how many times it locked the key."""
        locked.clear()
        autocommit.clear()
        jobs.submit(engine, task=TASK_FILL_MASK, model="stub", api_key_id=key_id,
                    body=FillMaskRequest.model_validate(BODY), raw_body=BODY, idempotency_key=None,
                    idempotency_ttl_s=60, max_in_flight=cap, now=clock())
        return len(locked)

    postgres = engine.dialect.name == "postgresql"
    for number in range(cap):
        locks = submit()
        # Two jobs of room beyond the margin: the first two go unlocked; then, on PostgreSQL, each locks the key.
        assert locks == (1 if postgres and number >= 2 else 0), number
        if postgres:
            # Far below the cap one INSERT committing by itself (no BEGIN, no COMMIT); near it, the key's row
            # locked in a transaction that holds the lock until its INSERT commits.
            assert autocommit == ([("INSERT", True)] if number < 2 else
                                  [("INSERT", True), ("SELECT", False), ("INSERT", False)]), number
    with pytest.raises(jobs.TooManyJobsInFlight) as refused:
        submit()
    assert refused.value.in_flight == cap
    engine.dispose()
