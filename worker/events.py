"""Announces what the database recorded: queued jobs as a wake-up on their task's queue (`core/wakeups.py`),
finished jobs on a Redis channel (for requests held by `Prefer: wait`), webhook events on the webhooks queue, a
file's last line to `beat` (`core/sweep_requests.py`). All are hints after the commit; `beat` and re-reads cover a
lost one. The batcher and the sweeper take any object of this shape (tests pass one that records)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import redis
from celery import Celery

from core import sweep_requests, wakeups
from core.queue import announcement, announcements, publish_webhook, waiter_channel

log = logging.getLogger(__name__)


class JobEvents:
    def __init__(self, client: redis.Redis, celery: Celery) -> None:
        self.client = client
        self.celery = celery

    def queued(self, jobs: list[tuple[str, str]]) -> None:
        """(job id, task) of jobs (back) in the queue, found by `beat`: one wake-up per task, published even if
        the flag says one is pending (it may be what was lost)."""
        for task in sorted({task for _, task in jobs}):
            try:
                wakeups.publish(self.celery, self.client, task)
            except Exception as error:  # still queued: the next sweep tries again
                log.warning("waking a %s worker failed: %s", task, error)

    def wake_taken(self, task: str) -> None:
        """This worker took a wake-up of `task` and is about to claim."""
        wakeups.taken(self.client, task)

    def backlog(self, task: str) -> None:
        """Jobs of `task` are left queued behind this worker's batch: wake another worker, unless one is pending."""
        try:
            wakeups.request(self.celery, self.client, task)
        except Exception as error:  # this worker drains them anyway; `beat` covers the rest
            log.warning("waking another %s worker failed: %s", task, error)

    def files_moved(self) -> None:
        """A pass wrote lines of a batch or an evaluation: beat is asked to write them to their files and end a file
        whose last line that was, now (`core/sweep_requests`)."""
        sweep_requests.ask(self.client)

    def webhooks(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            try:
                publish_webhook(self.celery, event_id)
            except Exception as error:  # recorded in the database: `beat` publishes it
                log.warning("could not publish webhook event %s: %s", event_id, error)

    def finished(self, jobs: list[tuple[str, str, str | None]],
                 public: Mapping[str, dict[str, Any]] | None = None) -> None:
        """(job id, status, the API process holding its request) of jobs that reached a terminal status: those each
        process holds are announced to it alone (`core.queue.waiter_channel`), in one message (`announcements`),
        each with its JSON from `public` in place of the status where small enough (`core.queue.announcement`), so
        that a held request needs no read. A job nobody holds is announced to nobody: no process listens for it."""
        by_process: dict[str, list[str]] = defaultdict(list)
        for job_id, status, held_by in jobs:
            if held_by:
                by_process[held_by].append(announcement(job_id, status, (public or {}).get(job_id)))
        if not by_process:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for held_by, announced in by_process.items():
                for message in announcements(announced):
                    pipe.publish(waiter_channel(held_by), message)
            pipe.execute()
        except redis.RedisError as error:  # waiters also re-read the row; nothing is lost
            log.warning("could not announce %d finished jobs: %s", sum(map(len, by_process.values())), error)
