"""The wake-up protocol: the database row is a job's only record, so the queue carries no jobs, only wake-ups.

A wake-up is a Celery message on a task's queue that says "there may be queued jobs of this task". Mostly one
is pending per task (beat's forced ones aside): a Redis flag `distilq:wake:{task}` is set while one is. The API,
after committing a job, sets the flag if it is unset (SET NX) and publishes a wake-up only then: one Redis round
trip per job, one message per burst. A worker that takes a wake-up clears the flag *before* its first claim and
then claims and runs batches until none is left (`worker/batcher.py`).

Why nothing is missed: if a job's SET NX found the flag set, a wake-up was pending at that moment, and the worker
that takes it clears the flag after the job committed, so its claims see the job. If the SET NX won, its own
wake-up follows. Why workers join a backlog: a worker that leaves jobs queued after a batch asks for a wake-up
the same way, which an idle worker takes. What is lost with Redis (flag, message) or with a killed worker (its
message waits for the broker's visibility timeout) `beat` covers: jobs queued for longer than
`requeue_after_s` get a forced wake-up, and the flag expires by itself after `FLAG_TTL_S`.
"""

from __future__ import annotations

import logging

import redis
from celery import Celery

#: The inference task; its only argument is the task name whose queue it was sent to.
WAKE_TASK = "distilq.wake"
#: A flag outlives a lost wake-up by at most this long (then the next submission publishes again), in seconds.
FLAG_TTL_S = 30

log = logging.getLogger(__name__)


def flag_name(task: str) -> str:
    return f"distilq:wake:{task}"


def publish(celery: Celery, client: redis.Redis, task: str) -> None:
    """Sets the flag and publishes a wake-up whether or not one is pending (beat's fallback). Raises on failure."""
    client.set(flag_name(task), 1, ex=FLAG_TTL_S)
    celery.send_task(WAKE_TASK, args=[task], queue=task)


def request(celery: Celery, client: redis.Redis, task: str) -> bool:
    """Publishes a wake-up unless one is pending; True when this call published. Raises when Redis is away: the
    job stays queued and `beat` wakes a worker for it later."""
    if not client.set(flag_name(task), 1, nx=True, ex=FLAG_TTL_S):
        return False
    try:
        celery.send_task(WAKE_TASK, args=[task], queue=task)
    except Exception:
        client.delete(flag_name(task))  # the next submission tries again
        raise
    return True


def taken(client: redis.Redis, task: str) -> None:
    """A worker took a wake-up: the next submission publishes another, which an idle worker may take. Must run
    before the worker's first claim. A failure is logged: the flag then expires within FLAG_TTL_S."""
    try:
        client.delete(flag_name(task))
    except redis.RedisError as error:
        log.warning("could not clear the wake-up flag of %s: %s", task, error)
