"""Request-scoped dependencies: the database sessions and the calling API key, resolved in one place.

Two sessions per request at most: `db()` for work that writes, `read_db()` for reads only. On SQLite every
writing transaction takes the one write lock for its whole length, so reads (the key lookup, GET of a job, the
job list) go through `read_db()`, which takes none, and never hold up the worker's write-back."""

from __future__ import annotations

from flask import g, request
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.key_cache import Caller
from api.state import app_state
from core.clock import utcnow
from models.tables import Job
from store import job_reads, keys


def db() -> Session:
    if "db" not in g:
        g.db = app_state().sessions()
    session: Session = g.db
    return session


def read_db() -> Session:
    if "read_db" not in g:
        g.read_db = app_state().read_sessions()
    session: Session = g.read_db
    return session


def close_db(_error: BaseException | None = None) -> None:
    for name in ("db", "read_db"):
        session = g.pop(name, None)
        if session is not None:
            session.close()


def authenticate() -> None:
    """Resolves `Authorization: Bearer <key>` to the calling key (`current_key()`), or answers 401. A key seen
    lately comes from the process's key cache, which a revocation empties at once (`api/key_cache.py`)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "send your API key as 'Authorization: Bearer <key>'",
                       headers={"WWW-Authenticate": "Bearer"})
    state = app_state()
    state.announcements.start()  # the cache is used only while revocations can be heard
    key_hash = keys.hash_key(token)
    caller = state.key_cache.get(key_hash)
    if caller is None:
        generation = state.key_cache.generation()
        reader = read_db()
        key = keys.active_key(reader, token, key_hash)
        reader.close()  # ends the read (a request may take long; its snapshot need not)
        if key is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        caller = Caller(key.id, key.last_used_at)
        state.key_cache.put(key_hash, caller, generation)
    now = utcnow()
    if keys.needs_touch(caller.last_used_at, now):
        session = db()
        keys.touch(session, caller.id, now)
        session.commit()
        caller.last_used_at = now
    g.caller = caller
    state.rate_limiter.check(caller.id)


def current_key() -> Caller:
    caller: Caller = g.caller
    return caller


def own_job(job_id: str, session: Session | None = None) -> Job:
    """The calling key's job, read with `session` (default: the request's writing session); another key's job is
    as absent as a missing one."""
    job = job_reads.own_job(db() if session is None else session, current_key().id, job_id)
    if job is None:
        raise no_such_job(job_id)
    return job


def no_such_job(job_id: str) -> ApiError:
    """A job the calling key does not have: missing, or another key's."""
    return ApiError(404, "not_found", f"no job {job_id}")
