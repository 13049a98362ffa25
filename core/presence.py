"""Workers announce themselves in Redis once their models are loaded and warmed: a key per worker that expires
unless refreshed, so a dead worker disappears on its own. The API's readiness, `distilq up` and `beat` (which hands
on the jobs of a worker that is gone) read them; and the API's batch check, what a worker says of its passes (its
device, what one more input costs a pass of each task) at its last refresh, to size a batch's rows of lines
(`store.batch_rows.row_inputs`)."""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "distilq:worker:"
#: A worker's key lives this long without a refresh, in seconds.
PRESENCE_TTL_S = 30
REFRESH_S = 10


def worker_key(name: str) -> str:
    return KEY_PREFIX + name


def worker_name() -> str:
    """This process's name as a worker: host and pid, unique among the live workers."""
    return f"{socket.gethostname()}:{os.getpid()}"


def announce(client: redis.Redis, tasks: list[str], stop: threading.Event,
             details: Callable[[], dict[str, Any]] | None = None) -> threading.Thread:
    """Writes this worker's key now and keeps it fresh until `stop` is set, with what `details` says at each
    refresh; returns the refreshing thread."""
    name = worker_name()
    identity = {"name": name, "tasks": tasks, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}

    def payload() -> str:
        return json.dumps({**(details() if details is not None else {}), **identity, "refreshed_at": time.time()})

    def refresh() -> None:
        while True:
            try:
                client.set(worker_key(name), payload(), ex=PRESENCE_TTL_S)
            except redis.RedisError as error:
                log.warning("could not refresh worker presence: %s", error)
            if stop.wait(REFRESH_S):
                break
        try:
            client.delete(worker_key(name))
        except redis.RedisError:
            pass

    client.set(worker_key(name), payload(), ex=PRESENCE_TTL_S)
    thread = threading.Thread(target=refresh, name="worker-presence", daemon=True)
    thread.start()
    return thread


def ready_workers(client: redis.Redis) -> list[dict[str, Any]]:
    workers = []
    for key in client.scan_iter(match=KEY_PREFIX + "*", count=100):
        raw = client.get(key)
        if raw:
            workers.append(json.loads(raw))
    return workers


def unserved_tasks(client: redis.Redis, tasks: Collection[str], count: int = 1) -> list[str]:
    """The tasks fewer than `count` ready workers serve (no ready worker, by default)."""
    serving = collections.Counter(task for worker in ready_workers(client) for task in worker.get("tasks", ()))
    return [task for task in tasks if serving[task] < count]
