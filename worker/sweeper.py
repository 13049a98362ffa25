"""`distilq beat`: periodic maintenance, one instance at a time (a Redis lock).

- hands jobs whose lease expired (their worker died) back to the queue, or fails them with `worker_lost`
  after `max_attempts`, so that a poison input cannot loop forever;
- re-publishes jobs `queued` for longer than `requeue_after_s` (their message was lost);
- frees idempotency keys older than their time to live;
- publishes webhook events that are due: retries at their scheduled time, and events whose message was lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import redis
from celery import Celery
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from distilq.queue import publish_job
from distilq.settings import Settings
from models.db import rowcount, transaction
from models.tables import EVENT_COMPLETED, FAILED, QUEUED, RUNNING, Job, WebhookEvent
from models.webhook_outbox import record_event
from worker.events import JobEvents
from worker.webhook_sender import due_events

log = logging.getLogger(__name__)

LOCK_NAME = "distilq:beat"
#: Jobs handled per sweep step, so that one sweep's transaction stays short.
SWEEP_LIMIT = 500
#: A due webhook event still undelivered this long after it was put on the queue is put there again.
WEBHOOK_REPUBLISH_AFTER = timedelta(seconds=30)


class Sweeper:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        celery: Celery,
        events: JobEvents,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessions = sessions
        self.celery = celery
        self.events = events
        self.settings = settings
        self.clock = clock

    def sweep(self) -> dict[str, int]:
        return {
            "reclaimed": self._reclaim_expired_leases(),
            "republished": self._republish_stale(),
            "keys_freed": self._free_idempotency_keys(),
            "webhooks_published": self._publish_due_webhooks(),
        }

    def _reclaim_expired_leases(self) -> int:
        now = self.clock()
        failed: list[tuple[str, str]] = []
        requeued: list[tuple[str, str]] = []
        events: list[str] = []
        with transaction(self.sessions) as session:
            expired = session.execute(
                select(Job.id, Job.attempts, Job.task)
                .where(Job.status == RUNNING, Job.lease_until < now)
                .limit(SWEEP_LIMIT)
                .with_for_update(skip_locked=True)
            ).all()
            for job_id, attempts, task in expired:
                base = update(Job).where(Job.id == job_id, Job.status == RUNNING, Job.attempts == attempts)
                if attempts >= self.settings.max_attempts:
                    error = {"code": "worker_lost",
                             "message": f"the worker running this job was lost {attempts} times"}
                    values = {"status": FAILED, "error": error, "completed_at": now, "lease_until": None}
                    if rowcount(session.execute(base.values(**values))):
                        failed.append((job_id, FAILED))
                        event = record_event(session, job_id, EVENT_COMPLETED, now)
                        events += [event] if event else []
                elif rowcount(session.execute(base.values(status=QUEUED, lease_until=None, published_at=now))):
                    requeued.append((job_id, task))
        self._publish(requeued)
        self.events.finished(failed)
        self.events.webhooks(events)
        return len(failed) + len(requeued)

    def _republish_stale(self) -> int:
        now = self.clock()
        cutoff = now - timedelta(seconds=self.settings.requeue_after_s)
        with transaction(self.sessions) as session:
            stale = session.execute(
                select(Job.id, Job.task)
                .where(Job.status == QUEUED, func.coalesce(Job.published_at, Job.created_at) < cutoff)
                .order_by(Job.created_at)
                .limit(SWEEP_LIMIT)
            ).all()
            if stale:
                session.execute(
                    update(Job).where(Job.id.in_([job_id for job_id, _ in stale]), Job.status == QUEUED)
                    .values(published_at=now)
                )
        self._publish([(job_id, task) for job_id, task in stale])
        return len(stale)

    def _free_idempotency_keys(self) -> int:
        with transaction(self.sessions) as session:
            return rowcount(
                session.execute(
                    update(Job)
                    .where(Job.idempotency_key.is_not(None), Job.idempotency_expires_at < self.clock())
                    .values(idempotency_key=None)
                )
            )

    def _publish_due_webhooks(self) -> int:
        now = self.clock()
        with transaction(self.sessions) as session:
            due = due_events(session, now, WEBHOOK_REPUBLISH_AFTER, SWEEP_LIMIT)
            if due:
                session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(due)).values(published_at=now))
        self.events.webhooks(due)
        return len(due)

    def _publish(self, jobs: list[tuple[str, str]]) -> None:
        for job_id, task in jobs:
            try:
                publish_job(self.celery, job_id, task)
            except Exception as error:  # still queued: the next sweep tries again
                log.warning("re-publishing job %s failed: %s", job_id, error)


def run_forever(sweeper: Sweeper, client: redis.Redis, stop: threading.Event) -> None:
    """Sweeps every `sweep_interval_s` while holding the beat lock; a second beat waits for the lock."""
    interval = sweeper.settings.sweep_interval_s
    lock = client.lock(LOCK_NAME, timeout=max(3 * interval, 10), thread_local=False)
    standing_by = False
    while not stop.is_set():
        try:
            held = lock.owned() and lock.extend(max(3 * interval, 10), replace_ttl=True)
            if not held:
                held = lock.acquire(blocking=False)
                if held:
                    log.info("this beat holds the beat lock and sweeps")
                elif not standing_by:
                    log.info("another beat holds the beat lock; standing by")
                standing_by = not held
            if held:
                counts = sweeper.sweep()
                if any(counts.values()):
                    log.info("sweep: %s", counts)
        except Exception as error:  # Redis or the database is down: try again next time
            log.warning("sweep failed: %s", error)
        stop.wait(interval)
