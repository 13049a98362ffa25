"""`Prefer: wait[=N]` (RFC 7240): hold a request until its job finishes or N seconds pass.

The worker announces each finished job on a Redis channel; the database stays the judge of the status, and is
read again every second in case an announcement is missed.
"""

from __future__ import annotations

import re
import time

import redis
from sqlalchemy.orm import Session, sessionmaker

from distilq.queue import job_channel
from models.tables import TERMINAL_STATUSES, Job

#: The longest a request may be held, in seconds.
MAX_WAIT_S = 60
#: How often the row is read again while waiting, in seconds.
RECHECK_S = 1.0

_WAIT = re.compile(r"(?:^|[,;\s])wait(?:\s*=\s*\"?(\d+)\"?)?(?=$|[,;\s])", re.IGNORECASE)


def requested_wait_s(prefer: str | None) -> int | None:
    """Seconds asked for by a Prefer header (bare `wait` is the maximum), capped; None when not asked."""
    if not prefer:
        return None
    match = _WAIT.search(prefer)
    if match is None:
        return None
    return min(int(match.group(1)), MAX_WAIT_S) if match.group(1) is not None else MAX_WAIT_S


def wait_for_job(
    sessions: sessionmaker[Session], client: redis.Redis, job_id: str, timeout_s: float
) -> Job | None:
    """The job once terminal, or None when the time ran out (or Redis is unreachable and time ran out)."""
    deadline = time.monotonic() + timeout_s
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            pubsub.subscribe(job_channel(job_id))
        except redis.RedisError:
            pubsub = None
        while True:
            # Subscribed before reading, so a completion between the read and the wait is not missed.
            with sessions() as session:
                job = session.get(Job, job_id)
                if job is not None and job.status in TERMINAL_STATUSES:
                    return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            pause = min(remaining, RECHECK_S)
            if pubsub is None:
                time.sleep(pause)
                continue
            try:
                pubsub.get_message(timeout=pause)
            except redis.RedisError:
                pubsub = None
    finally:
        if pubsub is not None:
            pubsub.close()
