"""A batch as its check finds it, made in the store directly: for tests of what the check writes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import ApiKey
from store import batches, files, keys


def validating_batch(sessions: sessionmaker[Session], now: datetime) -> tuple[str, str]:
    """A new key, an empty batch file of it and a batch of that file, `validating`: (the key's id, the batch's)."""
    with sessions() as session:
        key = keys.create_key(session, "lines")
        session.commit()
        api_key_id = session.scalars(select(ApiKey.id).where(ApiKey.key_hash == keys.hash_key(key))).one()
        file = files.write_file(session, api_key_id=api_key_id, purpose="batch", filename="l.jsonl", parts=[],
                                max_bytes=None, now=now)
        batch_id = batches.new_batch_id()
        batches.begin_batch(session, batch_id=batch_id, api_key_id=api_key_id, input_file_id=file.id, endpoint=None,
                            completion_window="24h", webhook=None, metadata=None, now=now)
    return api_key_id, batch_id
