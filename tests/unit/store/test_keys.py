"""API keys: stored as hashes only, found by hash, revoked by id, by the key itself or by its beginning."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.clock import utcnow
from models.db import transaction
from models.tables import ApiKey
from store.keys import active_key, create_key, hash_key, revoke_key


@pytest.fixture()
def key(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as session:
        return create_key(session, "me")


@pytest.mark.parametrize("how", ["key", "shown prefix", "longer beginning", "shorter beginning", "id"])
def test_a_key_is_revoked_by_what_a_user_has_at_hand(sessions: sessionmaker[Session], key: str, how: str) -> None:
    with sessions() as session:
        found = active_key(session, key)
        assert found is not None
        key_id = found.id
    name = {"key": key, "shown prefix": key[:9], "longer beginning": key[:14], "shorter beginning": key[:6],
            "id": key_id}[how]
    with transaction(sessions) as session:
        assert revoke_key(session, name) == 1
    with sessions() as session:
        assert active_key(session, key) is None


def _stored(session: Session, prefix: str) -> str:
    """A key row with a chosen shown prefix (a real key's is random)."""
    row = ApiKey(id=str(uuid.uuid4()), name=prefix, prefix=prefix, key_hash=hash_key(prefix + "-secret"),
                 webhook_secret="whsec_x", created_at=utcnow())
    session.add(row)
    return row.id


def test_too_short_or_ambiguous_beginnings_revoke_nothing(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        _stored(session, "dq_abcdef")
        _stored(session, "dq_abcxyz")
    with transaction(sessions) as session:
        assert revoke_key(session, "dq_") == 0  # too short to name a key
        assert revoke_key(session, "dq_abc") == 2  # both: nothing revoked
    with transaction(sessions) as session:
        assert revoke_key(session, "dq_abcdef-and-the-rest") == 1
    with sessions() as session:
        revoked = {row.prefix: row.revoked_at is not None for row in session.query(ApiKey)}
    assert revoked == {"dq_abcdef": True, "dq_abcxyz": False}
