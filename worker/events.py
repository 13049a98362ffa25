"""Announces what the database recorded: finished jobs on a Redis channel (for requests held by `Prefer: wait`),
webhook events on the webhooks queue. Both are hints after the commit; `beat` and re-reads cover a lost one."""

from __future__ import annotations

import logging

import redis
from celery import Celery

from distilq.queue import job_channel, publish_webhook

log = logging.getLogger(__name__)


class JobEvents:
    def __init__(self, client: redis.Redis, celery: Celery) -> None:
        self.client = client
        self.celery = celery

    def webhooks(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            try:
                publish_webhook(self.celery, event_id)
            except Exception as error:  # recorded in the database: `beat` publishes it
                log.warning("could not publish webhook event %s: %s", event_id, error)

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
