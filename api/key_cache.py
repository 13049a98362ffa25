"""The API keys an API process has seen lately, so that a request is authenticated without a database read.

A revocation is announced on Redis (`core.queue.KEYS_REVOKED_CHANNEL`, published by `distilq keys revoke` after
its commit) and empties every process's cache at once; the process's announcement listener
(`api/announcements.py`) delivers it. While that listener is not subscribed (starting, Redis away) an announcement
could be missed, so the cache is neither read nor filled, and it is emptied when the listener subscribes again.
An entry also expires after ENTRY_TTL_S, the bound on staleness should every announcement fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

#: The longest an entry is trusted, in seconds.
ENTRY_TTL_S = 60.0
#: Entries kept at most (a process sees few keys; this bounds what a flood of distinct keys could hold).
MAX_ENTRIES = 10_000


@dataclass
class Caller:
    """The authenticated key: its id, and when its use was last recorded (`last_used_at`)."""

    id: str
    last_used_at: datetime | None


class KeyCache:
    def __init__(self, trusted: Callable[[], bool]) -> None:
        #: Whether revocations reach this process now (its listener is subscribed).
        self.trusted = trusted
        self._entries: dict[str, tuple[Caller, float]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def generation(self) -> int:
        """Taken before a database read of a key, handed back to `put`: a revocation in between is not undone."""
        return self._generation

    def get(self, key_hash: str) -> Caller | None:
        if not self.trusted():
            return None
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, key_hash: str, caller: Caller, generation: int) -> None:
        if not self.trusted():
            return
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_hash] = (caller, time.monotonic() + ENTRY_TTL_S)

    def clear(self) -> None:
        """A key was revoked somewhere, or revocations may have been missed."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
