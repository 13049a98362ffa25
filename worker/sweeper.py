"""`distilq beat`: periodic maintenance, one instance at a time (a Redis lock).

- hands back to the queue the jobs of a worker known to be dead (its presence key gone for DEAD_AFTER) or whose
  lease expired, or fails them with `worker_lost` after `max_attempts`, so that a poison input cannot loop;
- publishes a wake-up, flag or not, for jobs `queued` for longer than `requeue_after_s` (theirs was lost);
- frees idempotency keys older than their time to live;
- publishes webhook events that are due: retries at their scheduled time, and events whose message was lost;
- writes the output and error files of running batches as their lines end (`store/batch_output.py`), and
  finalizes batches with no line left in flight: the rest of their files, and their end (`store/batches.py`);
- fails a batch whose file check stopped moving (its API process died mid-check), deleting the lines it queued;
- deletes what has outlived `DISTILQ_RETENTION_S`: ended jobs, batches and evaluations, files (`store/retention.py`).

The transitions themselves are the job store's (`store/jobs.py`); this module decides when and publishes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import redis
from sqlalchemy.orm import Session, sessionmaker

from core import sweep_requests
from core.presence import REFRESH_S
from core.settings import Settings
from core.tasks import TASKS
from store import batch_output, batches, evaluations, jobs, retention
from webhooks import take_due_events
from worker.events import JobEvents

log = logging.getLogger(__name__)

LOCK_NAME = "distilq:beat"
#: A worker holding running jobs is dead once its presence key has been missing this long: past its expiry, and
#: long enough for a live worker to write it again after Redis restarted empty (it refreshes every REFRESH_S).
DEAD_AFTER = timedelta(seconds=2 * REFRESH_S)
#: Jobs handled per sweep step, so that one sweep's transaction stays short.
SWEEP_LIMIT = 500
#: The least time between two sweeps of the files made when asked, in seconds: the asks made meanwhile (a worker
#: asks after each pass of a file's lines: with interactive jobs about, a pass every few milliseconds) wait in the
#: list and make one sweep, not one each. Without it, beat spent a fifth of a core on them beside a batch and
#: interactive jobs (bench (e) on two cores: 7.5 CPU-s over beat's life against 3.2 with it). What it adds to a
#: file's end, at most.
ASKED_SWEEP_GAP_S = 0.1
#: The error of a batch whose check stopped (`store.batches.abandoned_checks`), as its `errors` list shows it.
CHECK_INTERRUPTED = {"code": "check_interrupted", "line": None, "param": None,
                     "message": "the check of the input file stopped before its end (the API process checking it "
                                "stopped); no line of it runs: create the batch again"}


class Sweeper:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        events: JobEvents,
        settings: Settings,
        clock: Callable[[], datetime],
        live_workers: Callable[[], set[str]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.events = events
        self.settings = settings
        self.clock = clock
        #: The presence names of the workers alive now; raises when that cannot be known (Redis away).
        self.live_workers = live_workers
        #: Workers holding running jobs whose presence was missing at a sweep, and since when.
        self._missing_since: dict[str, datetime] = {}

    def sweep(self) -> dict[str, int]:
        """The periodic sweep: everything."""
        return {
            "reclaimed": self._reclaim_expired_leases(),
            "stale_woken": self._wake_for_stale(),
            "keys_freed": jobs.free_idempotency_keys(self.sessions, self.clock()),
            "webhooks_published": self._publish_due_webhooks(),
            "checks_abandoned": self._fail_abandoned_checks(),
            **self.sweep_files(),
            **self._expire(),
        }

    def _expire(self) -> dict[str, int]:
        """What has outlived `retention_s`, deleted (`store/retention.py`); nothing when it is 0."""
        if not self.settings.retention_s:
            return {}
        return retention.delete_expired(self.sessions, self.clock(), timedelta(seconds=self.settings.retention_s))

    def sweep_files(self) -> dict[str, int]:
        """What an ask for a sweep (`core/sweep_requests.py`: a worker's pass wrote lines of a batch or an
        evaluation, or the API cancelled one) needs at once: the batches' files written as far as their lines have
        ended, and the batches and evaluations with no line left in flight ended. Reads alone when there is nothing
        to write: an ask comes after each such pass."""
        return {
            "batch_lines_written": self._write_batch_outputs(),
            "batches_finalized": self._finalize("batch", batches.due_for_finalizing, batches.finalize),
            "evaluations_finalized": self._finalize("evaluation", evaluations.due_for_finalizing,
                                                    evaluations.finalize),
        }

    def _dead_workers(self, now: datetime) -> set[str]:
        if self.live_workers is None:
            return set()
        try:
            live = self.live_workers()
        except Exception as error:  # unknown now: only leases decide
            log.warning("worker presence unknown: %s", error)
            return set()
        holding = jobs.running_workers(self.sessions)
        missing = holding - live
        self._missing_since = {name: self._missing_since.get(name, now) for name in missing}
        return {name for name, since in self._missing_since.items() if now - since >= DEAD_AFTER}

    def _reclaim_expired_leases(self) -> int:
        now = self.clock()
        dead = self._dead_workers(now)
        failed, requeued, events = jobs.reclaim_expired(self.sessions, now, self.settings.max_attempts, SWEEP_LIMIT,
                                                        dead)
        if dead and (failed or requeued):
            log.info("handed on the jobs of dead workers", extra={"workers": sorted(dead),
                                                                  "jobs": len(failed) + len(requeued)})
        self.events.queued(requeued)
        self.events.finished(failed)
        self.events.webhooks(events)
        return len(failed) + len(requeued)

    def _wake_for_stale(self) -> int:
        """Tasks with a job queued past `requeue_after_s` (their wake-up was lost, or their backlog is long): a
        forced wake-up each; how many tasks."""
        stale = jobs.take_stale_queued(self.sessions, self.clock(), timedelta(seconds=self.settings.requeue_after_s),
                                       TASKS)
        self.events.queued(stale)
        return len(stale)

    def _fail_abandoned_checks(self) -> int:
        now = self.clock()
        failed = 0
        for batch_id in batches.abandoned_checks(self.sessions, now - timedelta(seconds=self.settings.check_lease_s),
                                                 SWEEP_LIMIT):
            if batches.fail_check(self.sessions, batch_id, [CHECK_INTERRUPTED], now):
                log.warning("failed batch %s: its check stopped (the API process checking its file died)", batch_id)
                failed += 1
        return failed

    def _write_batch_outputs(self) -> int:
        """The lines of running batches that have ended, appended to their output and error files
        (`store/batch_output.py`); how many. A batch whose write fails is logged and tried again at the next sweep."""
        written = 0
        for batch_id in batches.running_batches(self.sessions, SWEEP_LIMIT):
            try:
                while lines := batch_output.write_ready(self.sessions, batch_id, self.clock()):
                    written += lines
            except Exception:
                log.exception("writing the files of batch %s failed; the next sweep tries again", batch_id)
        return written

    def _finalize(self, kind: str, due: Callable[[sessionmaker[Session], int], list[str]],
                  finalize: Callable[[sessionmaker[Session], str, Callable[[], datetime]], list[str]]) -> int:
        """Batches (or evaluations) with no line left in flight: their files written and their end recorded. One
        that fails is logged and tried again at the next sweep; the others go on."""
        done = 0
        for owner_id in due(self.sessions, SWEEP_LIMIT):
            started = time.perf_counter()
            try:
                events = finalize(self.sessions, owner_id, self.clock)
            except Exception:
                log.exception("finalizing %s %s failed; the next sweep tries again", kind, owner_id)
                continue
            log.info(f"{kind} finalized", extra={kind: owner_id, "seconds": round(time.perf_counter() - started, 3)})
            self.events.webhooks(events)
            done += 1
        return done

    def _publish_due_webhooks(self) -> int:
        due = take_due_events(self.sessions, self.clock(), SWEEP_LIMIT)
        self.events.webhooks(due)
        return len(due)


def run_forever(sweeper: Sweeper, client: redis.Redis, stop: threading.Event) -> None:
    """Sweeps every `sweep_interval_s` while holding the beat lock, and in between, when asked
    (`core/sweep_requests.py`), the files alone (`Sweeper.sweep_files`); a second beat waits for the lock."""
    interval = sweeper.settings.sweep_interval_s
    lock = client.lock(LOCK_NAME, timeout=max(3 * interval, 10), thread_local=False)
    standing_by = False
    swept_at = -math.inf
    while not stop.is_set():
        held = False
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
                if time.monotonic() - swept_at >= interval:
                    swept_at = time.monotonic()
                    counts = sweeper.sweep()
                    if any(counts.values()):
                        log.info("sweep: %s", counts)
                else:  # a worker asks after every pass of a file's lines: its own log says enough
                    sweeper.sweep_files()
                    stop.wait(ASKED_SWEEP_GAP_S)
        except Exception as error:  # Redis or the database is down: try again next time
            log.warning("sweep failed: %s", error)
        _until_next_sweep(client, max(0.0, swept_at + interval - time.monotonic()) if held else interval, stop,
                          listen=bool(held))


def _until_next_sweep(client: redis.Redis, interval: float, stop: threading.Event, listen: bool) -> None:
    """`interval` seconds, or less: while this beat sweeps (`listen`), until a sweep is asked for. A beat standing
    by leaves the asks to the one that sweeps."""
    started = time.monotonic()
    if listen:
        try:
            sweep_requests.wait(client, interval, stop)
            return
        except redis.RedisError as error:  # the periodic sweep goes on
            log.warning("asks for a sweep not heard: %s", error)
    stop.wait(max(0.0, interval - (time.monotonic() - started)))
