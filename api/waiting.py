"""`Prefer: wait[=N]` (RFC 7240): hold a request until its job finishes or N seconds pass.

The worker announces each finished job on a Redis channel of its own. One listener per API process
pattern-subscribes to all of them on one connection and wakes the request threads waiting on those jobs, so a
held request costs no connection of its own. The database stays the judge of the status: it is read when the
wait starts, when the job is announced, and again every few seconds in case an announcement is missed (every
second while the listener is not subscribed: reconnecting, Redis restarting).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from sqlalchemy.orm import Session, sessionmaker

from core.queue import job_channel
from models.tables import TERMINAL_STATUSES, Job

log = logging.getLogger(__name__)

#: The longest a request may be held, in seconds.
MAX_WAIT_S = 60
#: How often the row is read again while waiting, in seconds: while the listener is subscribed, and while not.
RECHECK_SUBSCRIBED_S = 5.0
RECHECK_S = 1.0
#: Pause before the listener reconnects after losing Redis, and the longest it blocks reading, in seconds.
RECONNECT_S = 1.0
LISTEN_POLL_S = 1.0

# ASCII digits only (`\d` would take any script's digits), and however many: a long number is read as "the most".
_WAIT = re.compile(r"(?:^|[,;\s])wait(?:\s*=\s*\"?([0-9]+)\"?)?(?=$|[,;\s])", re.IGNORECASE)
_PREFIX = job_channel("")
_SLOTS_PREFIX = "distilq:waiting:"
#: A key's count of held waits outlives the longest wait by this long, in seconds.
SLOT_SLACK_S = 30


def requested_wait_s(prefer: str | None) -> int | None:
    """Seconds asked for by a Prefer header (bare `wait` is the maximum), capped; None when not asked."""
    if not prefer:
        return None
    match = _WAIT.search(prefer)
    if match is None:
        return None
    digits = match.group(1)
    if digits is None or len(digits) > len(str(MAX_WAIT_S)):
        return MAX_WAIT_S
    return min(int(digits), MAX_WAIT_S)


class CompletionListener:
    """Wakes the threads waiting on a job when the worker announces it finished. Started on first use, in the
    process that uses it (gunicorn forks its workers after importing the app)."""

    def __init__(self, redis_url: str) -> None:
        # No socket timeout: the connection idles between announcements; health checks find a dead one.
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, health_check_interval=30)
        self._waiters: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: Set while subscribed: announcements made now reach the waiters.
        self.subscribed = threading.Event()

    @contextmanager
    def watching(self, job_id: str) -> Iterator[threading.Event]:
        """An event set when `job_id` is announced, for as long as the block runs."""
        finished = threading.Event()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="distilq-completions", daemon=True)
                self._thread.start()
            self._waiters.setdefault(job_id, set()).add(finished)
        try:
            yield finished
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(finished)
                    if not waiting:
                        del self._waiters[job_id]

    def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(f"{_PREFIX}*")
                self.subscribed.set()
                while True:
                    message = pubsub.get_message(timeout=LISTEN_POLL_S)
                    if message is not None and message["type"] == "pmessage":
                        self._wake(message["channel"].decode()[len(_PREFIX):])
            except redis.RedisError as error:
                log.warning("job completion listener lost Redis (%s); reconnecting", error.__class__.__name__)
            finally:
                self.subscribed.clear()
                pubsub.close()
            time.sleep(RECONNECT_S)

    def _wake(self, job_id: str) -> None:
        with self._lock:
            for finished in self._waiters.get(job_id, ()):
                finished.set()


class WaitSlots:
    """How many requests each API key holds waiting, across every API process (a count in Redis), capped: a held
    request holds a server thread, and one key must not take them all from the others. Each count expires a while
    after the longest wait, so that one left by a killed process heals by itself; with Redis away, waits are not
    counted (the rate limit fails open the same way)."""

    def __init__(self, client: redis.Redis, per_key: int) -> None:
        self.client = client
        self.per_key = per_key

    @contextmanager
    def slot(self, key_id: str) -> Iterator[bool]:
        """True inside the block when the key may wait; False when it already holds `per_key` waits."""
        name = f"{_SLOTS_PREFIX}{key_id}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(name)
            pipe.expire(name, MAX_WAIT_S + SLOT_SLACK_S)
            held, _ = pipe.execute()
        except redis.RedisError as error:
            log.warning("waits not counted: %s", error.__class__.__name__)
            yield True
            return
        granted = held <= self.per_key
        try:
            yield granted
        finally:
            try:
                self.client.decr(name)
            except redis.RedisError:  # the count expires by itself
                pass


def wait_for_job(
    sessions: sessionmaker[Session], listener: CompletionListener, job_id: str, timeout_s: float
) -> Job | None:
    """The job once terminal, or None when the time ran out."""
    deadline = time.monotonic() + timeout_s
    with listener.watching(job_id) as finished:
        while True:
            # Watched before reading, so a completion between the read and the wait is not missed.
            with sessions() as session:
                job = session.get(Job, job_id)
                if job is not None and job.status in TERMINAL_STATUSES:
                    return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            recheck = RECHECK_SUBSCRIBED_S if listener.subscribed.is_set() else RECHECK_S
            finished.wait(min(remaining, recheck))
            finished.clear()
