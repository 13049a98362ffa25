"""API keys: made once, shown once, stored as SHA-256 hashes; each key has its own webhook secret."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.clock import utcnow
from models.tables import ApiKey
from webhooks import new_webhook_secret

KEY_PREFIX = "dq_"
#: Characters of a key kept in the clear to tell keys apart: the prefix and 6 random characters.
SHOWN_PREFIX_LEN = len(KEY_PREFIX) + 6
#: The shortest beginning of a key that `keys revoke` takes: the `dq_` and three characters.
MIN_REVOKE_PREFIX_LEN = len(KEY_PREFIX) + 3
#: `last_used_at` is refreshed at most this often, so that reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(session: Session, name: str) -> str:
    """Stores a new key and returns it: the only time it exists in plain text."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(
            id=str(uuid.uuid4()),
            name=name,
            prefix=key[:SHOWN_PREFIX_LEN],
            key_hash=hash_key(key),
            webhook_secret=new_webhook_secret(),
            created_at=utcnow(),
        )
    )
    return key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, id_or_key: str) -> int:
    """Revokes the active key that `id_or_key` names: its id, the key itself, or its beginning (the shown prefix
    or more of the key, or at least MIN_REVOKE_PREFIX_LEN characters of the shown prefix). Returns how many keys
    matched: 1 revokes it; 0 or more than one revokes nothing."""
    active = ApiKey.revoked_at.is_(None)
    matches = list(session.scalars(select(ApiKey.id).where(
        active, or_(ApiKey.id == id_or_key, ApiKey.key_hash == hash_key(id_or_key)))))
    if not matches and len(id_or_key) >= MIN_REVOKE_PREFIX_LEN:
        shown = id_or_key[:SHOWN_PREFIX_LEN]
        condition = ApiKey.prefix == shown if len(shown) == SHOWN_PREFIX_LEN else ApiKey.prefix.startswith(shown)
        matches = list(session.scalars(select(ApiKey.id).where(active, condition)))
    if len(matches) == 1:
        session.execute(update(ApiKey).where(ApiKey.id == matches[0]).values(revoked_at=utcnow()))
    return len(matches)


def active_key(session: Session, key: str, key_hash: str | None = None) -> ApiKey | None:
    """The unrevoked key whose SHA-256 this is (`key_hash`, when the caller has it already): the database
    compares hashes, never the secret itself."""
    return session.scalars(
        select(ApiKey).where(ApiKey.key_hash == (key_hash or hash_key(key)), ApiKey.revoked_at.is_(None))
    ).one_or_none()


def needs_touch(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION


def webhook_secret(session: Session, key_id: str) -> str:
    """The key's current webhook signing secret."""
    return session.scalars(select(ApiKey.webhook_secret).where(ApiKey.id == key_id)).one()


def touch(session: Session, key_id: str, now: datetime) -> None:
    """Records the key's use; the caller commits."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
