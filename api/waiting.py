"""`Prefer: wait[=N]` (RFC 7240): hold a request until its job finishes or N seconds pass.

The worker announces each finished job whose request an API process holds on that process's Redis channel (the
job row records which, `Job.held_by`); the process's listener (`api/announcements.py`) wakes the request threads
waiting on those jobs, so a held request costs no connection of its own. The database stays the judge of the
status: it is read when the job is announced, and again every few seconds in case an announcement is missed (every
second while the listener is not subscribed — reconnecting, Redis restarting — or when the job is announced to
another process: an idempotent replay). A request starts watching before its job is committed, so the wait needs
no first read.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy.orm import Session, sessionmaker

from api.announcements import Announcements, Watch
from contract.job_json import job_to_public
from core.json_text import json_text
from models.tables import TERMINAL_STATUSES, Job

#: The longest a request may be held, in seconds.
MAX_WAIT_S = 60
#: How often the row is read again while waiting, in seconds: while the listener is subscribed, and while not.
RECHECK_SUBSCRIBED_S = 5.0
RECHECK_S = 1.0

# ASCII digits only (`\d` would take any script's digits), and however many: a long number is read as "the most".
_WAIT = re.compile(r"(?:^|[,;\s])wait(?:\s*=\s*\"?([0-9]+)\"?)?(?=$|[,;\s])", re.IGNORECASE)


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


class WaitSlots:
    """How many requests each API key holds waiting in this process, capped: a held request holds one of this
    process's server threads, and one key must not take them all from the others. Counted here, not across
    processes — the threads a key could take are each process's own — and so at no round trip: a count in Redis
    (INCR and EXPIRE, then DECR) cost an API process ~230 CPU-µs a held request, ~9 % of its CPU a held job, more
    among many threads (BENCHMARKS.md, session 31). It holds with Redis away too."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def held(self, key_id: str) -> int:
        """The key's requests held in this process now."""
        with self._lock:
            return self._held.get(key_id, 0)

    @contextmanager
    def slot(self, key_id: str) -> Iterator[bool]:
        """True inside the block when the key may wait; False when it already holds `per_key` waits here."""
        with self._lock:
            held = self._held.get(key_id, 0)
            granted = held < self.per_key
            if granted:
                self._held[key_id] = held + 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    left = self._held[key_id] - 1
                    if left:
                        self._held[key_id] = left
                    else:
                        del self._held[key_id]


def wait_for_job(
    sessions: sessionmaker[Session], listener: Announcements, job_id: str, timeout_s: float,
    watch: Watch | None = None, read_first: bool = True, announced_here: bool = True,
) -> str | None:
    """The job's JSON text once it is terminal, or None when the time ran out. `watch`: the caller's
    `listener.watching(job_id)` (else one is made here). `read_first` False: the watch was entered while the
    listener was subscribed and before the job was committed, so the job cannot have finished unannounced and
    the first read waits for the announcement (or the recheck). An announcement that carries the job's JSON is
    the answer; one that does not is followed by a read. `announced_here` False: the job's finish is announced to
    another process or to none (an idempotent replay of another request's job): the row is read every RECHECK_S."""
    deadline = time.monotonic() + timeout_s
    with ExitStack() as held:
        read_now = read_first
        watching = watch if watch is not None else held.enter_context(listener.watching(job_id))
        while True:
            if watching.public is not None:
                return watching.public
            if read_now:
                # Watched before reading, so a completion between the read and the wait is not missed.
                with sessions() as session:
                    job = session.get(Job, job_id)
                    if job is not None and job.status in TERMINAL_STATUSES:
                        return json_text(job_to_public(job))
            read_now = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            recheck = RECHECK_SUBSCRIBED_S if announced_here and listener.subscribed.is_set() else RECHECK_S
            watching.event.wait(min(remaining, recheck))
            watching.event.clear()
