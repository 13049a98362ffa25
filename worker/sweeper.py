"""`distilq beat`: periodic maintenance, one instance at a time (a Redis lock).

- hands jobs whose lease expired (their worker died) back to the queue, or fails them with `worker_lost`
  after `max_attempts`, so that a poison input cannot loop forever;
- re-publishes jobs `queued` for longer than `requeue_after_s` (their message was lost);
- frees idempotency keys older than their time to live;
- publishes webhook events that are due: retries at their scheduled time, and events whose message was lost.

The transitions themselves are the job store's (`store/jobs.py`); this module decides when and publishes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import redis
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from store import jobs
from webhooks import take_due_events
from worker.events import JobEvents

log = logging.getLogger(__name__)

LOCK_NAME = "distilq:beat"
#: Jobs handled per sweep step, so that one sweep's transaction stays short.
SWEEP_LIMIT = 500


class Sweeper:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        events: JobEvents,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessions = sessions
        self.events = events
        self.settings = settings
        self.clock = clock

    def sweep(self) -> dict[str, int]:
        return {
            "reclaimed": self._reclaim_expired_leases(),
            "republished": self._republish_stale(),
            "keys_freed": jobs.free_idempotency_keys(self.sessions, self.clock()),
            "webhooks_published": self._publish_due_webhooks(),
        }

    def _reclaim_expired_leases(self) -> int:
        failed, requeued, events = jobs.reclaim_expired(self.sessions, self.clock(), self.settings.max_attempts,
                                                        SWEEP_LIMIT)
        self.events.queued(requeued)
        self.events.finished(failed)
        self.events.webhooks(events)
        return len(failed) + len(requeued)

    def _republish_stale(self) -> int:
        stale = jobs.take_stale_queued(self.sessions, self.clock(), timedelta(seconds=self.settings.requeue_after_s),
                                       SWEEP_LIMIT)
        self.events.queued(stale)
        return len(stale)

    def _publish_due_webhooks(self) -> int:
        due = take_due_events(self.sessions, self.clock(), SWEEP_LIMIT)
        self.events.webhooks(due)
        return len(due)


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
