"""The API process's one Redis subscription: what other processes announce to it.

- a job finished whose request this process holds (`core.queue.waiter_channel`: the process's own channel, named
  by its `token`, which the job row records as `held_by`; published after the commit; a pass's jobs of this process
  in one message, each with its JSON when small): wakes the request threads held on those jobs by `Prefer: wait`
  (`api/waiting.py`), handing them that JSON, so a held request costs no connection of its own and, mostly, no
  read. A process hears only its own jobs — not every job of every process, which would cost each of N processes
  N times its own share — and a job nobody holds is announced to nobody;
- a key was revoked (`core.queue.KEYS_REVOKED_CHANNEL`, published by `distilq keys revoke`): empties the key
  cache (`api/key_cache.py`).

Announcements are hints: the database stays the judge. `subscribed` tells whether announcements made now arrive;
while it is clear, waiters re-read the row every second and the key cache is not used. The listener is started
on first use, in the process that uses it (gunicorn forks its workers after importing the app).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from core.queue import KEYS_REVOKED_CHANNEL, earlier_waiter_channel, read_announcements, waiter_channel

log = logging.getLogger(__name__)

#: Pause before the listener reconnects after losing Redis, and the longest it blocks reading, in seconds.
RECONNECT_S = 1.0
LISTEN_POLL_S = 1.0


class Watch:
    """Set when the watched job is announced finished; `public` is the JSON text it was announced with, if any."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.public: str | None = None


class Announcements:
    def __init__(self, redis_url: str, on_keys_revoked: Callable[[], None] = lambda: None) -> None:
        # No socket timeout: the connection idles between announcements; health checks find a dead one.
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, health_check_interval=30)
        #: Called when a key is revoked, and whenever revocations may have been missed (on each subscription).
        self.on_keys_revoked = on_keys_revoked
        self._waiters: dict[str, set[Watch]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: Set while subscribed: announcements made now arrive.
        self.subscribed = threading.Event()
        self._token: str | None = None
        self._token_pid: int | None = None
        self._token_lock = threading.Lock()

    @property
    def token(self) -> str:
        """This process's name for announcements (`Job.held_by`), made in the process that uses it: gunicorn forks
        its workers after this object is made, and each must hear its own jobs only. Made once under a lock: the
        listener thread, subscribing, and the first request thread, storing its job, ask for it at the same moment
        — had each made its own, the process would have listened on one channel while its jobs named the other,
        and every held request would have waited for its re-read."""
        with self._token_lock:
            if self._token is None or self._token_pid != os.getpid():
                self._token, self._token_pid = uuid.uuid4().hex, os.getpid()
            return self._token

    def start(self) -> None:
        """Starts listening, if not yet (or again, should the thread have died)."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="distilq-announcements", daemon=True)
                self._thread.start()

    @contextmanager
    def watching(self, job_id: str) -> Iterator[Watch]:
        """A watch of `job_id`'s announcement, for as long as the block runs."""
        self.start()
        watch = Watch()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(watch)
                    if not waiting:
                        del self._waiters[job_id]

    def _listen(self) -> None:
        outage = False  # one warning per outage, not one per second of it
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                token = self.token
                jobs_channels = {waiter_channel(token).encode(), earlier_waiter_channel(token).encode()}
                pubsub.subscribe(*jobs_channels, KEYS_REVOKED_CHANNEL)
                self.on_keys_revoked()  # any revocation while not subscribed went unheard
                self.subscribed.set()
                outage = False
                while True:
                    message = pubsub.get_message(timeout=LISTEN_POLL_S)
                    if message is None:
                        continue
                    if message["channel"] in jobs_channels:
                        self._wake(read_announcements(message["data"]))
                    else:
                        self.on_keys_revoked()
            except redis.RedisError as error:
                if not outage:
                    log.warning("announcement listener lost Redis (%s); reconnecting", error.__class__.__name__)
                outage = True
            finally:
                self.subscribed.clear()
                pubsub.close()
            time.sleep(RECONNECT_S)

    def _wake(self, announced: list[tuple[str, str | None]]) -> None:
        woken: list[Watch] = []
        with self._lock:
            for job_id, public in announced:
                for watch in self._waiters.get(job_id, ()):
                    watch.public = public
                    woken.append(watch)
        # Set outside the lock: each wakes a thread, which may take the interpreter at once, while every held
        # request enters and leaves its watch under this lock (py-spy at 512 held requests: threads waiting here).
        for watch in woken:
            watch.event.set()
