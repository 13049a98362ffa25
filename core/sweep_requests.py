"""Asking `beat` to sweep now rather than at its next interval.

A batch's output and error files, written as its lines end, and a batch's or an evaluation's end — the rest of its
files, its webhook — are beat's work (`worker/sweeper.py`). Found only by the periodic sweep, they would come up
to `sweep_interval_s` (5 s) late: on a GPU, longer than a 10,000-line batch runs. So whoever may have made a file's
lines end asks for a sweep of the files (`Sweeper.sweep_files`): the worker after each pass that wrote a file's
lines, the API that cancelled a batch or an evaluation. The ask is a Redis list of at most one item (any number of
asks before beat looks make one sweep); the beat that holds the beat lock blocks on it between sweeps. An ask lost
with Redis costs only the wait for the next periodic sweep.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger(__name__)

KEY = "distilq:sweep-asked"
#: The longest beat blocks on the list at once, in seconds: how soon it notices that it is to stop. Below the
#: client's socket timeout.
BLOCK_S = 1.0
#: The shortest block: Redis reads a timeout that rounds to 0 ms as "block for ever".
MIN_BLOCK_S = 0.01


def ask(client: redis.Redis) -> None:
    """Asks beat for a sweep now; with Redis away, logs that the next periodic sweep will do."""
    try:
        pipe = client.pipeline(transaction=False)  # one round trip; a second ask before beat looks changes nothing
        pipe.lpush(KEY, 1)
        pipe.ltrim(KEY, 0, 0)
        pipe.execute()
    except redis.RedisError as error:
        log.warning("could not ask beat for a sweep (%s); its next periodic sweep will do", error)


def wait(client: redis.Redis, timeout_s: float, stop: threading.Event) -> bool:
    """Blocks until a sweep is asked for (True, the ask taken), or `timeout_s` passed or `stop` was set (False).
    Raises RedisError."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if client.blpop([KEY], timeout=max(MIN_BLOCK_S, min(remaining, BLOCK_S))) is not None:
            return True
    return False
