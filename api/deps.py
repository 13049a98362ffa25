"""Request-scoped dependencies: the database session and the calling API key, resolved in one place."""

from __future__ import annotations

from datetime import timedelta

from flask import g, request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.state import app_state
from distilq.clock import utcnow
from distilq.keys import hash_key
from models.tables import ApiKey, Job

#: `last_used_at` is refreshed at most this often, so that reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def db() -> Session:
    if "db" not in g:
        g.db = app_state().sessions()
    session: Session = g.db
    return session


def close_db(_error: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def authenticate() -> None:
    """Resolves `Authorization: Bearer <key>` to `g.api_key`, or answers 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send your API key as 'Authorization: Bearer <key>'",
                       headers={"WWW-Authenticate": "Bearer"})
    # The lookup is by the key's SHA-256: the database compares hashes, never the secret itself.
    session = db()
    key = session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_key(token.strip()), ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if key is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        session.commit()
    g.api_key = key
    app_state().rate_limiter.check(key.id)


def current_key() -> ApiKey:
    key: ApiKey = g.api_key
    return key


def own_job(job_id: str) -> Job:
    """The calling key's job; another key's job is as absent as a missing one."""
    job = db().scalars(select(Job).where(Job.id == job_id, Job.api_key_id == current_key().id)).one_or_none()
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return job
