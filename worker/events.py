"""Announces jobs that reached a terminal status: on a Redis channel, for requests held by `Prefer: wait`."""

from __future__ import annotations

import logging

import redis

from distilq.queue import job_channel

log = logging.getLogger(__name__)


class JobEvents:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def finished(self, jobs: list[tuple[str, str]]) -> None:
        if not jobs:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for job_id, status in jobs:
                pipe.publish(job_channel(job_id), status)
            pipe.execute()
        except redis.RedisError as error:  # waiters also re-read the row; nothing is lost
            log.warning("could not announce %d finished jobs: %s", len(jobs), error)
